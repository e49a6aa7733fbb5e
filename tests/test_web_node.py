"""The JavaScript runtime (web/src/runtime) in Node on Dawn, against the native runtime.

Dawn runs here on the SwiftShader Vulkan driver that Debian's `chromium` ships (Dawn rejects
lavapipe); the native runtime runs on the session's lavapipe device. The same package, profile (f32:
SwiftShader has no shader-f16) and decode variant on both sides: token ids must be equal, logits
within 1e-4 of max|logits| (two software adapters summing in f32 in the same order of kernels; the
measured difference is ~1e-7). The Node tests themselves (web/test/*.test.js, Node's test runner)
read the reference this module writes; they also pin loading progress, the shard cache, sha256
re-fetch, version refusal and the context fit. The conformance fixture runs through the Node entry, and
`tsc --checkJs` checks the JSDoc types.

Dawn zero-initializes workgroup memory with loops that SwiftShader compiles slowly (kernels take 5x
longer to build); every run but the parity one (web/test/parity.test.js, what a browser runs) turns
that off through $WEBLLM_DAWN. Parity shows the kernels do not depend on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import Spec, prompt_ids  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
SWIFTSHADER = "/usr/lib/chromium/vk_swiftshader_icd.json"
# head_dim 32: decode attention runs attention_decode.wgsl (the conformance fixture's head_dim 16 runs its
# fallback); 2 decode splits, so the 150-token case spans several chunks per split and max_z caps the grid.
# 4 KV heads (2 query heads each): the KV cache (f16) then outgrows the rope table (f32, head_dim / 2
# pairs a position), so web/test/loading.test.js finds a binding limit between the two.
SPEC = Spec("web_llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
            num_key_value_heads=4, head_dim=32, vocab_size=301, seed=3)
OPTIONS = dict(context_window=256, prefill_chunk=16, decode_splits=2)  # small chunk: 40 tokens take 3 steps
# a vocabulary large enough for the split sampler (three dispatches; webllm.kernels.SAMPLE_SPLIT_MIN_VOCAB),
# not a multiple of its 256 chunks
SPLIT_SPEC = Spec("web_split_sampler", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=8209, seed=5)
VARIANT = "gemv32"
# a package with prefill variants: chunks of 128 take tiles of 32 (the rule), 64, or 128 holding whole groups
# (wide128, dbuf128: 32 KiB of workgroup memory, which SwiftShader and lavapipe offer)
VARIANT_OPTIONS = dict(context_window=256, prefill_chunk=128, prefill_tiles=(32, 64))


def node_env(tmp: Path) -> dict:
    env = dict(os.environ)
    xdg = tmp / "xdg"
    xdg.mkdir(mode=0o700, exist_ok=True)
    env.update(VK_ICD_FILENAMES=SWIFTSHADER, XDG_RUNTIME_DIR=str(xdg), WEBLLM_CACHE=str(tmp / "cache"))
    return env


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    assert exe, "node is missing: run scripts/install.sh (apt nodejs npm)"
    assert Path(SWIFTSHADER).exists(), f"{SWIFTSHADER} is missing: run scripts/install.sh (apt chromium)"
    assert (WEB / "node_modules" / "webgpu").is_dir(), "web/node_modules is missing: cd web && npm ci"
    return exe


def _ids(it) -> list[int]:
    return [int(t) for t in it]


@pytest.fixture(scope="module")
def reference(zoo, gpu, tmp_path_factory) -> Path:
    """Run the native runtime through the cases the Node tests replay; write them as JSON."""
    from webllm.runtime import Model

    pkg = zoo.package(SPEC, "q4f16_1", **OPTIONS)
    # both variants pinned: each runtime would time its own adapter's (the int8 prefill, q8, among them)
    m = Model.load(pkg, profile="f32", progress=False, adapter=gpu[0], device=gpu[1], decode_variant=VARIANT,
                   prefill_variant="rule")
    prompt = _ids(prompt_ids(SPEC, 40))
    ref: dict = {"package": str(pkg), "profile": "f32", "decode_variant": VARIANT, "prefill_variant": "rule",
                 "prompt": prompt[:6],
                 "long_prompt": prompt}

    m.reset()
    ref["greedy"] = _ids(m.generate(prompt[:6], 24))
    ref["greedy_past"] = m.past

    m.reset()
    m.set_sampling(temperature=0.9, top_p=0.9, seed=1234)
    ref["seeded"] = {"temperature": 0.9, "top_p": 0.9, "seed": 1234, "ids": _ids(m.generate(prompt[:6], 24))}
    m.set_sampling()

    # A generation that ends on a stop id, then one more decode step: the state generate leaves.
    stop = ref["greedy"][5]
    m.reset()
    ref["stop"] = {"stop_ids": [stop], "ids": _ids(m.generate(prompt[:6], 24, [stop]))}
    ref["stop"]["past"] = m.past
    ref["stop"]["logits"] = m.logits().tolist()
    m.decode()
    ref["stop"]["next"] = m.next_token()

    # Chunked prefill (40 tokens in chunks of 16), then a rewind and a different suffix.
    m.reset()
    m.prefill(prompt)
    ref["long"] = {"next": m.next_token(), "logits": m.logits().tolist()}
    m.truncate(20)
    m.prefill(prompt[30:35])
    ref["rewind"] = {"keep": 20, "suffix": prompt[30:35], "next": m.next_token(), "logits": m.logits().tolist()}

    # Decode after 150 tokens: 2 splits of 128 positions (2 chunks each), combined by the o matmul.
    m.reset()
    ref["long_decode"] = {"prompt": _ids(prompt_ids(SPEC, 150)), "steps": 3}
    m.prefill(ref["long_decode"]["prompt"])
    ids = []
    for _ in range(3):
        ids.append(m.next_token())
        m.decode()
    ref["long_decode"].update(ids=ids, next=m.next_token(), logits=m.logits().tolist())
    m.reset()

    # Every variant (web/test/variants.test.js), on a package with four prefill variants: the native ids
    # and logits of each, which Dawn must give with the same variant (its subgroups are 4 wide, lavapipe's 8).
    vpkg = zoo.package(SPEC, "q4f16_1", **VARIANT_OPTIONS)
    v = Model.load(vpkg, profile="f32", progress=False, adapter=gpu[0], device=gpu[1], prefill_variant="rule",
                   decode_variant="gemv32")
    assert v.prefill_variants == ["rule", "tile64", "q8", "wide128", "dbuf128"]
    ref["variants"] = {"package": str(vpkg), "prompt": prompt, "prefill": {}, "decode": {}}
    for name in v.prefill_variants:
        v.use_prefill_variant(name)
        v.reset()
        v.prefill(prompt)
        ref["variants"]["prefill"][name] = {"next": v.next_token(), "logits": v.logits().tolist()}
    v.use_prefill_variant("rule")
    for name in v.decode_variants:
        v.use_decode_variant(name)
        v.reset()
        ids = _ids(v.generate(prompt[:6], 12))
        ref["variants"]["decode"][name] = {"ids": ids, "logits": v.logits().tolist()}

    # Decode attention's split counts (web/test/variants.test.js): a copy of the package whose plan
    # offers 1 and 2 splits (its kernels are compiled for 2); after 150 tokens one split spans 192
    # positions, two 128: each count's native ids and logits.
    kpkg = tmp_path_factory.mktemp("kv-splits") / "pkg"
    shutil.copytree(zoo.package(SPEC, "q4f16_1", **OPTIONS), kpkg)
    kplan = json.loads((kpkg / "plan-f32.json").read_text())
    kplan["decode_splits"]["choices"] = [1, 2]
    (kpkg / "plan-f32.json").write_text(json.dumps(kplan))
    ref["kv_splits"] = {"package": str(kpkg), "prompt": ref["long_decode"]["prompt"], "steps": 3, "runs": {}}
    for n in (1, 2):
        k = Model.load(kpkg, profile="f32", progress=False, adapter=gpu[0], device=gpu[1], decode_variant=VARIANT,
                       prefill_variant="rule", kv_splits=n)
        k.prefill(ref["kv_splits"]["prompt"])
        ids = []
        for _ in range(3):
            ids.append(k.next_token())
            k.decode()
        ref["kv_splits"]["runs"][str(n)] = {"ids": ids, "next": k.next_token(), "logits": k.logits().tolist()}

    # The split sampler: greedy, and seeded draws through top-k, top-p and logprobs
    pkg = zoo.package(SPLIT_SPEC, "q4f16_1", context_window=64, prefill_chunk=16)
    plan = json.loads((pkg / "plan-f32.json").read_text())
    assert [d["kernel"].split("_")[1] for d in plan["decode_variants"][VARIANT][-3:]] == ["chunks", "mass", "draw"]
    m = Model.load(pkg, profile="f32", progress=False, adapter=gpu[0], device=gpu[1], decode_variant=VARIANT,
                   prefill_variant="rule")
    prompt = _ids(prompt_ids(SPLIT_SPEC, 6))
    sampled = dict(temperature=0.8, top_p=0.9, top_k=40, seed=77)
    ref["split"] = {"package": str(pkg), "prompt": prompt, "greedy": _ids(m.generate(prompt, 12))}
    m.reset()
    m.set_sampling(**sampled)
    ref["split"]["seeded"] = sampled | {"ids": _ids(m.generate(prompt, 12))}
    m.set_sampling()

    out = tmp_path_factory.mktemp("web-node") / "reference.json"
    out.write_text(json.dumps(ref))
    return out


def test_node_runtime(node, reference, tmp_path):
    """`node --test web/test/`: parity with the native runtime and the loading behaviour, on Dawn."""
    env = node_env(tmp_path)
    env["WEBLLM_TEST_REFERENCE"] = str(reference)
    files = sorted(str(p.relative_to(ROOT)) for p in (WEB / "test").glob("*.test.js"))
    r = subprocess.run([node, "--test", "--test-reporter=spec", *files], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "\N{INFORMATION SOURCE} skipped 0" in r.stdout and "\N{INFORMATION SOURCE} fail 0" in r.stdout, r.stdout[-3000:]
    print(r.stdout)


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
