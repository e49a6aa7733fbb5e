"""Shared by the commands that run a model."""

from __future__ import annotations

import sys
import time

_FROM_ARGS = object()


def load_engine(args, model=_FROM_ARGS):
    """An Engine for `model` (default: args.model; None: the default model), reporting on stderr."""
    from webllm.engine import Engine
    from webllm.models_cache import resolve_model
    from webllm.runtime.device import adapter_name

    name = args.model if model is _FROM_ARGS else model
    package = resolve_model(name, args.quantization, progress=not args.quiet)
    t = time.perf_counter()
    engine = Engine.load(package, profile=args.profile, progress=not args.quiet)
    if not args.quiet:
        m = engine.model
        print(f"loaded {engine.name} ({package.name}) on {adapter_name(m.adapter)}, profile {m.profile}, "
              f"context {m.capacity} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
    return engine


def sampling(engine, args):
    """The command line's sampling parameters; unset ones: the package's defaults, else greedy."""
    from webllm.engine.sampling import GREEDY_DEFAULTS

    return engine.sampling(fallback=GREEDY_DEFAULTS, temperature=args.temperature, top_p=args.top_p,
                           top_k=args.top_k, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                           seed=args.seed)
