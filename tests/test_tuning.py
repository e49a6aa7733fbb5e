"""Variants: the plan carries prefill (and score) lists per matmul token tile (and the 128-token tile
holding whole groups in 32 KiB of workgroup memory) and decode lists per one-token matmul shape, with
and without subgroups. Every variant computes the same logits as transformers; a device without the
subgroups feature, or with WebGPU's default 16 KiB of workgroup memory, never builds the kernels
needing them and runs the fallbacks; the runtime times the variants once per adapter and package and
caches the winners.

Tolerances are the reference tests' (tiny_models.TOL_F16 / TOL_F32): the variants only change the
order of f32 sums, far below those bounds, except the f16 profile's ruleh, tile64h, tile128h (compiled
on request, `prefill_half`), which sum each group's products in f16: about 3x the error here (3.5e-3
against 1.2e-3), and on other test models beyond the bound, which is why they are opt-in."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_reference import BY_NAME
from tiny_models import TOL_F16, TOL_F32, TOL_INT8, WIDE_DECODE, prompt_ids, rel_err

from webllm.runtime import Model, tuning
from webllm.runtime.device import device_features

SPEC = BY_NAME["qwen2"]  # biases, GQA: every gemv epilogue
# a chunk of 128 and three tiles: the variants rule (32 here), tile64, tile128, and wide128 and dbuf128
# (widerule is the rule here: no 128-token tile); 300 tokens = 2 full chunks + 44
OPTIONS = dict(context_window=316, prefill_tiles=(32, 64, 128), prefill_half=True)
MODE = "q4f16_1"
PROFILES = [("f16", TOL_F16), ("f32", TOL_F32)]


@pytest.fixture(scope="module")
def package(zoo):
    return zoo.package(SPEC, MODE, **OPTIONS)


def load(package, zoo, profile, device=None, **kw):
    return Model.load(package, profile=profile, progress=False, adapter=zoo.adapter, device=device or zoo.device,
                      prefill_variant=kw.pop("prefill_variant", "rule"), decode_variant=kw.pop("decode_variant", "gemv32"),
                      **kw)


def check_decode(rt, zoo, tol, name, spec=SPEC):
    """8 greedy decode steps after a 7-token prompt: logits at each step within tol of transformers
    (int8 variants "q8...", or a prompt run by the "q8" prefill variant: transformers rounding the same
    matmul inputs, within TOL_INT8)."""
    rt.use_decode_variant(name)
    rt.reset()
    seq = [int(i) for i in prompt_ids(spec, 7)]
    rt.prefill(seq)
    int8 = name.startswith("q8")
    int8_prefill = "layers" if rt.prefill_variant == "q8" else None  # the prompt's matmuls read int8 blocks too
    tol = TOL_INT8[rt.profile] if int8 or int8_prefill else tol
    for _ in range(8):
        seq.append(rt.next_token())
        rt.decode()
        ref = zoo.logits(spec, MODE, seq, decoded_from=7 if int8 else None, int8_prefill=int8_prefill, prompt=7)
        err = rel_err(rt.logits(), ref[-1])
        assert err <= tol, f"decode variant {name}: error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("profile,tol", PROFILES)
def test_every_variant_matches_transformers(package, zoo, profile, tol):
    """Each prefill variant over a 300-token prompt (three chunks), each decode variant over 8 steps."""
    if profile == "f16" and "shader-f16" not in zoo.device.features:
        pytest.skip("no shader-f16")
    rt = load(package, zoo, profile)
    expected = ["rule", "tile64", "tile128", "q8", "wide128", "dbuf128"]  # lavapipe offers 32 KiB
    if profile == "f16":  # the rule and the tiles with f16 arithmetic
        expected += ["ruleh", "tile64h", "tile128h"]
    assert rt.prefill_variants == expected
    expected = ["gemv32sg", "gemv32", "gemv4sg", "gemv4"]
    expected = ["q8" + n for n in expected] + expected  # int8 x between the matmuls first (q4s weights)
    if "subgroups" not in device_features(zoo.device):
        expected = [n for n in expected if not n.endswith("sg")]
    assert rt.decode_variants == expected  # on lavapipe both reductions run
    ids = prompt_ids(SPEC)
    for name in rt.prefill_variants:
        rt.use_prefill_variant(name)
        rt.reset()
        rt.prefill(ids)
        int8 = name == "q8"  # against transformers rounding the same inputs to int8 blocks of 32
        err = rel_err(rt.logits(), zoo.logits(SPEC, MODE, ids, int8_prefill="layers" if int8 else None)[-1])
        bound = TOL_INT8[profile] if int8 else tol
        assert err <= bound, f"prefill variant {name}: error {err:.2e} > {bound:.0e}"
    for name in rt.decode_variants:
        check_decode(rt, zoo, tol, name)


def test_score_follows_the_prefill_variant(package, zoo):
    """score (the prefill-shaped phase with the head on every token) has a list per prefill variant and
    gives transformers' logits at every position with each."""
    rt = load(package, zoo, "f32", scoring=True)
    ids = prompt_ids(SPEC, 150)
    for name in rt.prefill_variants:
        rt.use_prefill_variant(name)
        assert rt._dispatch["score"] is rt._lists[f"score.{name}"]
        rt.reset()
        int8 = name == "q8"  # its head (a prefill matmul here) reads int8 blocks too
        ref = zoo.logits(SPEC, MODE, ids, int8_prefill="head" if int8 else None)
        err = rel_err(rt.score(ids), ref)
        bound = TOL_INT8["f32"] if int8 else TOL_F32
        assert err <= bound, f"score with prefill variant {name}: error {err:.2e}"


