"""What the Node tests share (test_web_node.py, test_web_node_variants.py): the tiny models and the
package options the JavaScript runtime is checked on, the environment Dawn runs in here (SwiftShader),
and the native runtime's reference that web/test/*.test.js replay (one per pytest worker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import WIDE_DECODE, Spec, prompt_ids  # noqa: E402

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


@pytest.fixture(scope="session")
def node() -> str:
    exe = shutil.which("node")
    assert exe, "node is missing: run scripts/install.sh (apt nodejs npm)"
    assert Path(SWIFTSHADER).exists(), f"{SWIFTSHADER} is missing: run scripts/install.sh (apt chromium)"
    assert (WEB / "node_modules" / "webgpu").is_dir(), "web/node_modules is missing: cd web && npm ci"
    return exe


def _ids(it) -> list[int]:
    return [int(t) for t in it]


@pytest.fixture(scope="session")
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

    # The wide decode variants ("...w": 512-thread workgroups), which SwiftShader's 256 invocations a
    # workgroup rule out (web/test/variants.test.js): the native list, and the ids of the first fallback.
    wpkg = zoo.package(WIDE_DECODE, "q4f16_1", context_window=64, prefill_chunk=32)
    w = Model.load(wpkg, profile="f32", progress=False, adapter=gpu[0], device=gpu[1], prefill_variant="rule",
                   decode_variant="q8gemv32sg")
    assert [n for n in w.decode_variants if n.endswith("w")] == ["q8gemv32sgw", "q8gemv32w"]
    wprompt = _ids(prompt_ids(WIDE_DECODE, 6))
    ref["wide"] = {"package": str(wpkg), "decode_variants": w.decode_variants, "prompt": wprompt,
                   "ids": _ids(w.generate(wprompt, 8))}

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


# the Node test files test_web_node_variants.py runs (every variant and the load-time timing: about half
# of web/test's time on SwiftShader), so that a parallel run gives them a worker of their own
VARIANT_FILES = ["tuning", "variants"]


def run_node_tests(node: str, reference: Path, tmp_path: Path, names: list[str]) -> None:
    """`node --test` on web/test/NAME.test.js for each name; every test passes, none is skipped."""
    env = node_env(tmp_path)
    env["WEBLLM_TEST_REFERENCE"] = str(reference)
    files = [str((WEB / "test" / f"{n}.test.js").relative_to(ROOT)) for n in names]
    r = subprocess.run([node, "--test", "--test-reporter=spec", *files], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "\N{INFORMATION SOURCE} skipped 0" in r.stdout and "\N{INFORMATION SOURCE} fail 0" in r.stdout, r.stdout[-3000:]
    print(r.stdout)
