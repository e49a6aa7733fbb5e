"""Decode attention's split count on this adapter: one package per `--decode-splits` value, each profiled
at several contexts with benchmarks/profile_decode.py (GPU time of the step's pass and of each dispatch).

    python benchmarks/decode_splits.py CHECKPOINT --work /tmp/splits --splits 0,4,8,16 --contexts 0,1024,4096

0 is the compiler's default for the model and profile (lower.decode_splits). The table gives, per
layer, the attention dispatch and the o matmul (which combines the splits) in µs, and the whole step's
GPU time; the lowest `attention + o` at long context is the split count to keep. A checkpoint with
fewer layers (benchmarks/random_checkpoint.py --layers 4) compiles faster and shows the same per-layer
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--work", type=Path, required=True, help="folder for the packages and JSON results")
    ap.add_argument("--splits", default="0,4,8,16")
    ap.add_argument("--contexts", default="0,1024,4096")
    ap.add_argument("--profile", default="f16")
    ap.add_argument("--quantization", default="q4f16_1")
    ap.add_argument("--steps", type=int, default=32)
    a = ap.parse_args()
    contexts = [int(c) for c in a.contexts.split(",")]
    env_py = [sys.executable]
    # this checkout's webllm first, then whatever the caller's path holds (e.g. wgpu installed to a folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    rows = []
    for n in (int(s) for s in a.splits.split(",")):
        pkg = a.work / f"pkg-splits{n}"
        if not (pkg / "manifest.json").exists():
            cmd = [*env_py, "-m", "webllm", "compile", a.checkpoint, "-o", str(pkg), "-q", a.quantization, "--quiet",
                   "--context-window", str(max(contexts) + 64), "--prefill-chunk", "512"]
            subprocess.run(cmd + (["--decode-splits", str(n)] if n else []), check=True, cwd=ROOT, env=env)
        layers = json.loads((pkg / "manifest.json").read_text())["config"]["num_hidden_layers"]
        for ctx in contexts:
            out = a.work / f"splits{n}-ctx{ctx}.json"
            subprocess.run([*env_py, str(ROOT / "benchmarks" / "profile_decode.py"), str(pkg), "--profile", a.profile,
                            "--context", str(ctx), "--steps", str(a.steps), "--json", str(out)], check=True, cwd=ROOT,
                           env=env)
            res = json.loads(out.read_text())
            per = {k: v["ms"] * 1e3 / layers for k, v in res["by_kind"].items()}
            attn = sum(v for k, v in per.items() if k.startswith("attention"))
            o = sum(v for k, v in per.items() if k.startswith("gemv") and k.split(" ")[-1] == "o")
            rows.append((n or "default", ctx, attn, o, res["pass_ms"], res["dispatches"]))
    print(f"{'splits':>8} {'context':>8} {'attention us':>13} {'o matmul us':>12} {'a + o':>8} {'step GPU ms':>12} dispatches")
    for n, ctx, attn, o, step, disp in rows:
        print(f"{n!s:>8} {ctx:8d} {attn:13.1f} {o:12.1f} {attn + o:8.1f} {step:12.3f} {disp}")


if __name__ == "__main__":
    main()