def test_a_device_without_subgroups_runs_the_fallbacks(package, zoo):
    """The subgroup variants need the feature (variant_features): on a device without it they are skipped
    and their kernels never built (naga would refuse them there), and the rest matches transformers."""
    plan = json.loads((package / "plan-f32.json").read_text())
    i8 = "packed_4x8_integer_dot_product"
    assert plan["variant_features"] == {"q8gemv32sg": [i8, "subgroups"], "q8gemv32": [i8], "q8gemv4sg": [i8, "subgroups"],
                                        "q8gemv4": [i8], "gemv32sg": ["subgroups"], "gemv4sg": ["subgroups"], "q8": [i8]}
    assert plan["variant_limits"] == {n: {"maxComputeWorkgroupStorageSize": 32768} for n in ("wide128", "dbuf128")}
    assert all("enable subgroups;" in (package / "kernels" / plan["kernels"][d["kernel"]]["file"]).read_text()
               for d in plan["decode_variants"]["gemv32sg"] if d["kernel"].startswith("gemv"))
    device = zoo.adapter.request_device_sync(required_features=[])
    assert "subgroups" not in device_features(device)
    rt = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=device)
    assert rt.decode_variants == ["q8gemv32", "q8gemv4", "gemv32", "gemv4"] and rt.decode_variant in rt.decode_variants
    for name in rt.decode_variants:
        check_decode(rt, zoo, TOL_F32, name)
    with pytest.raises(Exception, match="needs"):
        load(package, zoo, "f32", device=device, decode_variant="gemv32sg")


def test_a_device_with_default_workgroup_memory_skips_the_wide_variant(package, zoo):
    """wide128 and dbuf128 need 32 KiB of workgroup memory (variant_limits): a device with WebGPU's
    default 16 KiB skips them and never builds their kernels (a pipeline over the limit fails
    validation); forcing one says what is missing."""
    device = zoo.adapter.request_device_sync(required_limits={"max-compute-workgroup-storage-size": 16384})
    rt = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=device)
    assert rt.prefill_variants == ["rule", "tile64", "tile128", "q8"]
    assert not any(k.endswith("128") and not k.endswith("tile128") for k in rt._lists)
    with pytest.raises(Exception, match=r"needs maxComputeWorkgroupStorageSize 32768 \(device: 16384\)"):
        load(package, zoo, "f32", device=device, prefill_variant="wide128")


