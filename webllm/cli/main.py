"""`webllm <command>`: argument parsing and one-line errors; the work is done by the library."""

from __future__ import annotations

import argparse
import sys

from webllm import __version__
from webllm.errors import WebLLMError


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="a model package folder, a Hugging Face checkpoint folder or a GGUF file "
                        "(compiled once into the cache); default: the embedded SmolLM2-135M-Instruct")
    p.add_argument("--quantization", "-q", default="q4f16_1",
                   help="when MODEL is a checkpoint: q4f16_1 (default), q4f32_1, q0f16, q0f32")
    p.add_argument("--profile", choices=["f16", "f32"], default=None,
                   help="device profile: f16 needs shader-f16 (default: f16 when the adapter has it)")
    p.add_argument("--max-tokens", type=int, default=512, help="most tokens to generate per answer (default 512)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature; 0 (default) is greedy, deterministic decoding")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, with --temperature (default 1)")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampling draws (default: random)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webllm", description="Compile LLMs into WebGPU model packages and run them.",
        epilog="Run 'webllm <command> --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"webllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    from webllm.cli import bench, chat, compile, generate, info, perplexity

    for mod in (compile, chat, generate, bench, perplexity, info):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        if mod.USES_MODEL:
            _model_args(p)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except WebLLMError as e:
        print(f"webllm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
