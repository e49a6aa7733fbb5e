#!/usr/bin/env python3
"""Write the conformance fixtures (tests/conformance/): a tiny checkpoint, its compiled package and
expected.json, the ids and logits every runtime (Python, JavaScript) must produce on that package.

The expected values come from the reference, not from a runtime: logits from transformers (torch,
CPU, fp32) on the dequantized weights the package stores; greedy ids as their argmax; seeded ids from
`sample_reference` below, a numpy twin of the sampling rule in docs/FORMAT.md. Prompts and seeds are
picked so that each id has a margin far above the tolerance of the profiles it is checked on (a
greedy top-2 gap, or a draw far from the edges of its token's slice), so a correct runtime can never
flip one by rounding.

Run from the repository root after a change to the compiler, kernels or sampling rule:
    .venv/bin/python scripts/make_conformance.py
tests/test_conformance.py fails while the committed fixture is stale.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from tiny_models import TOL_F16, TOL_F32, Spec, dequantized_copy, make_checkpoint, round_kv_cache_f16  # noqa: E402

from webllm.compiler.compile import CompileOptions, compile_model  # noqa: E402

FIXTURE = ROOT / "tests" / "conformance"
SPEC = Spec("conformance", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, seed=11)
MODE = "q4f16_1"  # both profiles: f16 (shader-f16) and f32 (SwiftShader, Dawn without f16)
# decode and prefill in float (--no-decode-int8, --no-prefill-int8): the cases' logits and ids come from
# transformers within the profiles' tight tolerances; the int8 paths are checked against transformers in
# test_reference / test_tuning and between the two runtimes in test_web_node (whose package keeps the
# defaults)
OPTIONS = dict(context_window=64, prefill_chunk=16, decode_int8=False, prefill_int8=False)
TOLERANCE = {"f32": TOL_F32, "f16": TOL_F16}
round_kv_cache_f16()  # transformers' K and V rounded to f16, as the package's cache holds them
GREEDY_MARGIN = 0.02  # top-1 minus top-2 logit, relative to max |logit| (f16 profile errors measured: <= 5e-3)
DRAW_MARGIN = 2e-5  # distance of the draw from its token's slice edges, relative to the kept mass (f32 sums: ~1e-6)


def compile_fixture(checkpoint: Path, out: Path) -> Path:
    """Compile the fixture package exactly as the committed one was (the staleness test calls this)."""
    compile_model(checkpoint, out, CompileOptions(quantization=MODE, progress=False, **OPTIONS))
    m = json.loads((out / "manifest.json").read_text())
    m["source"] = {"path": "checkpoint", "sha256": None}  # no machine-specific path in the fixture
    (out / "manifest.json").write_text(json.dumps(m, indent=1) + "\n")
    return out


# ---- the sampling rule (docs/FORMAT.md "Sampling"), in numpy -------------------------------------
def pcg(v: int) -> int:
    s = (v * 747796405 + 2891336453) & 0xFFFFFFFF
    w = (((s >> ((s >> 28) + 4)) ^ s) * 277803737) & 0xFFFFFFFF
    return ((w >> 22) ^ w) & 0xFFFFFFFF


def sample_reference(logits: np.ndarray, temperature: float, top_p: float, seed: int, counter: int) -> tuple[int, float]:
    """(token, margin): the token the rule picks, and how far the draw lies from the edges of that
    token's slice of the kept mass (relative; 1 for greedy)."""
    logits = np.asarray(logits, np.float64)
    if temperature <= 0:
        return int(np.argmax(logits)), 1.0
    p = np.exp((logits - logits.max()) / temperature)
    theta = 0.0
    if top_p < 1.0:
        need, lo, hi = top_p * p.sum(), 0.0, 1.0
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            if p[p >= mid].sum() >= need:
                lo = mid
            else:
                hi = mid
        theta = lo
        # theta ends just below the smallest kept ratio p_k; one runtime could keep p_k and another not
        # if the mass with it, or without it, lies too close to the target
        p_k, total = p[p >= theta].min(), p.sum()
        with_k = p[p >= theta].sum()
        if (with_k - need) / total < 3e-4 or (need - (with_k - p_k)) / total < 3e-4:
            return -1, 0.0
    kept = np.where(p >= theta, p, 0.0)
    u = (pcg(seed ^ pcg(counter)) >> 8) / 16777216.0 * kept.sum()
    edges = np.cumsum(kept)
    tok = int(np.searchsorted(edges, u, side="right"))
    lo_edge = edges[tok - 1] if tok > 0 else 0.0
    margin = min(u - lo_edge, edges[tok] - u) / kept.sum()
    return tok, margin


