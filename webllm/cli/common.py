"""Shared by the commands that run a model."""

from __future__ import annotations

import sys
import time


def load_engine(args):
    from webllm.engine import Engine
    from webllm.models_cache import resolve_model
    from webllm.runtime.device import adapter_name

    package = resolve_model(args.model, args.quantization, progress=not args.quiet)
    t = time.perf_counter()
    engine = Engine.load(package, profile=args.profile, progress=not args.quiet)
    if not args.quiet:
        m = engine.model
        print(f"loaded {package.name} on {adapter_name(m.adapter)}, profile {m.profile}, "
              f"context {m.capacity} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
    return engine


def sampling(args) -> dict:
    return {"temperature": args.temperature, "top_p": args.top_p, "seed": args.seed}
