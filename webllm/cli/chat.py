"""webllm chat: an interactive chat in the terminal."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from webllm.errors import InputError

NAME = "chat"
HELP = "chat with a model in the terminal (/system, /stats, /reset, /exit; Ctrl-C stops a reply)"
USES_MODEL = True
GENERATES = True
COMMANDS = ("/system <text>  set the system prompt (and start over)\n/stats  speed of the last reply\n"
            "/reset  start over\n/exit  quit (also Ctrl-D); Ctrl-C stops the current reply")


def add_arguments(p) -> None:
    p.add_argument("--system", default=None, help="a system prompt")
    p.add_argument("--json-schema", default=None, metavar="FILE",
                   help="a JSON schema file: every reply is JSON that validates against it")


def read_schema(path: str) -> dict:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the JSON schema ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(schema, dict):
        raise InputError(f"{path}: a JSON schema is a JSON object")
    return schema


class _Interrupts:
    """While a reply streams, Ctrl-C sets an event (the engine stops before its next token) instead
    of raising KeyboardInterrupt somewhere inside the GPU loop."""

    def __init__(self):
        self.cancel = threading.Event()

    def __enter__(self):
        self.cancel.clear()
        self._old = signal.signal(signal.SIGINT, lambda *_: self.cancel.set())
        return self.cancel

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)


def run(args) -> int:
    from webllm.cli.common import load_engine, sampling
    from webllm.errors import WebLLMError

    fmt = {"type": "json_schema", "schema": read_schema(args.json_schema)} if args.json_schema else None
    engine = load_engine(args)
    params = sampling(engine, args)
    system = args.system
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    interactive = sys.stdin.isatty()
    interrupts = _Interrupts()
    if interactive:
        print("Type a message; /help lists the commands, /exit quits.")
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:  # at the prompt: a fresh line, not the end of the conversation
            print("\n(/exit or Ctrl-D quits)")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/help":
            print(COMMANDS)
            continue
        if text == "/reset":
            history = history[:1] if system else []
            engine.reset()
            continue
        if text == "/stats":
            print(engine.last_stats.summary())
            continue
        if text == "/system" or text.startswith("/system "):
            system = text[len("/system"):].strip() or None
            history = [{"role": "system", "content": system}] if system else []
            print(f"system prompt {'set' if system else 'cleared'}; the conversation starts over")
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]}\n{COMMANDS}")
            continue
        history.append({"role": "user", "content": text})
        reply = []
        try:
            with interrupts as cancel:
                ids = engine.chat_prompt(history, args.max_tokens, truncate=True)
                for event in engine.generate(ids, args.max_tokens, params, grammar=engine.grammar(fmt), cancel=cancel):
                    if event.text:
                        reply.append(event.text)
                        print(event.text, end="", flush=True)
        except WebLLMError as e:  # one bad turn (say, a template error) should not end the session
            print(f"\nwebllm: error: {e}", file=sys.stderr)
            history.pop()
            continue
        print()
        if engine.last_stats.cancelled:
            print("[stopped]", file=sys.stderr)
        history.append({"role": "assistant", "content": "".join(reply)})  # what was said stays said
        if not args.quiet:
            print(f"[{engine.last_stats.summary()}]", file=sys.stderr)
    return 0