def test_wide_decode_variants_match_transformers(zoo):
    """The "w" decode variants run matmuls of up to 512 threads a workgroup, beyond WebGPU's default
    limit: variant_limits says so (and how much workgroup memory the o matmul's staged combine then
    takes), each matches transformers, and a device with the default limit skips them and never builds
    their kernels. Here only the int8 variants get them: with float x a row set holds 4 rows, and 2 row
    sets of 128 threads fit in 256 (a wide twin identical to its 256-thread one is left out). Its
    8,448 gate_up outputs take 32 rows a workgroup there (lower.pair_lanes: 264 workgroups of 512
    threads, where the 256-thread variants run 1,056 of 8 rows), and down, whose int8 x is then 8,448
    inputs, 4 rows a thread (kernels.gemv_threads)."""
    package = zoo.package(WIDE_DECODE, MODE, context_window=64, prefill_chunk=32)
    for profile, tol in PROFILES:
        if profile == "f16" and "shader-f16" not in zoo.device.features:
            continue
        plan = json.loads((package / f"plan-{profile}.json").read_text())
        expected = ["q8gemv32sgw", "q8gemv32sg", "q8gemv32w", "q8gemv32", "q8gemv4sg", "q8gemv4",
                    "gemv32sg", "gemv32", "gemv4sg", "gemv4"]
        assert list(plan["decode_variants"]) == expected
        for name in ("q8gemv32sgw", "q8gemv32w"):
            limits = plan["variant_limits"][name]
            assert limits["maxComputeInvocationsPerWorkgroup"] == limits["maxComputeWorkgroupSizeX"] == 512
            assert 16384 < limits["maxComputeWorkgroupStorageSize"] <= 32768
        grids = {v: [d["workgroups"][0] for d in plan["decode_variants"][v]] for v in ("q8gemv32sgw", "q8gemv32sg")}
        assert 264 in grids["q8gemv32sgw"] and 1056 in grids["q8gemv32sg"] and 1056 not in grids["q8gemv32sgw"]
        rt = Model.load(package, profile=profile, progress=False, adapter=zoo.adapter, device=zoo.device,
                        prefill_variant="rule", decode_variant="q8gemv32sgw")
        expected = rt.decode_variants
        for name in [n for n in expected if n.endswith("w")]:
            check_decode(rt, zoo, tol, name, WIDE_DECODE)
    device = zoo.adapter.request_device_sync(required_features=list(zoo.device.features), required_limits={
        "max-compute-invocations-per-workgroup": 256, "max-compute-workgroup-size-x": 256,
        "max-compute-workgroup-storage-size": 32768})
    rt = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=device, prefill_variant="rule",
                    decode_variant="q8gemv32sg")
    assert rt.decode_variants == [n for n in expected if not n.endswith("w")]
    assert set(rt._lists) == {"prefill.rule", "decode.q8gemv32sg"}
    with pytest.raises(Exception, match=r"needs maxComputeInvocationsPerWorkgroup 512 \(device: 256\)"):
        Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=device, decode_variant="q8gemv32w")


def test_wide_variants_give_the_large_matmuls_more_rows_a_workgroup():
    """lower.residual_lanes: with 512-thread workgroups, a matmul adding into the residual stream takes
    16 rows a workgroup where that still makes 256 of them (Llama-3.1-8B's 4,096 rows; not the 1B's
    2,048); lower.pair_lanes: the SwiGLU pair 32 rows (the 8B's 14,336 and the 1B's 8,192 outputs; not
    SmolLM2-135M's 1,536). Never more lanes than the variant's; 256-thread variants keep theirs."""
    from webllm.compiler.lower import pair_lanes, residual_lanes

    assert residual_lanes(4096, 32, 512) == 16 and residual_lanes(4081, 32, 512) == 16
    assert residual_lanes(2048, 32, 512) == residual_lanes(4096, 32, 256) == 32
    assert residual_lanes(4096, 4, 512) == 4
    assert pair_lanes(14336, 32, 512) == pair_lanes(8192, 32, 512) == pair_lanes(8161, 32, 512) == 8
    assert pair_lanes(8160, 32, 512) == pair_lanes(1536, 32, 512) == pair_lanes(14336, 32, 256) == 32
    assert pair_lanes(14336, 4, 512) == 4


def test_only_the_variants_in_use_are_built(package, zoo):
    """Pipelines and bind groups are built on first use: a forced (or cached) choice builds one list per phase."""
    rt = load(package, zoo, "f32", prefill_variant="tile64", decode_variant="gemv4")
    assert set(rt._lists) == {"prefill.tile64", "decode.gemv4"}
    rt.use_decode_variant("gemv32")
    assert set(rt._lists) == {"prefill.tile64", "decode.gemv4", "decode.gemv32"}


