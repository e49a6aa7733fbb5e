"""Compile one checkpoint with several one-token matmul variants and bench each (decode tok/s).

    python benchmarks/decode_variants.py CHECKPOINT [--variants 16,2 32,2 8,2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from webllm.compiler.compile import CompileOptions, compile_model

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--variants", nargs="+", default=["32"], help="threads per row of the one-token matmul")
ap.add_argument("--quantization", default="q4f16_1")
ap.add_argument("--bench-args", default="--prompt-tokens 512 --decode-tokens 128")
a = ap.parse_args()
tmp = Path(tempfile.mkdtemp())
for v in a.variants:
    lanes = int(v)
    out = tmp / f"pkg-{lanes}"
    compile_model(a.checkpoint, out, CompileOptions(quantization=a.quantization, gemv_lanes=(lanes,), progress=False))
    for profile in ("f16", "f32"):
        r = subprocess.run([sys.executable, "-m", "webllm", "bench", str(out), "--quiet", "--json", "--profile", profile,
                            *a.bench_args.split()], capture_output=True, text=True)
        line = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else r.stderr.strip()[-300:]
        res = json.loads(line) if r.returncode == 0 else line
        print(f"gemv lanes {lanes} {profile}: {res}", flush=True)
