"""Conformance runner: execute the cases of a fixture's expected.json on a loaded Model and compare.

A fixture folder (tests/conformance/) holds a tiny package and `expected.json`, whose cases are lists
of operations with the ids and logits a runtime must produce (docs/FORMAT.md, "Conformance
fixtures"). The JavaScript runtime has a twin of this file (web/src/runtime/conformance.js) that
executes the same operations with the same meaning:

| op | meaning |
| --- | --- |
| `reset` | empty the KV cache |
| `sampling` | `set_sampling(temperature, top_p, seed)` (the step counter restarts at 0) |
| `prefill` | append `ids` (in chunks of the package's prefill_chunk) |
| `decode` | `steps` decode steps, each on the token the GPU sampled last |
| `truncate` | keep the first `past` tokens of the cache |
| `generate` | prefill `prompt`, then generate up to `max_tokens` ids (stopping at `stop`); they must equal `expect` |
| `next_token` | the token the last step sampled must be `expect` |
| `logits` | the last step's logits, within `tolerance[profile]` of `expect` (max abs error / max abs expect) |
| `past` | the tokens in the cache must be `expect` |
| `expect_error` | the nested op `do` must fail with a context-window error |
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from webllm.errors import WebLLMError


@dataclass
class CaseResult:
    name: str
    ok: bool
    detail: str  # the failed operation and what differed, or a summary ("4 ops; max logits error 3e-06")


def load_expected(fixture: str | Path) -> dict:
    return json.loads((Path(fixture) / "expected.json").read_text(encoding="utf-8"))


def _run_op(model, op: dict, tol: float, errs: list[float]) -> str | None:
    """Run one operation; return None if it matched, else what differed."""
    kind = op["op"]
    if kind == "reset":
        model.reset()
    elif kind == "sampling":
        model.set_sampling(op.get("temperature", 0.0), op.get("top_p", 1.0), op.get("seed", 0))
    elif kind == "prefill":
        model.prefill(op["ids"])
    elif kind == "decode":
        for _ in range(op["steps"]):
            model.decode()
    elif kind == "truncate":
        model.truncate(op["past"])
    elif kind == "generate":
        got = list(model.generate(op["prompt"], op["max_tokens"], op.get("stop", ())))
        if got != op["expect"]:
            return f"generate gave {got}, expected {op['expect']}"
    elif kind == "next_token":
        got = model.next_token()
        if got != op["expect"]:
            return f"next token {got}, expected {op['expect']}"
    elif kind == "logits":
        ref = np.asarray(op["expect"], np.float64)
        err = float(np.abs(model.logits().astype(np.float64) - ref).max() / np.abs(ref).max())
        errs.append(err)
        if not err <= tol:
            return f"logits error {err:.3g} > tolerance {tol:.3g}"
    elif kind == "past":
        if model.past != op["expect"]:
            return f"past {model.past}, expected {op['expect']}"
    elif kind == "expect_error":
        try:
            _run_op(model, op["do"], tol, errs)
        except WebLLMError as e:
            if "context window" not in str(e):
                return f"{op['do']['op']} failed with an unexpected error: {e}"
            return None
        return f"{op['do']['op']} should have failed (context window full)"
    else:
        return f"unknown op {kind!r}"
    return None


def run_case(model, case: dict, tolerance: dict) -> CaseResult:
    tol = float(tolerance[model.profile])
    errs: list[float] = []
    for i, op in enumerate(case["ops"]):
        problem = _run_op(model, op, tol, errs)
        if problem:
            return CaseResult(case["name"], False, f"op {i} ({op['op']}): {problem}")
    worst = f"; max logits error {max(errs):.2g}" if errs else ""
    return CaseResult(case["name"], True, f"{len(case['ops'])} ops{worst}")


def run_conformance(model, fixture: str | Path) -> list[CaseResult]:
    """Run every case of the fixture that applies to the model's profile."""
    expected = load_expected(fixture)
    out = []
    for case in expected["cases"]:
        if model.profile in case.get("profiles", [model.profile]):
            out.append(run_case(model, case, expected["tolerance"]))
    model.reset()
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m webllm.runtime.conformance FIXTURE [--profile f16|f32]: run the fixture, one line per case."""
    import argparse

    from webllm.runtime import Model

    p = argparse.ArgumentParser(prog="python -m webllm.runtime.conformance", description=main.__doc__)
    p.add_argument("fixture")
    p.add_argument("--profile", choices=["f16", "f32"], default=None)
    args = p.parse_args(argv)
    expected = load_expected(args.fixture)
    model = Model.load(Path(args.fixture) / expected["package"], profile=args.profile, progress=False)
    results = run_conformance(model, args.fixture)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
