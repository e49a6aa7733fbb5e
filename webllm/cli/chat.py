"""webllm chat: an interactive chat in the terminal."""

from __future__ import annotations

import sys

NAME = "chat"
HELP = "chat with a model in the terminal (/reset starts over, /exit or Ctrl-D quits)"
USES_MODEL = True


def add_arguments(p) -> None:
    p.add_argument("--system", default=None, help="a system prompt")


def run(args) -> int:
    from webllm.cli.common import load_engine, sampling
    from webllm.errors import WebLLMError

    engine = load_engine(args)
    history: list[dict] = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        print("Type a message; /reset starts over, /exit quits.")
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = history[:1] if args.system else []
            engine.reset()
            continue
        history.append({"role": "user", "content": text})
        reply = []
        try:
            for piece in engine.chat(history, max_tokens=args.max_tokens, **sampling(args)):
                reply.append(piece)
                print(piece, end="", flush=True)
        except WebLLMError as e:  # one bad turn (say, a template error) should not end the session
            print(f"\nwebllm: error: {e}", file=sys.stderr)
            history.pop()
            continue
        print()
        history.append({"role": "assistant", "content": "".join(reply)})
        if not args.quiet:
            print(f"[{engine.last_stats.summary()}]", file=sys.stderr)
    return 0
