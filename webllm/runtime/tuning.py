"""Decode-variant tuning: time the plan's `decode_variants` on this adapter once, cache the winner.

The cache is a JSON file (`<cache dir>/tuning.json`) keyed by adapter, profile, package (first shard's
sha256) and the variant names, so a new package, adapter or plan is timed afresh.
"""

from __future__ import annotations

import json
import time

from webllm.runtime.device import adapter_name


def cache_key(model, names: list[str]) -> str:
    return f"{adapter_name(model.adapter)}|{model.profile}|{model.manifest['shards'][0]['sha256']}|{','.join(names)}"


def choose_decode_variant(model) -> str:
    """The cached winner for this adapter and package, else time each variant and remember the fastest.
    Small contexts (< 64 tokens) and single-variant plans just take the first."""
    from webllm.models_cache import cache_dir

    names = list(model.plan["decode_variants"])
    if len(names) == 1 or model.capacity < 64:
        return names[0]
    key = cache_key(model, names)
    path = cache_dir() / "tuning.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if cache.get(key) in names:
        return cache[key]
    timings = time_decode_variants(model, names)
    best = min(timings, key=timings.get)
    cache[key] = best
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(model)}")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs the timing again next load
    return best


def time_decode_variants(model, names: list[str]) -> dict[str, float]:
    """Seconds per decode step of each variant, best of several rounds taken in turn, so that a GPU
    still raising its clocks (or compiling pipelines on first use) favours none of them. Round 0 (one
    step each) is warm-up; when its fastest step took over 0.1 s (a software adapter, where one slow
    variant can cost seconds a step and the gaps are large) it decides alone. Leaves the model reset."""
    model.reset()
    model.prefill([0])
    best = dict.fromkeys(names, float("inf"))
    warm = {}
    for rnd, n in enumerate((1, 4, 16, 16, 16)):
        for name in names:
            model.use_decode_variant(name)
            model.truncate(1)
            model.next_token()
            t = time.perf_counter()
            for _ in range(n):
                model.decode()
            model.next_token()
            seconds = (time.perf_counter() - t) / n
            if rnd == 0:
                warm[name] = seconds
            else:
                best[name] = min(best[name], seconds)
        if rnd == 0 and min(warm.values()) > 0.1:
            model.reset()
            return warm
        if rnd == 1 and min(best.values()) > 0.01:
            break
    model.reset()
    return best
