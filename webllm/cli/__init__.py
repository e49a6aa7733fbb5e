"""The `webllm` command line: thin subcommands over the library."""
