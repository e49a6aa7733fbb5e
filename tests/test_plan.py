"""The plan is what a runtime interprets (docs/FORMAT.md, version 3): every buffer, bind group, upload
and uniform field is written down, and a runtime may allocate a smaller KV cache than the package's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import TOL_F32, Spec, prompt_ids, rel_err

from webllm.cli.info import dispatches_per_layer
from webllm.errors import WebLLMError
from webllm.runtime import Model

SPEC = Spec("plan_v2", hidden_size=64, num_attention_heads=4, num_key_value_heads=2, vocab_size=301, seed=7)


@pytest.fixture(scope="module")
def package(zoo):
    return zoo.package(SPEC, "q4f16_1", prefill_chunk=32, context_window=300)


def test_plan_is_self_describing(package):
    m = json.loads((package / "manifest.json").read_text())
    assert m["format_version"] == 4 and m["profile_order"] == ["f16", "f32"]
    uploaded = {}
    for shard in m["shards"]:
        for tensor, _, shard_off, n in shard["uploads"]:
            assert shard_off + n <= shard["nbytes"]
            uploaded[tensor] = uploaded.get(tensor, 0) + n
    assert uploaded == {k: t["nbytes"] for k, t in m["tensors"].items()}  # every byte of every tensor, once
    assert all(t["size"] % 16 == 0 and t["size"] >= t["nbytes"] for t in m["tensors"].values())
    for name in m["profile_order"]:
        plan = json.loads((package / m["profiles"][name]["plan"]).read_text())
        assert not {"decode", "io", "prefill", "score"} & set(plan)  # versions 1 and 2 had them
        fields = {f["name"]: f for f in plan["uniform"]["fields"]}
        assert fields["n_tokens"]["offset"] == 0 and fields["top_p"]["default"] == 1.0
        # chunk 32: one tile, and the int8 matmuls of the q4 weights
        assert list(plan["score_variants"]) == list(plan["prefill_variants"]) == ["rule", "q8"]
        variants = [dl for kind in ("prefill", "score", "decode") for dl in plan[f"{kind}_variants"].values()]
        used = {d["kernel"] for dl in variants for d in dl}
        assert used == set(plan["kernels"])  # no kernel of a dropped phase
        # subgroups; and the int8 variants' WGSL language feature (dot4I8Packed)
        assert plan["variant_features"] == {n: (["packed_4x8_integer_dot_product"] if n.startswith("q8") else [])
                                            + (["subgroups"] if n.endswith("sg") else [])
                                            for n in [*plan["decode_variants"], *plan["prefill_variants"]]
                                            if n.endswith("sg") or n.startswith("q8")}
        assert plan["variant_limits"] == {}  # chunk 32: no 128-token tiles, so no wide staging
        # a bind group serves every kernel with its kernel's binding types (one layout per such list)
        for d in (d for dl in variants for d in dl):
            g = plan["bind_groups"][d["bind_group"]]
            assert plan["kernels"][g["kernel"]]["bindings"] == plan["kernels"][d["kernel"]]["bindings"]
        files = {p.name for p in (package / "kernels").iterdir()}
        assert {k["file"] for k in plan["kernels"].values()} <= files
        names = {b["name"] for b in plan["buffers"]} | set(m["tensors"])
        for g in plan["bind_groups"]:
            assert len(g["buffers"]) == len(plan["kernels"][g["kernel"]]["bindings"])
            assert set(g["buffers"]) <= names
        kv = [b for b in plan["buffers"] if b["name"].startswith("k_cache.")]
        assert kv and all(b["per_context"]["unit"] == 1 and b["size"] == 300 * b["per_context"]["bytes"] for b in kv)


def test_decode_is_five_dispatches_per_layer(package):
    """A decode layer is qkv (+ norm, rope, KV append), attention, o (+ the attention's split combine,
    residual, next norm's pieces), gate_up, down: no combine or norm dispatch. The attention's split
    count follows the KV length up to a cap (`kv_per_z`, `max_z`), the same rule its kernels apply."""
    m = json.loads((package / "manifest.json").read_text())
    for name in m["profile_order"]:
        plan = json.loads((package / m["profiles"][name]["plan"]).read_text())
        for variant, dl in plan["decode_variants"].items():
            assert dispatches_per_layer(plan, dl, m["config"]["num_hidden_layers"]) == 5, (name, variant)
            attn = [d for d in dl if "kv_per_z" in d]
            assert attn and all(d["kv_per_z"] == 64 and d["max_z"] == d["workgroups"][2] for d in attn)


def test_smaller_context_window_same_logits(package, zoo):
    """A runtime may allocate a KV cache for fewer tokens than the package's context window (the
    memory-fit path): the cache is position-major, so the kernels do not change and neither do the logits."""
    ids = prompt_ids(SPEC, 40)
    full = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device)
    small = Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device,
                       context_window=48, decode_variant=full.decode_variant, prefill_variant=full.prefill_variant)
    assert small.capacity == 48 and small._buffers["k_cache.0"].size < full._buffers["k_cache.0"].size
    for rt in (full, small):
        rt.prefill(ids)
        for _ in range(8):
            rt.decode()
    assert rel_err(small.logits(), full.logits()) < TOL_F32
    with pytest.raises(WebLLMError, match="context window full"):
        small.decode()
    with pytest.raises(WebLLMError, match="context_window 301"):
        Model.load(package, profile="f32", progress=False, adapter=zoo.adapter, device=zoo.device, context_window=301)


def test_truncate_rewinds(package, zoo):
    rt = zoo.runtime(SPEC, "q4f16_1", "f32", prefill_chunk=32, context_window=300)
    a, b = prompt_ids(SPEC, 30), prompt_ids(SPEC, 42)[30:]
    rt.prefill(np.concatenate([a[:10], b]))
    fresh = rt.logits()
    rt.reset()
    rt.prefill(a)
    rt.truncate(10)
    rt.prefill(b)
    assert rel_err(rt.logits(), fresh) < TOL_F32
    with pytest.raises(WebLLMError, match="truncate"):
        rt.truncate(rt.past + 1)


def test_bench_counts_kv_bytes_by_the_plans_rule(package):
    """`webllm bench`'s roofline counts the KV cache's bytes from the plan's per_context rule: K and V,
    f16 in both profiles (the JavaScript twin, speed.js, is checked against this in test_web_node)."""
    from types import SimpleNamespace

    from webllm.evaluation.speed import decode_bytes

    m = json.loads((package / "manifest.json").read_text())
    cfg = m["config"]
    for profile in ("f16", "f32"):
        plan = json.loads((package / f"plan-{profile}.json").read_text())
        model = SimpleNamespace(config=cfg, manifest=m, plan=plan)
        for ctx in (0, 1, 37, 300):
            want = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * 2 * ctx
            assert decode_bytes(model, ctx)["kv"] == want
