"""Decode and prefill speed of one package through the JavaScript runtime on Dawn (Node, npm `webgpu`)
beside the native runtime (wgpu-py), in the same run on the same adapter; and their greedy ids.

    python benchmarks/dawn_vs_native.py [--shape llama-3.2-1b] [--node node] [--json results.json]

Writes a random checkpoint of the shape (benchmarks/random_checkpoint.py), compiles it (q4f16_1),
then runs `webllm bench` (native, each profile the adapter has) and `node web/src/node/cli.js` (Dawn;
f32 when Dawn exposes no shader-f16), both measuring as `webllm bench` does: best of 3; prefill of
128 tokens; decode of 128 steps GPU-only, and streaming with every id read back. (`webllm bench
--dawn` gives every figure of both hosts in one table; this script adds greedy parity and conformance.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def run_json(cmd: list[str]) -> dict:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip()[-800:], "cmd": " ".join(cmd)}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama-3.2-1b")
    ap.add_argument("--node", default="node")
    ap.add_argument("--quantization", default="q4f16_1")
    ap.add_argument("--bench-args", default="--prompt-tokens 128 --decode-tokens 128 --repeat 3")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    from random_checkpoint import write

    from webllm.compiler.compile import CompileOptions, compile_model

    tmp = Path(tempfile.mkdtemp(prefix="dawn-vs-native-"))
    t = time.time()
    write(a.shape, tmp / "ckpt")
    compile_model(tmp / "ckpt", tmp / "pkg", CompileOptions(quantization=a.quantization, progress=False))
    print(f"{a.shape} {a.quantization}: checkpoint + compile {time.time() - t:.0f} s", flush=True)
    pkg = str(tmp / "pkg")
    bench = a.bench_args.split()
    results: dict = {"shape": a.shape, "quantization": a.quantization}

    js = run_json([a.node, "web/src/node/cli.js", pkg, "--json", "--prompt-ids", "1,2,3,4,5,6,7,8", "--max-tokens", "32",
                   *bench])
    results["js_dawn"] = js
    print("js (Dawn):", json.dumps(js), flush=True)
    for profile in ("f32", "f16"):
        res = run_json([sys.executable, "-m", "webllm", "bench", pkg, "--quiet", "--json", "--profile", profile, *bench])
        results[f"native_{profile}"] = res
        print(f"native {profile}:", json.dumps(res), flush=True)

    # Greedy parity on the GPU: the native runtime with Dawn's profile and decode variant.
    if "error" not in js:
        from webllm.runtime import Model

        m = Model.load(pkg, profile=js["profile"], decode_variant=js["decode_variant"], progress=False)
        ids = [int(x) for x in m.generate([1, 2, 3, 4, 5, 6, 7, 8], 32)]
        results["greedy_ids_equal"] = ids == js["generated"]
        print(f"greedy ids equal ({js['profile']}, {js['decode_variant']}): {results['greedy_ids_equal']}", flush=True)

    fixture = ROOT / "tests" / "conformance"
    if (fixture / "expected.json").exists():
        for name, cmd in (("native", [sys.executable, "-m", "webllm.runtime.conformance", str(fixture), "--profile", "f32"]),
                          ("js", [a.node, "web/src/node/conformance.js", str(fixture), "--profile", "f32"])):
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            results[f"conformance_{name}"] = (r.stdout + r.stderr).strip().splitlines()[-1:]
            print(f"conformance {name} (f32):\n{(r.stdout + r.stderr).strip()}", flush=True)

    print("\n| runtime | adapter | profile | variant | prefill tok/s | decode tok/s (GPU) | decode tok/s (streaming) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key in ("js_dawn", "native_f32", "native_f16"):
        r = results[key]
        if "error" in r:
            print(f"| {key} | error: {r['error'][-120:]} |")
            continue
        if "prefill" in r:  # webllm bench's fields (lists per prompt length and context)
            pre, dec = r["prefill"][0]["tok_s"], r["decode"][0]
            gpu, streaming = dec["tok_s"], dec["streaming_tok_s"]
        else:  # cli.js's
            pre, gpu, streaming = r["prefill_tok_s"], r["decode_tok_s"], r["generate_tok_s_with_readback"]
        print(f"| {key} | {r['adapter']} | {r['profile']} | {r['decode_variant']} | {pre:.0f} | {gpu:.1f} | "
              f"{streaming:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
