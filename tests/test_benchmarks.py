"""The GPU benchmarks still run: each on this machine's adapter with its smallest settings (no timing
is checked, only that it finishes and that what it checks against numpy holds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("pool", [[], ["--pool"]], ids=["a buffer each", "one pool"])
def test_gemv_bench_runs_chains_and_checks_results(tmp_path, pool):
    out = tmp_path / "gemv.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gemv_bench.py"), "--quick", "--variants", "32,16,16w",
                        "--epilogues", "plain,q8,addnorm,normin",
                        "--seconds", "0", "--chain", "2", "--cold-mib", "1", "--clock", "wall", "--json", str(out),
                        *pool],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    rows = d["results"]
    # three shapes (one with the SwiGLU pair; one whose 16w workgroups take 512 threads), three variants,
    # every profile the adapter has, and x as int8 blocks (the q8 decode variants' x)
    assert {(x["shape"], x["variant"], x["profile"]) for x in rows} >= {
        (s, v, p) for s in ("small 256x1024", "small pair 512x2x256", "small long 4096x64") for v in ("32", "16", "16w")
        for p in ("f32", "int8")}
    # and the model's epilogues: the pair's product as int8 blocks, the others' residual add with the next
    # norm's int8 x * weight, and every shape's norm from partial sums of squares
    assert {(x["shape"], x["epilogue"]) for x in rows if x["variant"] == "16w" and x["profile"] == "int8"} == {
        ("small 256x1024", "plain"), ("small 256x1024", "addnorm"), ("small pair 512x2x256", "plain"),
        ("small pair 512x2x256", "q8"), ("small long 4096x64", "plain"), ("small long 4096x64", "addnorm"),
        ("small 256x1024", "normin"), ("small pair 512x2x256", "normin"), ("small long 4096x64", "normin")}
    for x in rows:  # int8 blocks (q8, addnorm, the pair's normin): within half a step (1/254 of a block's largest)
        floats = x["epilogue"] == "plain" or x["epilogue"] == "normin" and "pair" not in x["shape"]
        assert x["err"] < (1e-5 if floats else 1 / 250), x
        assert x["us"] > 0 and x["stream_us"] > 0 and x["gb_s"] > 0


def test_decode_attention_bench_checks_the_kernel_and_its_variants(tmp_path):
    """The decode attention alone, its split counts and heads per workgroup: every result against numpy
    (the partials combined as the o matmul does); the probes run but are wrong by design."""
    out = tmp_path / "attention.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    variants = ("default", "gw1", "noV", "l1k+l1v+nobar")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode_attention_bench.py"), "--quick",
                        "--contexts", "1", "130", "--splits", "2", "--variants", *variants,
                        "--profiles", "f32", "--seconds", "0", "--chain", "2", "--cold-mib", "1", "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    assert {(x["context"], x["variant"]) for x in rows} == {(c, v) for c in (1, 130) for v in variants}
    for x in rows:
        assert x["us"] > 0 and x["stream_us"] > 0
        if x["variant"] in ("default", "gw1"):
            assert x["err"] < 1e-5, x


def test_profile_decode_times_every_kind_alone_and_in_the_chain(tmp_path):
    out = tmp_path / "profile.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pkg = ROOT / "tests" / "conformance" / "package"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_decode.py"), str(pkg), "--profile", "f32",
                        "--steps", "2", "--stream-read-mib", "8", "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert sum(v["count"] for v in d["by_kind"].values()) == d["dispatches"] > 0
    assert all({"ms", "in_chain_ms", "alone_chain_ms", "weight_bytes"} <= set(v) for v in d["by_kind"].values())
    assert all(v["alone_chain_ms"] > 0 for v in d["by_kind"].values())
    # every matmul's weights counted once a step: the package's tensors but the embedding table and rope's
    manifest = json.loads((pkg / "manifest.json").read_text())
    tensors = {n: int(t["nbytes"]) for n, t in manifest["tensors"].items() if not n.startswith(("embed", "rope"))}
    assert sum(v["weight_bytes"] for v in d["by_kind"].values()) == sum(tensors.values())
    assert d["stream_read_gb_s"] > 0
    assert "in the chain" in r.stdout


def test_kernel_stats_captures_and_builds_every_decode_kernel(tmp_path):
    """kernel_stats.py: the decode step's kernels captured as SPIR-V under gfxreconstruct, and each built
    as a pipeline by kernel_stats.c with the bindings its plan lists (a kernel matched to another's
    SPIR-V would show other bindings). Lavapipe reports no statistics; an H100's are in PERFORMANCE.md."""
    pkg = ROOT / "tests" / "conformance" / "package"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "benchmarks" / "kernel_stats.py")
    spv, out = tmp_path / "spv", tmp_path / "stats.json"
    r = subprocess.run([sys.executable, script, "spirv", str(pkg), str(spv), "--profile", "f32"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    r = subprocess.run([sys.executable, script, "stats", str(spv), "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    kernels = json.loads(out.read_text())["kernels"]
    plan = json.loads((pkg / "plan-f32.json").read_text())
    first = next(iter(plan["decode_variants"].values()))
    assert [k["kernel"] for k in kernels] == list(dict.fromkeys(d["kernel"] for d in first))
    for k in kernels:
        assert k["error"] is None and k["threads"] > 0, k
        assert k["bindings_built"] == len(plan["kernels"][k["kernel"]]["bindings"]), k


def test_dispatch_cost_times_every_grid(tmp_path):
    out = tmp_path / "dispatch.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dispatch_cost.py"), "--threads", "64,256",
                        "--groups", "1,8", "--wg-bytes", "0,4096", "--chain", "2", "--seconds", "0", "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    assert {(x["threads"], x["groups"], x["wg_bytes"]) for x in rows} == {
        (t, g, b) for t in (64, 256) for g in (1, 8) for b in (0, 4096)}
    assert all(x["us"] > 0 for x in rows)


def test_dispatch_cost_on_dawn_beside_native(tmp_path):
    """--dawn: the same grids through web/src/node/dispatch_cost.js on Dawn (SwiftShader here, as the
    Node tests run it), both hosts on the wall clock."""
    out = tmp_path / "dispatch.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WEBLLM_DAWN_ICD": "/usr/lib/chromium/vk_swiftshader_icd.json"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dispatch_cost.py"), "--threads", "64",
                        "--groups", "1,8", "--chain", "2", "--seconds", "0", "--dawn", "--json", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d["clock"] == "wall" and d["dawn"]["host"] == "dawn" and "SwiftShader" in d["dawn"]["adapter"]
    for rows in (d["results"], d["dawn"]["results"]):
        assert {(x["threads"], x["groups"]) for x in rows} == {(64, 1), (64, 8)}
        assert all(x["us"] > 0 for x in rows)
    assert "dawn, SwiftShader" in r.stdout
