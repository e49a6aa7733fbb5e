"""webllm generate: one answer to one prompt, for scripts."""

from __future__ import annotations

import sys

NAME = "generate"
HELP = "answer one prompt (as a chat message, or as raw text with --raw) and exit"
USES_MODEL = True


def add_arguments(p) -> None:
    p.add_argument("--prompt", "-p", required=True, help="the user message (or raw prompt text with --raw)")
    p.add_argument("--raw", action="store_true", help="continue the prompt text as is, without the chat template")
    p.add_argument("--system", default=None, help="a system prompt")


def run(args) -> int:
    from webllm.cli.common import load_engine, sampling

    engine = load_engine(args)
    if args.raw:
        pieces = engine.complete(args.prompt, args.max_tokens, add_special_tokens=True, **sampling(args))
    else:
        msgs = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}]
        pieces = engine.chat(msgs, args.max_tokens, **sampling(args))
    for piece in pieces:
        print(piece, end="", flush=True)
    print()
    if not args.quiet:
        print(f"[{engine.last_stats.summary()}]", file=sys.stderr)
    return 0
