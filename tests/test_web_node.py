# ruff: noqa: F811 (the fixtures imported from web_node come back as test parameters)
"""The JavaScript runtime (web/src/runtime) in Node on Dawn, against the native runtime.

Dawn runs here on the SwiftShader Vulkan driver that Debian's `chromium` ships (Dawn rejects
lavapipe); the native runtime runs on the session's lavapipe device. The same package, profile (f32:
SwiftShader has no shader-f16) and decode variant on both sides: token ids must be equal, logits
within 1e-4 of max|logits| (two software adapters summing in f32 in the same order of kernels; the
measured difference is ~1e-7). The Node tests themselves (web/test/*.test.js, Node's test runner)
read the reference tests/web_node.py writes (tuning.test.js and variants.test.js run in
test_web_node_variants.py); they also pin loading progress, the shard cache, sha256
re-fetch, version refusal and the context fit. The conformance fixture runs through the Node entry, and
`tsc --checkJs` checks the JSDoc types.

Dawn zero-initializes workgroup memory with loops that SwiftShader compiles slowly (kernels take 5x
longer to build); every run but the parity one (web/test/parity.test.js, what a browser runs) turns
that off through $WEBLLM_DAWN. Parity shows the kernels do not depend on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from web_node import (  # noqa: E402, F401 (node, reference: fixtures)
    ROOT,
    SWIFTSHADER,
    VARIANT,
    VARIANT_FILES,
    WEB,
    node,
    node_env,
    reference,
    run_node_tests,
)


def test_node_runtime(node, reference, tmp_path):
    """`node --test` on web/test/ (features, loading, parity): parity with the native runtime and the
    loading behaviour, on Dawn. The tuning and variant files run in test_web_node_variants.py."""
    files = sorted(p.name.removesuffix(".test.js") for p in (WEB / "test").glob("*.test.js"))
    assert set(VARIANT_FILES) <= set(files), files
    run_node_tests(node, reference, tmp_path, [f for f in files if f not in VARIANT_FILES])


def test_conformance_fixture_in_node(node, tmp_path):
    """The conformance fixture (tests/conformance/, f32: SwiftShader has no shader-f16) through the Node
    entry: every case passes, the twin of tests/test_conformance.py's native run."""
    fixture = ROOT / "tests" / "conformance"
    expected = json.loads((fixture / "expected.json").read_text())
    n = sum("f32" in case.get("profiles", ["f32"]) for case in expected["cases"])
    r = subprocess.run([node, "web/src/node/conformance.js", str(fixture)], cwd=ROOT, capture_output=True, text=True,
                       env=node_env(tmp_path) | {"WEBLLM_DAWN": "enable-dawn-features=disable_workgroup_init"},
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert ", profile f32," in lines[0]
    assert lines[-1] == f"{n} passed, 0 failed", r.stdout


def test_cli_generates_and_reports_speed(node, reference, tmp_path):
    """The Node CLI generates the native runtime's greedy ids and prints its speed figures as JSON."""
    ref = json.loads(reference.read_text())
    r = subprocess.run(
        [node, "web/src/node/cli.js", ref["package"], "--profile", "f32", "--decode-variant", VARIANT,
         "--prompt-ids", ",".join(map(str, ref["prompt"])), "--max-tokens", "24", "--prompt-tokens", "16",
         "--decode-tokens", "4", "--repeat", "1", "--json"],
        cwd=ROOT, env=node_env(tmp_path) | {"WEBLLM_DAWN": "enable-dawn-features=disable_workgroup_init"},
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["generated"] == ref["greedy"]
    assert res["adapter"].startswith("SwiftShader")
    assert res["prefill_tok_s"] > 0 and res["decode_tok_s"] > 0 and res["generate_tok_s_with_readback"] > 0


def test_cli_prompt_text(node, tmp_path):
    """--prompt "text" goes through the package's tokenizer (the JS engine's) and prints the reply as text."""
    r = subprocess.run([node, "web/src/node/cli.js", str(ROOT / "tests" / "conformance" / "package"), "--prompt", "t1 t2 t3",
                        "--max-tokens", "4", "--prompt-tokens", "8", "--decode-tokens", "2", "--repeat", "1"],
                       cwd=ROOT, env=node_env(tmp_path) | {"WEBLLM_DAWN": "enable-dawn-features=disable_workgroup_init"},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (r.stderr + r.stdout).splitlines()  # the generation is logged, the speed printed
    assert "prompt 1,2,3" in lines  # the word-level tokenizer of the fixture: "tN" is id N
    generated = next(line for line in lines if line.startswith("generated ")).split()[1].split(",")
    assert len(generated) == 4 and " ".join(f"t{i}" for i in generated) in lines


def test_cli_refuses_a_missing_package_in_one_line(node, tmp_path):
    r = subprocess.run([node, "web/src/node/cli.js", str(tmp_path / "nope")], cwd=ROOT, env=node_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "manifest.json: not found" in lines[-1], r.stderr
    assert not any(line.lstrip().startswith("at ") for line in lines), r.stderr  # no stack trace


def test_typescript_check(node):
    """JSDoc types of the runtime, the Node entry and its tests hold (tsc --checkJs)."""
    r = subprocess.run([node, "node_modules/typescript/bin/tsc", "-p", "tsconfig.runtime.json"], cwd=WEB,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]


def test_reference_is_not_trivial(reference):
    """Guard on the fixture itself: the cases really exercise sampling, stops and chunking."""
    ref = json.loads(reference.read_text())
    assert ref["seeded"]["ids"] != ref["greedy"]
    assert len(ref["stop"]["ids"]) == 6 and ref["stop"]["past"] == 6 + 5
    assert len(ref["long_prompt"]) > 2 * 16
    assert np.isfinite(ref["long"]["logits"]).all()


# ---- webllm bench --dawn: the same figures through the Node entry, beside the native ones -----------

CONFORMANCE_PACKAGE = ROOT / "tests" / "conformance" / "package"


def _bench_dawn(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """`webllm bench --dawn` on the conformance package with token counts small enough for software
    adapters: lavapipe natively, SwiftShader through Dawn (WEBLLM_DAWN_ICD: for Dawn alone)."""
    env = node_env(tmp_path)
    del env["VK_ICD_FILENAMES"]  # the native side keeps the session's lavapipe
    env.update(WEBLLM_DAWN_ICD=SWIFTSHADER, WEBLLM_DAWN="enable-dawn-features=disable_workgroup_init")
    return subprocess.run(
        [sys.executable, "-m", "webllm", "bench", str(CONFORMANCE_PACKAGE), "--dawn", "--quiet", "--prompt-tokens",
         "16,40", "--context", "0,24", "--decode-tokens", "4", "--repeat", "1", "--stream-read-mib", "16", *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_bench_dawn_reports_both_hosts(node, tmp_path):
    """`webllm bench --dawn --json`: one object with both hosts' figures, measured alike. The same
    package, profile and forced decode variant give equal dispatch counts, GPU memory (the manifest's
    figure for the full context) and bytes per step; every speed is a positive number (no timings)."""
    manifest = json.loads((CONFORMANCE_PACKAGE / "manifest.json").read_text())
    plan = json.loads((CONFORMANCE_PACKAGE / manifest["profiles"]["f32"]["plan"]).read_text())
    variant = next(iter(plan["decode_variants"]))
    r = _bench_dawn(tmp_path, "--json", "--profile", "f32", "--decode-variant", variant)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    native, dawn = res["hosts"]["native"], res["hosts"]["dawn"]
    assert native["host"] == "native" and dawn["host"] == "dawn"
    assert dawn["adapter"].startswith("SwiftShader") and not native["adapter"].startswith("SwiftShader")
    for key in ("profile", "decode_variant", "kv_splits", "dispatches_per_decode_step", "layers", "context_window",
                "prefill_chunk", "quantization"):
        assert native[key] == dawn[key], key
    assert native["decode_variant"] == variant
    assert native["dispatches_per_decode_step"] == len(plan["decode_variants"][variant])
    assert native["gpu_memory_bytes"] == dawn["gpu_memory_bytes"] == manifest["profiles"]["f32"]["memory_bytes"]
    for h in (native, dawn):
        assert h["load_s"] > 0 and h["stream_read_gb_s"] > 0
        assert [p["tokens"] for p in h["prefill"]] == [16, 40]
        assert all(p["tok_s"] > 0 and p["ttft_ms"] > 0 for p in h["prefill"])
        assert [d["context"] for d in h["decode"]] == [1, 24]  # context 0 decodes after one token
        assert all(d["tok_s"] > 0 and d["streaming_tok_s"] > 0 and d["roofline_ratio"] > 0 for d in h["decode"])
    for dn, dd in zip(native["decode"], dawn["decode"], strict=True):
        assert (dn["weight_bytes"], dn["kv_bytes"]) == (dd["weight_bytes"], dd["kv_bytes"])


def test_bench_dawn_profile_unavailable_on_one_host(node, tmp_path):
    """A profile one host lacks (f16: SwiftShader has no shader-f16) reads 'unavailable' in that
    column; the other host's figures are still printed and the run succeeds."""
    r = _bench_dawn(tmp_path, "--profile", "f16", "--no-bandwidth")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert any(line.startswith("| profile | f16, ") and line.endswith("| unavailable |") for line in lines), r.stdout
    assert any(line.startswith("| decode after 24: tok/s, GPU only | ") for line in lines), r.stdout
    assert any(line.startswith("Dawn (Node): unavailable on SwiftShader") and "shader-f16" in line for line in lines)


@pytest.mark.parametrize("flag, needle", [
    ("--node", "node binary"),
    ("--node-modules", "the npm package webgpu"),
])
def test_bench_dawn_names_what_is_missing(node, flag, needle, tmp_path):
    """Without node or the webgpu package, one line names what is missing, before anything is measured."""
    r = subprocess.run([sys.executable, "-m", "webllm", "bench", str(CONFORMANCE_PACKAGE), "--dawn", flag,
                        str(tmp_path / "nothing")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("webllm: error: --dawn") and needle in r.stderr, r.stderr