def test_tuning_is_cached_per_adapter_and_package(package, zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("WEBLLM_CACHE", str(tmp_path))
    rt = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)
    cache = json.loads((tmp_path / "tuning.json").read_text())
    assert sorted(k.split("|")[3] for k in cache) == ["decode", "prefill"]
    assert sorted(cache.values()) == sorted([rt.prefill_variant, rt.decode_variant])
    assert rt.past == 0  # timing left no trace in the KV cache

    def fail(*_):
        raise AssertionError("timed again")

    monkeypatch.setattr(tuning, "time_prefill_variants", fail)
    monkeypatch.setattr(tuning, "time_decode_variants", fail)
    again = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)
    assert (again.prefill_variant, again.decode_variant) == (rt.prefill_variant, rt.decode_variant)
    assert set(again._lists) == {f"prefill.{rt.prefill_variant}", f"decode.{rt.decode_variant}"}
    # the package part of the key: the first shard's sha256 and the plan's digest, so the same weights
    # compiled again with other kernels (another webllm, other options) are timed afresh
    assert {k.split("|")[2] for k in cache} == {f"{rt.manifest['shards'][0]['sha256']}:{rt.plan_digest}"}
    other = tmp_path / "recompiled"
    shutil.copytree(package, other)
    text = (other / "plan-f32.json").read_text()
    for name in json.loads(text)["kernels"]:  # other kernel names (as other sources would have), same weights
        text = text.replace(f'"{name}"', f'"{name}b"')
    (other / "plan-f32.json").write_text(text)
    with pytest.raises(AssertionError, match="timed again"):
        Model.load(other, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)


class PrefillCost:
    """The tuning's clock (tuning.time) runs `cost[variant]` seconds ahead during each real prefill,
    so that one-token steps of the variants are told apart by these costs (seconds, far above this
    tiny model's milliseconds) rather than by the host's load; decode steps keep their real times."""

    def __init__(self, monkeypatch, cost: dict[str, float]):
        import time

        self.ahead, self.real = 0.0, time.perf_counter
        real_prefill = Model.prefill

        def prefill(model, *args, **kw):
            real_prefill(model, *args, **kw)
            self.ahead += cost[model.prefill_variant]

        monkeypatch.setattr(Model, "prefill", prefill)
        monkeypatch.setattr(tuning, "time", self)
        self.timed: list[dict[str, float]] = []  # what time_prefill_variants returned
        time_prefill = tuning.time_prefill_variants

        def record(model, names):
            self.timed.append(time_prefill(model, names))
            return self.timed[-1]

        monkeypatch.setattr(tuning, "time_prefill_variants", record)

    def perf_counter(self) -> float:
        return self.real() + self.ahead


# seconds of a one-token prefill step on a slow software adapter: the small tiles as lavapipe ran the
# embedded model's (rule 7.0-7.5, q8 4.9-5.3; tile64 made up, between), the 128-token tiles 18.4-20.1
SLOW_COST = {"rule": 7.2, "tile64": 6.0, "q8": 5.1, "tile128": 19.0, "wide128": 18.4, "dbuf128": 20.1}


def test_a_slow_adapter_times_little(package, zoo, tmp_path, monkeypatch):
    """Where a one-token prefill step is slow on a software adapter (there a step costs a whole token
    tile whatever its length), one one-token step each of the small-tile prefill variants (token tile
    at most SMALL_TILE times the first's: rule 32 here, tile64 and q8 64) decides, and the 128-token
    tiles are never built; where a decode step is slow, one warm-up step each decides among the
    decode variants that need no feature (a software adapter emulates subgroups and dot4I8Packed),
    the others never built."""
    monkeypatch.setenv("WEBLLM_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "SLOW_STEP_S", 0.0)
    assert tuning.software_adapter(zoo.adapter)  # lavapipe says it is a CPU
    clock = PrefillCost(monkeypatch, SLOW_COST)
    rt = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)
    assert {n: tuning.token_tile(rt.plan, n) for n in rt.prefill_variants} == {
        "rule": 32, "tile64": 64, "tile128": 128, "q8": 64, "wide128": 128, "dbuf128": 128}
    small = ("rule", "tile64", "q8")
    [times] = clock.timed
    assert sorted(times) == sorted(small)
    assert rt.prefill_variant == min(times, key=times.get) == "q8"
    plain = ("gemv32", "gemv4")
    assert rt.decode_variant in plain
    assert set(rt._lists) == {f"prefill.{n}" for n in small} | {f"decode.{n}" for n in plain}
    assert np.isfinite(rt.logits()).all()


