"""Every prefill and decode variant of a package, timed on this adapter: what the load-time tuning
chooses between (webllm/runtime/tuning.py), measured properly.

    python benchmarks/variants.py PACKAGE [--profile f16] [--prompt-tokens 512] [--context 0] [--json out.json]

Prefill: tok/s of a prompt of --prompt-tokens (chunks of the package's prefill_chunk), best of
--repeat. Decode: ms per step (GPU only, steps back to back) after --context tokens, best of
--repeat runs of --decode-tokens steps. Each variant's pipelines are built and warmed up before it
is timed. Also prints what the load-time tuning picked (and caches) for this adapter, so the two
can be compared. A measurement to print, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's webllm

from webllm.runtime import Model  # noqa: E402
from webllm.runtime.device import adapter_name, device_features, device_limits  # noqa: E402
from webllm.runtime.package import variant_lacks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--context", type=int, default=0, help="tokens in the KV cache before the timed decode steps")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()

    t = time.perf_counter()
    model = Model.load(a.package, profile=a.profile, progress=False)  # tuned (or cached) choice
    res: dict = {"adapter": adapter_name(model.adapter), "profile": model.profile, "prefill_chunk": model.chunk,
                 "tuned": {"prefill": model.prefill_variant, "decode": model.decode_variant},
                 "load_s": time.perf_counter() - t, "prefill": {}, "decode": {}}
    print(f"{res['adapter']}, profile {model.profile}: tuning picked prefill {model.prefill_variant}, "
          f"decode {model.decode_variant} (load {res['load_s']:.1f} s)", flush=True)
    vocab = model.config["vocab_size"]
    rng = np.random.default_rng(0)
    n = max(1, min(a.prompt_tokens, model.capacity - 1))
    prompt = rng.integers(0, vocab, size=n)
    for kind in ("prefill", "decode"):  # the plan's variants this device cannot run, and why
        for name in model.plan[f"{kind}_variants"]:
            if name not in (model.prefill_variants if kind == "prefill" else model.decode_variants):
                lacks = variant_lacks(model.plan, name, device_features(model.device), device_limits(model.device))
                print(f"{kind:7s} {name:10s} skipped: the device lacks {', '.join(lacks)}", flush=True)
    keep = model.prefill_variant
    for name in model.prefill_variants:
        model.use_prefill_variant(name)
        model.reset()
        model.prefill(prompt[: min(n, model.chunk)])  # warm-up: builds the variant's pipelines
        model.next_token()
        best = float("inf")
        for _ in range(a.repeat):
            model.reset()
            model.next_token()
            t = time.perf_counter()
            model.prefill(prompt)
            model.next_token()
            best = min(best, time.perf_counter() - t)
        res["prefill"][name] = {"tokens": n, "tok_s": n / best, "ms": best * 1e3}
        print(f"prefill {name:10s} {n} tokens: {n / best:10,.0f} tok/s ({best * 1e3:.1f} ms)", flush=True)
    model.use_prefill_variant(keep)

    ctx = max(1, min(a.context, model.capacity - a.decode_tokens - 2))
    model.reset()
    model.prefill(rng.integers(0, vocab, size=ctx))
    model.next_token()
    for name in model.decode_variants:
        model.use_decode_variant(name)
        model.truncate(ctx)
        model.decode()  # warm-up: builds the variant's pipelines
        model.next_token()
        best = float("inf")
        for _ in range(a.repeat):
            model.truncate(ctx)
            model.next_token()
            t = time.perf_counter()
            for _ in range(a.decode_tokens):
                model.decode()
            model.next_token()
            best = min(best, (time.perf_counter() - t) / a.decode_tokens)
        res["decode"][name] = {"context": ctx, "ms_per_step": best * 1e3, "tok_s": 1 / best}
        print(f"decode  {name:10s} ctx {ctx}: {best * 1e3:8.3f} ms per step ({1 / best:,.1f} tok/s)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
