"""Variant tuning: time the plan's prefill and decode variants on this adapter once, cache the winners.

A plan carries each phase as named variants computing the same thing with differently shaped kernels
(prefill: token tiles of the matmul; decode: threads per row of the one-token matmul, with or without
subgroups). Which is fastest depends on the adapter, so the runtime times the ones its device can run
at first load and keeps the winner in a JSON file (`<cache dir>/tuning.json`) keyed by adapter,
profile, package (first shard's sha256 and a digest of the plan: the same weights compiled again with
other kernels, by another webllm or with other options, are another package), phase and the variant
names, so a new package, adapter or plan is timed afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import time

from webllm.runtime.device import adapter_name

SLOW_STEP_S = 0.1  # a warm-up step slower than this decides alone (software adapters; see the timers)
TUNE_CONTEXT = 4096  # KV length at which decode attention's split counts are timed
SPLIT_ROUNDS = (4, 16, 16)  # decode steps a split count runs in each round of that timing, at least (time_kv_splits)
DECODE_ROUNDS = (4, 16, 16, 16)  # decode steps a variant runs in each round of its timing, at least
ROUND_S = 0.05  # a round after the first runs at least this long: more steps where steps are short (round_steps)
MAX_ROUND_STEPS = 256
CLOSE = 0.15  # variants whose warm-up steps are this close get more rounds, however slow the steps
SETTLE_S = (0.5, 2.0)  # how long the timing runs steps before it compares variants: at least, at most (settle)
SMALL_TILE = 2  # a slow software adapter probes the prefill variants whose token tile is at most this times the first's


def cache_key(model, kind: str, names: list[str]) -> str:
    package = f"{model.manifest['shards'][0]['sha256']}:{model.plan_digest}"
    return f"{adapter_name(model.adapter)}|{model.profile}|{package}|{kind}|{','.join(names)}"


def plan_digest(plan: dict) -> str:
    """A short digest of a plan (its kernels, named by their source's hash, and every dispatch list)."""
    return hashlib.sha256(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def choose_variant(model, kind: str) -> str:
    """The cached winner among this device's `kind` ("prefill" or "decode") variants for this adapter
    and package, else time each and remember the fastest. Small contexts (< 64 tokens) and a single
    variant just take the first."""
    names = model.prefill_variants if kind == "prefill" else model.decode_variants
    if len(names) == 1 or model.capacity < 64:
        return names[0]
    key = cache_key(model, kind, names)
    cached = _cached(key)
    if cached in names:
        return cached
    timings = (time_prefill_variants if kind == "prefill" else time_decode_variants)(model, names)
    best = min(timings, key=timings.get)
    _remember(key, best, model)
    return best


def choose_kv_splits(model) -> int:
    """Decode attention's most KV splits (the plan's `decode_splits` choices): the cached winner for
    this adapter, package and decode variant, else each choice timed over decode steps at a long
    context (TUNE_CONTEXT, or the cache's end) and the fastest remembered. The plan's default where it
    offers one choice, the context is too short for every choice to be used (64 positions a split),
    or the adapter is a software one (its first step over SLOW_STEP_S); 0 for plans without choices."""
    choices = model.kv_splits_choices
    if not choices:
        return 0
    default = model.plan["decode_splits"]["default"]
    past = min(TUNE_CONTEXT, model.capacity - max(SPLIT_ROUNDS))  # room for a round's steps
    if len(choices) == 1 or past < 64 * max(choices):  # below that, the largest count isn't all used
        return default
    names = [str(c) for c in choices]
    key = cache_key(model, f"splits.{model.decode_variant}", names)
    cached = _cached(key)
    if cached in names:
        return int(cached)
    timings = time_kv_splits(model, choices, past)
    best = min(timings, key=timings.get) if len(timings) > 1 else default
    _remember(key, str(best), model)
    return best


def _cached(key: str) -> str | None:
    from webllm.models_cache import cache_dir

    try:
        return json.loads((cache_dir() / "tuning.json").read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _remember(key: str, value: str, model) -> None:
    from webllm.models_cache import cache_dir

    path = cache_dir() / "tuning.json"
    try:  # read again: another process may have written meanwhile
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    cache[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(model)}")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs the timing again next load


def _decode_seconds(model, steps: int, past: int = 0) -> float:
    """Seconds per decode step over `steps` steps from KV length `past` (the cache's contents there are
    whatever it holds: a step's time does not depend on them), the GPU idle at the start."""
    model.reset()
    model.past = past
    model.next_token()  # the GPU is idle
    t = time.perf_counter()
    for _ in range(steps):
        model.decode()
    model.next_token()
    return (time.perf_counter() - t) / steps


def round_steps(step_s: float, least: int, room: int = MAX_ROUND_STEPS) -> int:
    """Steps in a timing round after the first: at least `least`, and enough for ROUND_S at `step_s`
    seconds a step, at most MAX_ROUND_STEPS and `room` (the cache's free positions). A round is timed
    from an idle GPU to the read of its last token, so it carries that read's latency and the host's
    hiccups, which rounds of 16 short steps do not outweigh: on an H100 through Dawn, a Llama-3.2-1B
    (~0.65 ms a step) read 1,357-1,491 tok/s in rounds of 16 steps and 1,524-1,580 in rounds of 64 and
    256; first loads there kept q8gemv32sg through Dawn (f32) and q8gemv32w natively (f16), both a few
    percent behind q8gemv32sgw (docs/PERFORMANCE.md, 2026-11-28 02:37-03:12)."""
    return max(1, min(room, max(least, min(MAX_ROUND_STEPS, math.ceil(ROUND_S / max(step_s, 1e-6))))))


def settle(step) -> float:
    """Repeat `step` (it returns seconds per step) for at least SETTLE_S[0] and until a repetition is no
    faster than 0.95 of the one before, at most SETTLE_S[1]: the GPU busy again before variants are
    compared; returns the fastest repetition's seconds a step. On an H100 the decode steps of a
    Llama-3.1-8B shape (f32 profile) ran at 5.2 ms, then, after the GPU had idled ~1.5 s while the other
    variants' pipelines were built, at 15-17 ms for ~0.3 s (every variant of the first round: over 10 ms
    a step, the bar past which that round decides alone, meant for large models), then 9.1, 4.6 and 4.5
    ms; settled, gemv32sg ran at 3.5 ms and gemv4 at 5.9, and one first load had kept gemv4."""
    start = time.perf_counter()
    last = step()
    while time.perf_counter() - start < SETTLE_S[1]:
        now = step()
        if now > 0.95 * last and time.perf_counter() - start >= SETTLE_S[0]:
            return min(last, now)
        last = min(last, now)
    return last


def time_kv_splits(model, choices: list[int], past: int) -> dict[int, float]:
    """Seconds per decode step at KV length `past` with each split count: steps of the first repeated until
    they stop getting faster (`settle`), then rounds of 4, 16 and 16 steps taken in turn (the last two
    longer where steps are short: round_steps), best of the rounds (as time_decode_variants). Without
    the settling, the rounds ran while the GPU was still raising its clocks (after idling while the
    decode pipelines were built, where no variant timing had just kept it busy: a forced or cached
    decode variant), which favours the choices timed last: on an H100, Llama-3.1-8B with the decode
    variant forced, 4 of 11 packages picked 16 or 32 splits, which then decoded 3-5% slower at 4,096
    positions than 8 (docs/PERFORMANCE.md). A first step over SLOW_STEP_S (a software adapter) ends the
    timing with that one choice. Leaves the model reset, on the split count it had."""
    keep = model.kv_splits

    def run(n: int, steps: int) -> float:
        model.use_kv_splits(n)
        return _decode_seconds(model, steps, past)

    first = run(choices[0], 1)
    if first > SLOW_STEP_S:
        best = {choices[0]: first}
    else:
        step_s = settle(lambda: run(choices[0], 4))
        best = dict.fromkeys(choices, float("inf"))
        for i, n in enumerate(SPLIT_ROUNDS):
            n = n if i == 0 else round_steps(step_s, n, model.capacity - past)
            for c in choices:
                best[c] = min(best[c], run(c, n))
    model.reset()
    if keep:
        model.use_kv_splits(keep)
    return best


def time_decode_variants(model, names: list[str]) -> dict[str, float]:
    """Seconds per decode step of each variant. First one step of the first variant that needs no feature.
    When that step takes over SLOW_STEP_S (a software adapter, where a step costs seconds and the gaps
    are wide), one step each of the variants that need no feature decides: each variant timed there
    costs its compile and a step of seconds at first load (the default model in Chromium on SwiftShader:
    60 s to a first load with all four decode variants, 36 s with the two), and a software adapter
    emulates subgroups over its SIMD lanes, where they gain little and not reliably (lavapipe,
    SmolLM2-135M f32: gemv32sg 73 ms a step against 85 for gemv32 on a quiet machine, slower under
    load). Otherwise every variant's pipelines are built, steps of the first are repeated until they
    stop getting faster (`settle`), and each variant is timed in rounds of 4, 16, 16 and 16 steps taken
    in turn (the last three longer where steps are short: round_steps), best of the rounds, so that a
    GPU still raising its clocks favours none of them (the first round decides alone where a step takes
    over 10 ms: a large model). Steps start from an empty cache (no prefill: one costs seconds on a
    software adapter). Leaves the model reset, on the variant it had."""
    keep = model.decode_variant
    needs = model.plan.get("variant_features", {})
    plain = [n for n in names if not needs.get(n)] or names[:1]

    def run(name: str, steps: int) -> float:
        model.use_decode_variant(name)
        return _decode_seconds(model, steps)

    warm = {plain[0]: run(plain[0], 1)}
    slow = warm[plain[0]] > SLOW_STEP_S
    if slow:
        for name in plain:
            if name not in warm:
                warm[name] = run(name, 1)
        best = warm
    else:
        for name in names:  # every pipeline built first: the GPU idles meanwhile (see settle)
            model.use_decode_variant(name)
        step_s = settle(lambda: run(plain[0], 4))
        best = dict.fromkeys(names, float("inf"))
        for rnd, n in enumerate(DECODE_ROUNDS):
            n = n if rnd == 0 else round_steps(step_s, n, model.capacity)
            for name in names:
                best[name] = min(best[name], run(name, n))
            if rnd == 0 and min(best.values()) > 0.01:
                break
    model.reset()
    if keep:
        model.use_decode_variant(keep)
    return best


def software_adapter(adapter) -> bool:
    """Whether the adapter says it is a CPU (lavapipe, SwiftShader, WARP)."""
    return str(adapter.info.get("adapter_type", "")).upper() == "CPU"


def spread_ids(n: int, vocab: int) -> list[int]:
    """n token ids spread over the vocabulary, the same every time: a prefill timed on them moves data
    the way a prompt does (all-zero ids make every row of every activation the same; on an H100 the
    load-time timing of the 8B's prefill on them kept `rule` where benchmarks/variants.py, on random
    ids, measured `wide128` 6% faster; whether the ids were the cause is not measured yet)."""
    return [(i * 7919 + 13) % vocab for i in range(n)]


def _close(times: dict) -> bool:
    """Whether the two fastest of `times` are within CLOSE of each other: one round can't tell them
    apart (a GPU's clocks and first uses move a step by a few percent)."""
    a, b = (sorted(times.values()) + [float("inf")])[:2]
    return b <= a * (1 + CLOSE)


def token_tile(plan: dict, name: str) -> int:
    """Tokens per workgroup of prefill variant `name`'s widest dispatch (`tokens_per_y`): its matmuls' token
    tile, 32 or 128 for the tiled matmul (the rule takes 32 on small models), 64 for the int8 `q8`
    (kernels.MATMUL_Q8_TOKENS). A step of fewer tokens still runs one whole tile."""
    return max(d.get("tokens_per_y") or 1 for d in plan["prefill_variants"][name])


def time_prefill_variants(model, names: list[str]) -> dict[str, float]:
    """Seconds per prefill step of one full chunk (min(prefill_chunk, capacity) tokens) of each
    variant, in rounds taken in turn as for decode: round 0 (one step each) is warm-up, then the best
    of two more; a warm-up round whose fastest step took over SLOW_STEP_S decides alone (a large
    model) unless its two fastest are within CLOSE (an H100, Llama-3.1-8B's 4-layer shape: 40.0 ms a
    512-token chunk with wide128 staging against 42.3 with the rule, which one round picked).

    First, on an adapter that says it is a CPU, a one-token step of the first variant. When that takes
    over SLOW_STEP_S, one one-token step each of the small-tile variants decides: those whose token
    tile (`token_tile`) is at most SMALL_TILE times the first's; the others are never built. Only
    there: on an H100 a Llama-3.1-8B's first one-token step took 355 ms and the next 117, a whole token
    tile's work, which had kept `rule` untimed where the int8 `q8` prefills 1.8x faster. On a software
    adapter a step costs a whole token tile's work whatever its length: lavapipe (2-core EPYC, embedded
    SmolLM2-135M, f16, seconds a step with pipelines built): `rule` (32-token tiles) 7.0-7.5 at one
    token, 14.2 at 64, 27.3-27.9 at 128; `q8` (64-token tiles) 4.9-5.3, 5.8, 11.0-12.3; the 128-token
    tiles 18.4-20.1 at one token. A chunk of every variant would add 40-60 s to the first load; the
    one-token probe ranked `q8` first as the full steps do, and it favours the smaller tiles where a
    larger one is faster a token (the right call for a chat's short turns). The large tiles cost 2.5x
    the rule's step to probe and beat it only from ~3 of its tiles on (one whole 128-token tile, 18-20
    s, against `q8`'s 11-12 at 128 tokens), so they stay unbuilt there. A probe's step includes the
    software adapter's compile of the kernels it is the first to run (llvmpipe builds a shader at its
    first dispatch): with Mesa's shader cache warm the probe took 7.3 s for `rule` and 4.8 for `q8`,
    with it off 16.6-19.3 and 9.7-10.0, the first variant's carrying the compile of the kernels all
    share, which favours the others (a second step each would cost as much again; `q8` led both ways).
    Unlike decode's probe, variants needing a feature are probed too (those this device lacks are not
    among `names`): lavapipe emulates dot4I8Packed, yet `q8` prefills fastest there.

    Otherwise every variant's pipelines are built and run once (a 64-token step each, so that no first
    use lands in the rounds, where one round may decide) and 64-token steps of the first variant
    repeated until they stop getting faster (`settle`) before the rounds. Leaves the model reset, on
    the variant it had."""
    keep = model.prefill_variant

    def step(name: str, tokens: int) -> float:
        model.use_prefill_variant(name)
        model.reset()
        model.next_token()  # the GPU is idle
        t = time.perf_counter()
        model.prefill(spread_ids(tokens, model.config["vocab_size"]))
        model.next_token()
        return time.perf_counter() - t

    probe = step(names[0], 1) if software_adapter(model.adapter) else 0.0
    if probe > SLOW_STEP_S:
        tile = token_tile(model.plan, names[0])
        best = {names[0]: probe}
        for name in names[1:]:
            if token_tile(model.plan, name) <= SMALL_TILE * tile:
                best[name] = step(name, 1)
    else:
        n = min(model.chunk, model.capacity)
        for name in names:  # every pipeline built and run once first: the GPU idles meanwhile (see settle)
            step(name, min(n, 64))
        settle(lambda: step(names[0], min(n, 64)))
        best = dict.fromkeys(names, float("inf"))
        for rnd in range(3):
            for name in names:
                best[name] = min(best[name], step(name, n))
            if rnd == 0 and min(best.values()) > SLOW_STEP_S and not _close(best):
                break
    model.reset()
    if keep:
        model.use_prefill_variant(keep)
    return best