class Reference:
    def __init__(self, model: torch.nn.Module):
        self.model = model

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits after the last of `ids`, float64 [vocab]."""
        with torch.no_grad():
            return self.model(torch.tensor([list(ids)])).logits[0, -1].double().numpy()

    def generate(self, prompt: list[int], n: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int = 0) -> tuple[list[int], float]:
        """n ids after `prompt` by the sampling rule, and the smallest margin met on the way. The counter
        numbers the draws: 0 for the token after the prompt (whatever its chunking), then 1, 2, ..."""
        seq, out, worst = list(prompt), [], 1.0
        counter = 0
        for _ in range(n):
            lg = self.logits(seq)
            if temperature <= 0:
                top = np.sort(lg)[-2:]
                margin = (top[1] - top[0]) / np.abs(lg).max() / GREEDY_MARGIN
                tok = int(np.argmax(lg))
            else:
                tok, margin = sample_reference(lg, temperature, top_p, seed, counter)
                margin /= DRAW_MARGIN
                if tok < 0:
                    return out, 0.0
            worst = min(worst, margin)
            out.append(tok)
            seq.append(tok)
            counter += 1
        return out, worst


def robust(make, tries: int = 200):
    """The first of make(k), k = 0, 1, ..., whose margin is >= 1 (see the module docstring)."""
    for k in range(tries):
        value, margin = make(k)
        if margin >= 1:
            return value
    raise SystemExit(f"no robust case in {tries} tries ({make})")


def build_cases(ref: Reference) -> list[dict]:
    V, cap = SPEC.vocab_size, OPTIONS["context_window"]

    def prompt(k: int, n: int) -> list[int]:
        return [int(x) for x in np.random.RandomState(100 + k).randint(0, V, size=n)]

    cases = []
    # 1. greedy: one-chunk prefill, its logits, then 12 greedy ids
    def make_greedy(k):
        p = prompt(k, 11)
        ids, margin = ref.generate(p, 12)
        return (p, ids), margin
    p, ids = robust(make_greedy)
    cases.append({"name": "greedy", "ops": [
        {"op": "reset"}, {"op": "sampling", "temperature": 0.0},
        {"op": "prefill", "ids": p}, {"op": "logits", "expect": ref.logits(p).tolist()},
        {"op": "next_token", "expect": ids[0]},
        {"op": "reset"}, {"op": "generate", "prompt": p, "max_tokens": 12, "expect": ids}, {"op": "past", "expect": 11 + 11},
    ]})
    # 2. chunked prefill: 45 tokens = two full chunks of 16 and one of 13, then decode steps
    def make_chunked(k):
        p = prompt(50 + k, 45)
        ids, margin = ref.generate(p, 4)
        return (p, ids), margin
    p, ids = robust(make_chunked)
    cases.append({"name": "chunked_prefill", "ops": [
        {"op": "reset"}, {"op": "sampling", "temperature": 0.0},
        {"op": "prefill", "ids": p}, {"op": "logits", "expect": ref.logits(p).tolist()},
        {"op": "decode", "steps": 3}, {"op": "logits", "expect": ref.logits(p + ids[:3]).tolist()},
        {"op": "next_token", "expect": ids[3]}, {"op": "past", "expect": 48},
    ]})
    # 3. seeded sampling (f32 profile: f16 rounding moves probabilities by more than a draw's margin)
    for name, temperature, top_p in (("sampled_t1", 1.0, 1.0), ("sampled_nucleus", 0.8, 0.9)):
        def make(k, temperature=temperature, top_p=top_p):
            p, seed = prompt(200 + k, 20), 1000 + 17 * k
            ids, margin = ref.generate(p, 16, temperature, top_p, seed)
            return (p, seed, ids), margin
        p, seed, ids = robust(make)
        cases.append({"name": name, "profiles": ["f32"], "ops": [
            {"op": "reset"}, {"op": "sampling", "temperature": temperature, "top_p": top_p, "seed": seed},
            {"op": "generate", "prompt": p, "max_tokens": 16, "expect": ids},
            {"op": "sampling", "temperature": temperature, "top_p": top_p, "seed": seed}, {"op": "reset"},
            {"op": "generate", "prompt": p, "max_tokens": 16, "expect": ids},  # same seed, same ids
        ]})
    # 4. a KV rewind: prefill a, keep its first 8 tokens, prefill b: as if a[:8] + b had been prefilled
    def make_rewind(k):
        a, b = prompt(300 + k, 20), prompt(400 + k, 10)
        return (a, b), ref.generate(a[:8] + b, 1)[1]
    a, b = robust(make_rewind)
    cases.append({"name": "rewind", "ops": [
        {"op": "reset"}, {"op": "sampling", "temperature": 0.0},
        {"op": "prefill", "ids": a}, {"op": "truncate", "past": 8}, {"op": "prefill", "ids": b},
        {"op": "logits", "expect": ref.logits(a[:8] + b).tolist()},
        {"op": "next_token", "expect": int(np.argmax(ref.logits(a[:8] + b)))}, {"op": "past", "expect": 18},
    ]})
    # 5. the full context window: a prompt of cap - 8 tokens leaves room for 8 fed-back ids, so
    #    generate yields 9 (the last is sampled from position cap - 1); one more step must fail
    def make_full(k):
        p = prompt(500 + k, cap - 8)
        ids, margin = ref.generate(p, 9)
        return (p, ids), margin
    p, ids = robust(make_full)
    cases.append({"name": "full_context", "ops": [
        {"op": "reset"}, {"op": "sampling", "temperature": 0.0},
        {"op": "generate", "prompt": p, "max_tokens": 20, "expect": ids}, {"op": "past", "expect": cap},
        {"op": "logits", "expect": ref.logits(p + ids[:-1]).tolist()},
        {"op": "expect_error", "do": {"op": "decode", "steps": 1}},
        {"op": "truncate", "past": cap - 1}, {"op": "expect_error", "do": {"op": "prefill", "ids": [1, 2]}},
    ]})
    return cases


def main() -> int:
    tmp = FIXTURE.parent / ".conformance.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model = make_checkpoint(SPEC, tmp / "checkpoint")
    for f in (tmp / "checkpoint").iterdir():
        if f.name not in ("config.json", "model.safetensors", "tokenizer.json"):
            f.unlink()
    compile_fixture(tmp / "checkpoint", tmp / "package")
    ref = Reference(dequantized_copy(model, MODE))
    expected = {
        "about": "webllm conformance fixture: see docs/FORMAT.md and webllm/runtime/conformance.py; "
                 "written by scripts/make_conformance.py",
        "package": "package",
        "tolerance": TOLERANCE,
        "cases": build_cases(ref),
    }
    (tmp / "expected.json").write_text(json.dumps(expected, indent=None, separators=(",", ":")) + "\n")
    shutil.rmtree(FIXTURE, ignore_errors=True)
    tmp.rename(FIXTURE)
    print(f"wrote {FIXTURE}: {len(expected['cases'])} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
