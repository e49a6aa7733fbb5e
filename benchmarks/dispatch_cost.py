"""What a dispatch costs in a dependent chain by its grid alone, on this adapter: trivial workgroups
(thread 0 of each writes one word of a shared output, so the runtime puts a barrier between the
dispatches as between a decode step's) of T threads, G of them, optionally each declaring S bytes of
workgroup memory that it reads one word of (WebGPU zero-initializes it).

    python benchmarks/dispatch_cost.py [--threads 64,256,1024] [--groups 1,132,768,1792]
        [--wg-bytes 0,8192,16384] [--chain 64] [--seconds 0.4] [--clock stamps|wall] [--dawn]
        [--json out.json]

µs a dispatch: GPU timestamps around a pass of --chain dispatches (the wall clock without
timestamp-query), the best of rounds repeated for --seconds after two that wake the GPU up
(gemv_bench.py's Chain). `--clock wall`: the wall clock, differentially (the best pass of 2n
dispatches less the best pass of n, over n: what the submit and the wait cost cancels out).
`--dawn`: the same on Dawn in Node (web/src/node/dispatch_cost.js, which times with the wall clock
that way, Dawn quantizing its timestamps), after the native rows; with it the native side takes the
wall clock too, so that both are measured alike. Node and the npm package webgpu are found as
`webllm bench --dawn` finds them (webllm/evaluation/hosts.py). docs/PERFORMANCE.md has the H100's
figures: they say how much of a small matmul's time in the chain its grid costs before it reads a byte.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemv_bench import Chain  # noqa: E402

from webllm.runtime.device import adapter_name, create_shader_module, request_device  # noqa: E402

NODE_SCRIPT = Path(__file__).resolve().parent.parent / "web" / "src" / "node" / "dispatch_cost.js"


def source(threads: int, wg_bytes: int) -> str:
    decl = f"var<workgroup> wg: array<vec4<u32>, {wg_bytes // 16}>;\n" if wg_bytes else ""
    value = "wg[w.x % 4u].x" if wg_bytes else "l"
    return ("@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n" + decl +
            f"@compute @workgroup_size({threads})\n"
            "fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(local_invocation_index) l: u32) {\n"
            f"    if (l == 0u) {{ o[w.x] = {value}; }}\n}}\n")


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def dawn_rows(a) -> dict:
    """web/src/node/dispatch_cost.js's JSON result for the same configurations."""
    from webllm.evaluation.hosts import find_node, find_node_modules, node_env

    cmd = [find_node(), str(NODE_SCRIPT), "--json", "--threads", ",".join(map(str, a.threads)),
           "--groups", ",".join(map(str, a.groups)), "--wg-bytes", ",".join(map(str, a.wg_bytes)),
           "--chain", str(a.chain), "--seconds", str(a.seconds)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=node_env(find_node_modules()))
    if r.returncode != 0:
        raise SystemExit(f"dispatch_cost.py: {NODE_SCRIPT.name} exited with status {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=ints, default=ints("64,128,256,512,1024"), help="threads a workgroup")
    ap.add_argument("--groups", type=ints, default=ints("1,132,264,528,768,1056,1792,3072"), help="workgroups a dispatch")
    ap.add_argument("--wg-bytes", type=ints, default=ints("0"), help="bytes of workgroup memory each workgroup declares")
    ap.add_argument("--chain", type=int, default=64, help="dispatches a pass")
    ap.add_argument("--seconds", type=float, default=0.4, help="rounds of each configuration for this long")
    ap.add_argument("--clock", choices=("stamps", "wall"), default="stamps",
                    help="GPU timestamps (the wall clock where the adapter has none), or the wall clock, differentially")
    ap.add_argument("--dawn", action="store_true", help="also on Dawn in Node (wall clock on both hosts)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if a.dawn:
        a.clock = "wall"
    import wgpu

    adapter, dev = request_device()
    limit = dev.limits["max-compute-invocations-per-workgroup"]
    print(f"native, {adapter_name(adapter)}: µs a dispatch in a chain of {a.chain} ({a.clock})", flush=True)
    chain = Chain(dev, a.chain, a.seconds, a.clock)
    out = dev.create_buffer(size=4 * max(a.groups), usage=wgpu.BufferUsage.STORAGE)
    rows = []
    for wg_bytes in a.wg_bytes:
        for threads in a.threads:
            if threads > limit or wg_bytes > dev.limits["max-compute-workgroup-storage-size"]:
                continue
            pipe = dev.create_compute_pipeline(layout="auto", compute={
                "module": create_shader_module(dev, source(threads, wg_bytes)), "entry_point": "main"})
            bg = dev.create_bind_group(layout=pipe.get_bind_group_layout(0),
                                       entries=[{"binding": 0, "resource": {"buffer": out}}])
            line = []
            for groups in a.groups:
                us = chain.per_dispatch(pipe, [bg], groups) * 1e6
                rows.append({"threads": threads, "groups": groups, "wg_bytes": wg_bytes, "us": us})
                line.append(f"{groups}: {us:.2f}")
            print(f"{threads:5d} threads, {wg_bytes // 1024:3d} KiB   " + "  ".join(line), flush=True)
    result = {"adapter": adapter_name(adapter), "chain": a.chain, "clock": a.clock, "results": rows}
    if a.dawn:
        dawn = dawn_rows(a)
        print(f"dawn, {dawn['adapter']}: µs a dispatch in a chain of {a.chain} (wall)", flush=True)
        for wg_bytes in a.wg_bytes:
            for threads in a.threads:
                line = [f"{x['groups']}: {x['us']:.2f}" for x in dawn["results"]
                        if x["threads"] == threads and x["wg_bytes"] == wg_bytes]
                if line:
                    print(f"{threads:5d} threads, {wg_bytes // 1024:3d} KiB   " + "  ".join(line), flush=True)
        result["dawn"] = dawn
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
