"""Decode variants: the plan carries one decode list per one-token matmul shape; every variant computes
the same logits, and the runtime times them once per adapter and package and caches the winner."""

from __future__ import annotations

import json

import numpy as np
from test_reference import BY_NAME

from webllm.runtime import Model
from webllm.runtime.package import read_manifest, read_plan

SPEC = BY_NAME["qwen2"]  # biases, GQA: every gemv epilogue
IDS = [3, 14, 15, 92, 65, 35, 89]


def test_every_decode_variant_matches_transformers(zoo, gpu):
    """Greedy decode of 8 tokens under each variant: logits within the q0f32 bound of transformers."""
    pkg = zoo.package(SPEC, "q0f32")
    plan = read_plan(pkg, read_manifest(pkg), "f32")
    assert len(plan["decode_variants"]) >= 2
    adapter, device = gpu
    for name in plan["decode_variants"]:
        rt = Model.load(pkg, profile="f32", progress=False, adapter=adapter, device=device, decode_variant=name)
        assert rt.decode_variant == name
        rt.prefill(IDS)
        seq = list(IDS)
        for _ in range(8):
            seq.append(rt.next_token())
            rt.decode()
            ref = zoo.logits(SPEC, "q0f32", seq)[-1]
            got = rt.logits()
            assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), name


def test_tuning_is_cached_per_adapter_and_package(zoo, gpu, tmp_path, monkeypatch):
    monkeypatch.setenv("WEBLLM_CACHE", str(tmp_path))
    pkg = zoo.package(SPEC, "q0f32")
    adapter, device = gpu
    rt = Model.load(pkg, profile="f32", progress=False, adapter=adapter, device=device)
    cache = json.loads((tmp_path / "tuning.json").read_text())
    assert list(cache.values()) == [rt.decode_variant]
    assert rt.past == 0  # timing left no trace in the KV cache
    again = Model.load(pkg, profile="f32", progress=False, adapter=adapter, device=device)
    assert again.decode_variant == rt.decode_variant