def test_a_slow_adapter_never_builds_a_large_tile_or_a_missing_feature(package, zoo, tmp_path, monkeypatch):
    """On a slow software adapter no 128-token-tile prefill variant is built, however fast it would
    run (here the cheapest by far), and a variant needing a feature the device lacks (q8 without
    WGSL's packed_4x8_integer_dot_product) is not among those probed: the pick is the fastest small
    tile the device runs."""
    from webllm.runtime import package as pkg

    monkeypatch.setenv("WEBLLM_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "SLOW_STEP_S", 0.0)
    monkeypatch.setattr(pkg, "wgsl_language_features", lambda: {"readonly_and_readwrite_storage_textures"})
    clock = PrefillCost(monkeypatch, {**SLOW_COST, "tile128": 0.5, "wide128": 0.5, "dbuf128": 0.5})
    rt = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)
    assert "q8" not in rt.prefill_variants and "tile128" in rt.prefill_variants
    [times] = clock.timed
    assert sorted(times) == ["rule", "tile64"] and rt.prefill_variant == "tile64"
    assert {k for k in rt._lists if k.startswith("prefill.")} == {"prefill.rule", "prefill.tile64"}


def test_a_gpu_times_every_prefill_variant_however_slow_a_step(package, zoo, monkeypatch):
    """Only an adapter that says it is a CPU probes one-token steps alone after a slow one-token step:
    on an H100 a Llama-3.1-8B's took 355 ms (117 the next time: a whole token tile's work), which had kept
    the float rule where the int8 q8 prefills 1.8x faster. Here every step counts as slow and the
    adapter as a GPU: every prefill variant is timed."""
    assert tuning.software_adapter(zoo.adapter)  # lavapipe says it is a CPU
    monkeypatch.setattr(tuning, "SLOW_STEP_S", 0.0)
    monkeypatch.setattr(tuning, "software_adapter", lambda adapter: False)
    rt = load(package, zoo, "f32")
    times = tuning.time_prefill_variants(rt, rt.prefill_variants)
    assert list(times) == rt.prefill_variants and all(0 < t < float("inf") for t in times.values())
    assert rt.prefill_variant == "rule"  # left on the variant it had


class SimulatedGPU:
    """Decode step times on a simulated clock, as an H100 ran an 8B's after idling through pipeline
    builds (tuning.settle): for `slow_s` seconds of steps after the last build, a flat ~16 ms whatever
    the variant (here 16 ms less 1 ms per place in the variant order, so that the last looks best),
    then `cost[variant]`. A pipeline build leaves the GPU idle `build_s`."""

    def __init__(self, model, cost: dict[str, float], slow_s: float = 0.3, build_s: float = 0.5):
        self.now, self.cost, self.slow_s, self.build_s = 0.0, cost, slow_s, build_s
        self.order = list(cost)
        self.ramp_from = 0.0
        self.built = set(model._lists)

    def perf_counter(self) -> float:
        return self.now

    def decode_seconds(self, model, steps: int, past: int = 0) -> float:
        v = model.decode_variant
        s = 0.016 - 0.001 * self.order.index(v) if self.now - self.ramp_from < self.slow_s else self.cost[v]
        self.now += s * steps
        return s

    def use_decode_variant(self, use, name: str) -> None:
        if f"decode.{name}" not in self.built:  # building its pipelines: the GPU idles, its clocks drop
            self.built.add(f"decode.{name}")
            self.now += self.build_s
            self.ramp_from = self.now
        use(name)


