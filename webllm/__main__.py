from webllm.cli.main import main

raise SystemExit(main())
