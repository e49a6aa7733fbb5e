"""webllm serve: an OpenAI-compatible HTTP server (loopback only unless --host says otherwise)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

NAME = "serve"
HELP = "serve models over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models)"
USES_MODEL = True
MANY_MODELS = True


def add_arguments(p) -> None:
    from webllm.cli.main import positive_int

    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--api-key", default=os.environ.get("WEBLLM_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 routes (default: $WEBLLM_API_KEY, else none)")
    p.add_argument("--max-body", type=positive_int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    p.add_argument("--max-queue", type=positive_int, default=64,
                   help="requests that may wait for the GPU; more are refused with 503 (default 64)")
    p.add_argument("--web", default=None, metavar="DIR",
                   help="serve this browser build at / (default: the repository's web build, when present)")


def default_web_dir() -> Path | None:
    """The browser page built by `webllm export-web` / the web package, if this checkout has one."""
    root = Path(__file__).resolve().parents[2] / "web"
    for d in (root / "dist", root / "build"):
        if (d / "index.html").exists():
            return d
    return None


def run(args) -> int:
    import uvicorn

    from webllm.cli.common import load_engine
    from webllm.errors import InputError
    from webllm.server import create_app

    web = Path(args.web) if args.web else default_web_dir()
    if web is not None and not (web / "index.html").exists():
        raise InputError(f"{web}: no index.html (build the browser page first)")
    engines = [load_engine(args, m) for m in (args.model or [None])]
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise InputError(f"two models would have the same name ({', '.join(names)}); serve them from differently named folders")
    app = create_app(engines, api_key=args.api_key, max_body=args.max_body, max_queue=args.max_queue, web_dir=web)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"webllm: warning: listening on {args.host} without --api-key: anyone who can reach this machine "
              "can use the models", file=sys.stderr)
    if not args.quiet:
        base = f"http://{args.host}:{args.port}"
        print(f"serving {', '.join(names)} at {base}/v1{' (bearer token required)' if args.api_key else ''}"
              f"{f'; web page at {base}/' if web else ''}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                timeout_graceful_shutdown=2)
    return 0