def test_decode_timing_lets_the_gpu_settle_first(package, zoo, monkeypatch):
    """Variants are compared only after every pipeline is built and steps have run for at least
    SETTLE_S[0] without still getting faster. Here the GPU runs every step in ~16 ms for 0.3 s after
    a pipeline build, then the first variant in 3.5 ms and the others in 5.9 (gemv32sg and gemv4 of
    the 8B, f32): compared within the slow spell (over 10 ms a step, where one round decides), another
    variant would win."""
    rt = load(package, zoo, "f32")
    names = rt.decode_variants
    assert len(names) >= 2
    cost = {n: 0.0059 for n in names}
    cost[names[0]] = 0.0035
    gpu = SimulatedGPU(rt, cost)
    use = rt.use_decode_variant
    monkeypatch.setattr(tuning, "time", gpu)
    monkeypatch.setattr(tuning, "_decode_seconds", gpu.decode_seconds)
    monkeypatch.setattr(rt, "use_decode_variant", lambda name: gpu.use_decode_variant(use, name))
    times = tuning.time_decode_variants(rt, names)
    assert min(times, key=times.get) == names[0] and times[names[0]] == pytest.approx(0.0035)


def test_decode_rounds_last_longer_where_steps_are_short(package, zoo, monkeypatch):
    """After the settling, each round but the first runs at least ROUND_S: 16 steps where a step takes
    3.5 ms, 100 where it takes 0.5 ms (a round carries the read of its last token and the host's
    hiccups, which 16 short steps did not outweigh on an H100), never more than MAX_ROUND_STEPS."""
    rt = load(package, zoo, "f32")
    names = rt.decode_variants
    for step_s, want in ((0.0035, 16), (0.0005, 100), (0.00001, tuning.MAX_ROUND_STEPS)):
        gpu = SimulatedGPU(rt, dict.fromkeys(names, step_s), slow_s=0.0)
        rounds = []

        def timed(model, steps, past=0, gpu=gpu, rounds=rounds):
            rounds.append(steps)
            return gpu.decode_seconds(model, steps, past)

        monkeypatch.setattr(tuning, "time", gpu)
        monkeypatch.setattr(tuning, "_decode_seconds", timed)
        tuning.time_decode_variants(rt, names)
        assert rounds[-3 * len(names):] == [min(want, rt.capacity)] * (3 * len(names))
        assert rounds[-4 * len(names):-3 * len(names)] == [4] * len(names)  # the first round: 4 steps


def test_round_steps():
    assert tuning.round_steps(0.0035, 16) == 16
    assert tuning.round_steps(0.0005, 16) == 100
    assert tuning.round_steps(0.0005, 16, room=40) == 40  # within the cache's free positions
    assert tuning.round_steps(0.2, 16) == 16 and tuning.round_steps(0.0, 16) == tuning.MAX_ROUND_STEPS


def test_settle_runs_at_least_its_minimum_and_until_steps_stop_getting_faster(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(tuning, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))

    def steps(times):
        it = iter(times)

        def step():
            clock[0] += 0.1
            return next(it)
        return step

    # flat and slow for 0.4 s, then faster: settle waits out its minimum, then for the steps to level off
    clock[0] = 0.0
    settle_times = [0.016] * 4 + [0.009, 0.0046, 0.0045, 0.0045] + [0.0045] * 30
    assert tuning.settle(steps(settle_times)) == pytest.approx(0.0045)  # the fastest repetition
    assert clock[0] == pytest.approx(0.7)  # stopped at the first repetition no faster than 0.95 of the best
    clock[0] = 0.0
    tuning.settle(steps([0.01 * 0.9 ** i for i in range(100)]))  # always getting faster: its maximum
    assert clock[0] == pytest.approx(tuning.SETTLE_S[1], abs=0.11)


def test_int8_variants_need_the_wgsl_language_feature(package, zoo, monkeypatch):
    """The int8 decode variants name WGSL's packed_4x8_integer_dot_product in variant_features: an
    implementation that reports WGSL language features without it gets only the float variants."""
    from webllm.runtime import package as pkg

    plan = json.loads((package / "plan-f32.json").read_text())
    feats, limits = device_features(zoo.device), {"maxComputeWorkgroupStorageSize": 32768}
    assert pkg.usable_variants(plan, "decode", feats, limits)[0] == "q8gemv32sg"  # wgpu-py reports none: naga has it
    monkeypatch.setattr(pkg, "wgsl_language_features", lambda: {"readonly_and_readwrite_storage_textures"})
    assert pkg.usable_variants(plan, "decode", feats, limits) == ["gemv32sg", "gemv32", "gemv4sg", "gemv4"]
    assert pkg.variant_lacks(plan, "q8gemv32", feats, limits) == ["packed_4x8_integer_dot_product"]
