"""`webllm <command>`: argument parsing and one-line errors; the work is done by the library."""

from __future__ import annotations

import argparse
import sys

from webllm import __version__
from webllm.errors import WebLLMError


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {v})")
    return v


def non_negative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more (got {v})")
    return v


def _float_in(lo: float, hi: float, lo_open: bool = False):
    def parse(text: str) -> float:
        v = float(text)
        if not ((v > lo) if lo_open else (v >= lo)) or v > hi:
            raise argparse.ArgumentTypeError(f"must lie in {'(' if lo_open else '['}{lo:g}, {hi:g}] (got {v:g})")
        return v
    return parse


def _model_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    p.add_argument("model", nargs="*" if many else "?", default=None,
                   help="a model package folder, a Hugging Face checkpoint folder or a GGUF file "
                        "(compiled once into the cache); none: the embedded default model, SmolLM2-135M-Instruct")
    p.add_argument("--quantization", "-q", default="q4f16_1",
                   help="when MODEL is a checkpoint: q4f16_1 (default), q4f32_1, q0f16, q0f32")
    p.add_argument("--profile", choices=["f16", "f32"], default=None,
                   help="device profile: f16 needs shader-f16 (default: f16 when the adapter has it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stats")


def _generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation (defaults: the package's generation config, else greedy)")
    g.add_argument("--max-tokens", type=positive_int, default=512, help="most tokens to generate per answer (default 512)")
    g.add_argument("--temperature", type=_float_in(0, 2), default=None,
                   help="sampling temperature in [0, 2]; 0 is greedy, deterministic decoding")
    g.add_argument("--top-p", type=_float_in(0, 1, lo_open=True), default=None, help="nucleus sampling mass in (0, 1]")
    g.add_argument("--top-k", type=non_negative_int, default=None, help="sample among the k likeliest tokens (0: all)")
    g.add_argument("--min-p", type=_float_in(0, 1), default=None,
                   help="drop tokens less likely than min_p times the likeliest")
    g.add_argument("--repetition-penalty", type=_float_in(0, 10, lo_open=True), default=None,
                   help="divide the logits of tokens already seen (>1 discourages repeats)")
    g.add_argument("--seed", type=int, default=None, help="seed of the sampling draws (default: random)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webllm", description="Compile LLMs into WebGPU model packages and run them.",
        epilog="Run 'webllm <command> --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"webllm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    from webllm.cli import bench, chat, compile, export_web, generate, info, perplexity, serve

    for mod in (compile, chat, generate, serve, export_web, bench, perplexity, info):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        if mod.USES_MODEL:
            _model_args(p, many=getattr(mod, "MANY_MODELS", False))
        if getattr(mod, "GENERATES", False):
            _generation_args(p)
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
