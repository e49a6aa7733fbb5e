"""webllm generate: one answer to one prompt, for scripts."""

from __future__ import annotations

import sys

NAME = "generate"
HELP = "answer one prompt (as a chat message, or as raw text with --raw) and exit"
USES_MODEL = True
GENERATES = True


def add_arguments(p) -> None:
    p.add_argument("--prompt", "-p", required=True, help="the user message (or raw prompt text with --raw)")
    p.add_argument("--raw", action="store_true", help="continue the prompt text as is, without the chat template")
    p.add_argument("--system", default=None, help="a system prompt")
    p.add_argument("--json-schema", default=None, metavar="FILE", help="answer with JSON valid under this schema")


def run(args) -> int:
    from webllm.cli.chat import read_schema
    from webllm.cli.common import load_engine, sampling

    fmt = {"type": "json_schema", "schema": read_schema(args.json_schema)} if args.json_schema else None
    engine = load_engine(args)
    if args.raw:
        ids = engine.text_prompt(args.prompt, add_special_tokens=True)
    else:
        msgs = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}]
        ids = engine.chat_prompt(msgs, args.max_tokens)
    for event in engine.generate(ids, args.max_tokens, sampling(engine, args), grammar=engine.grammar(fmt)):
        print(event.text, end="", flush=True)
    print()
    if not args.quiet:
        print(f"[{engine.last_stats.summary()}]", file=sys.stderr)
    return 0
