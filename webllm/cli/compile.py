"""webllm compile: checkpoint -> model package."""

from __future__ import annotations

import time

NAME = "compile"
HELP = "compile a Hugging Face checkpoint folder or a GGUF file into a model package"
USES_MODEL = False


def _tiles(text: str) -> tuple[int, ...]:
    import argparse

    try:
        tiles = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        tiles = ()
    if not tiles or not set(tiles) <= {32, 64, 128}:
        raise argparse.ArgumentTypeError(f"expected token tiles among 32, 64, 128, comma-separated (got {text!r})")
    return tiles


def add_arguments(p) -> None:
    from webllm.cli.main import positive_int

    p.add_argument("source", help="Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json) or .gguf file")
    p.add_argument("--output", "-o", required=True, help="package folder to write (replaced atomically)")
    p.add_argument("--quantization", "-q", default="q4f16_1",
                   help="q4f16_1 (4-bit, f16 scales; default), q4f32_1 (4-bit, f32 scales, f32 activations), "
                        "q0f16, q0f32 (unquantized)")
    p.add_argument("--context-window", type=positive_int, default=None,
                   help="KV-cache capacity in tokens (default: the model's maximum, at most 4096)")
    p.add_argument("--prefill-chunk", type=positive_int, default=128, help="most tokens per prefill step (default 128)")
    p.add_argument("--max-binding-size", type=positive_int, default=None,
                   help="split tensors larger than this many bytes (default 134217728, WebGPU's default limit)")
    p.add_argument("--decode-splits", type=positive_int, default=None,
                   help="pin the most KV splits (workgroups per KV head) of decode attention (default: a rule per "
                        "model and profile, with half and twice it timed by the runtime at first load; for "
                        "measurements)")
    p.add_argument("--decode-heads", type=positive_int, default=None,
                   help="query heads per workgroup of decode attention, a divisor of the heads sharing a KV head "
                        "(default: 2 where they pair up, else 1; for measurements)")
    p.add_argument("--prefill-tiles", type=_tiles, default=(32, 128),
                   help="prefill variants: token tiles (32, 64, 128) tried on every matrix besides the built-in rule; "
                        "runtimes time them on their adapter (default 32,128)")
    p.add_argument("--no-prefill-wide", dest="prefill_wide", action="store_false",
                   help="leave out the prefill variants that need 32 KiB of workgroup memory (wide128, widerule)")
    p.add_argument("--prefill-half", action="store_true",
                   help="also offer f16 prefill variants whose matmuls multiply in f16 (ruleh, tile32h, ...): ~12-16%% "
                        "faster prefill on an H100, ~3x the logit error of the f16 profile")
    p.add_argument("--no-decode-int8", dest="decode_int8", action="store_false",
                   help="leave out the decode variants whose matmuls pass activations on as int8 blocks of 8 "
                        "(offered first in 4-bit q4s packages and timed at load against the float ones: "
                        "~17%% faster decode on an H100, slower on CPU adapters; inputs rounded to 1/254 of "
                        "each block's largest)")
    p.add_argument("--no-prefill-int8", dest="prefill_int8", action="store_false",
                   help="leave out the prefill variant (q8) whose 4- and 8-bit matmuls (q4s, q4a, q8s) multiply their "
                        "inputs as int8 blocks of 32 with integer dot products (timed at load against the float ones: "
                        "~1.8x faster prefill on an H100; inputs rounded to 1/254 of each block's largest)")
    p.add_argument("--no-decode-wide", dest="decode_wide", action="store_false",
                   help="leave out the decode variants (...w) whose matmuls run up to 512 threads a workgroup, beyond "
                        "WebGPU's default of 256 (offered first where they differ, i.e. for large matrices, and timed at "
                        "load; ~2-5%% faster decode of an 8B on an H100; runtimes skip them on devices that lack the limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import json

    from webllm.compiler.compile import DEFAULT_MAX_BINDING, CompileOptions, compile_model
    from webllm.compiler.package import MANIFEST
    t = time.perf_counter()
    opts = CompileOptions(quantization=args.quantization, context_window=args.context_window,
                          prefill_chunk=args.prefill_chunk, max_binding_size=args.max_binding_size or DEFAULT_MAX_BINDING,
                          decode_splits=args.decode_splits, decode_heads=args.decode_heads, progress=not args.quiet,
                          prefill_tiles=args.prefill_tiles,
                          prefill_wide=args.prefill_wide, prefill_half=args.prefill_half, decode_int8=args.decode_int8,
                          prefill_int8=args.prefill_int8, decode_wide=args.decode_wide)
    out = compile_model(args.source, args.output, opts)
    m = json.loads((out / MANIFEST).read_text())
    size = sum(s["nbytes"] for s in m["shards"])
    if not args.quiet:
        print(f"wrote {out}: {len(m['shards'])} shards, {size / 2**20:.1f} MiB of weights, "
              f"profiles {', '.join(m['profiles'])}, context {m['context_window']} "
              f"({time.perf_counter() - t:.1f} s)")
    return 0
