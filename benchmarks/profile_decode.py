"""Where a decode (or prefill) step's time goes, on this adapter: GPU time of each dispatch of the plan.

    python benchmarks/profile_decode.py PACKAGE [--profile f16] [--context 0] [--json out.json]
    python benchmarks/profile_decode.py PACKAGE --prefill 512     # one prefill step of 512 tokens
    python benchmarks/profile_decode.py PACKAGE --decode-variant gemv32sg   # a given variant (default: the tuned one)

Three figures per step:
- `wall`: decode steps back to back as `webllm bench` runs them (one compute pass each);
- `pass`: GPU timestamps around that one pass (the GPU's own time for the step);
- `kernels`: the sum of every dispatch's GPU time, each dispatch recorded in a pass of its own with
  timestamps (needs timestamp-query). A pass of its own costs a dispatch more than its place in the
  step's chain (on an H100 ~5 us, where a dependent dispatch in a chain costs ~2 us), so this sum
  exceeds `pass`.
Per-dispatch times are summed by what the dispatch does (kernel kind + the matrix it multiplies), and
for each such kind also `in chain`: the step's pass time less the pass time with that kind's
dispatches left out (their results are then stale, which changes no kernel's work), i.e. what those
dispatches cost where the step runs them; and `alone`: the pass time of that kind's dispatches with
every other left out, a chain of the model's own kernels (the 8B's 32 gate_up, say) back to back.
`alone` against `in chain` tells what a kind's neighbours in the step cost it; `alone` against
benchmarks/gemv_bench.py's kernel (the same shape without the model's epilogues) what its epilogues do.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict

import numpy as np

from webllm.evaluation.speed import stream_read_bandwidth
from webllm.runtime import Model
from webllm.runtime.device import adapter_name, request_device
from webllm.runtime.model import workgroups


def label(d: dict, plan: dict) -> str:
    kind = d["kernel"].rsplit("_", 1)[0]
    names = d["bindings"] if "bindings" in d else plan["bind_groups"][d["bind_group"]]["buffers"]
    mats = sorted({re.sub(r"^layers\.\d+\.", "", b).rsplit(".", 1)[0] for b in names
                   if b.endswith((".qweight", ".weight")) and not b.endswith("norm")})
    return kind + (f" {','.join(mats)}" if mats else "")


def weight_bytes(d: dict, model) -> int:
    """Bytes of the package's tensors a matmul dispatch binds (its weights, scales, bias and norm weights,
    as speed.decode_bytes counts them: not the rope table, of which qkv reads one row); 0 for other
    kernels (the embedding reads one row of its table)."""
    if not d["kernel"].startswith(("gemv", "matmul")):
        return 0
    names = d["bindings"] if "bindings" in d else model.plan["bind_groups"][d["bind_group"]]["buffers"]
    tensors = model.manifest["tensors"]
    return sum(int(tensors[n]["nbytes"]) for n in names if n in tensors and not n.startswith("rope_table"))


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser()
    ap.add_argument("package")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--context", type=int, default=0)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=0, help="profile a prefill step of this many tokens instead")
    ap.add_argument("--json", default=None)
    ap.add_argument("--decode-variant", default=None, help="profile this decode variant (default: the tuned one)")
    ap.add_argument("--prefill-variant", default=None, help="profile this prefill variant (default: the tuned one)")
    ap.add_argument("--stream-read-mib", type=int, default=None,
                    help="buffer of the streaming-read bandwidth the GB/s are set against (default: 1 GiB)")
    ap.add_argument("--kv-splits", type=int, default=None,
                    help="decode attention's split count, one of the plan's choices (default: the tuned one)")
    a = ap.parse_args()
    adapter, device = request_device(want_features=["timestamp-query"])
    model = Model.load(a.package, profile=a.profile, progress=False, adapter=adapter, device=device,
                       decode_variant=a.decode_variant, prefill_variant=a.prefill_variant, kv_splits=a.kv_splits)
    phase = "prefill" if a.prefill else "decode"
    n_tok = max(1, min(a.prefill, model.chunk))
    if a.prefill:
        plan_list = model.plan["prefill_variants"][model.prefill_variant]
    else:
        plan_list = model.plan["decode_variants"][model.decode_variant]
    print(f"variants: prefill {model.prefill_variant}, decode {model.decode_variant}; kv splits {model.kv_splits}",
          flush=True)
    dispatches = model._dispatch[phase]
    assert len(plan_list) == len(dispatches)
    vocab = model.config["vocab_size"]
    model.reset()
    model.prefill(np.random.default_rng(0).integers(0, vocab, size=max(1, a.context)))
    ctx = model.past

    def step_commands(per_dispatch: bool, qs, skip: frozenset = frozenset()) -> object:
        enc = device.create_command_encoder()
        kv_end = ctx + n_tok
        cp = None
        if not per_dispatch:
            cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 0,
                                                          "end_of_pass_write_index": 1})
        for i, d in enumerate(dispatches):
            if i in skip:
                continue
            if per_dispatch:
                cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 2 * i,
                                                              "end_of_pass_write_index": 2 * i + 1})
            cp.set_pipeline(d[0])
            cp.set_bind_group(0, d[1])
            cp.dispatch_workgroups(*workgroups(d, n_tok, kv_end))
            if per_dispatch:
                cp.end()
        if not per_dispatch:
            cp.end()
        return enc

    def timed(per_dispatch: bool, reps: int = 8, skip: frozenset = frozenset()) -> np.ndarray:
        n = len(dispatches) if per_dispatch else 1
        qs = device.create_query_set(type=wgpu.QueryType.timestamp, count=2 * n)
        qb = device.create_buffer(size=16 * n, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
        best = None
        for _ in range(reps):
            enc = step_commands(per_dispatch, qs, skip)
            enc.resolve_query_set(qs, 0, 2 * n, qb, 0)
            model.truncate(ctx)
            model._submit(enc.finish(), n_tok)
            ts = np.frombuffer(device.queue.read_buffer(qb), np.uint64).reshape(n, 2).astype(np.int64)
            dt = (ts[:, 1] - ts[:, 0]) * 1e-9
            best = dt if best is None else np.minimum(best, dt)
        return best

    model.truncate(ctx)
    model.next_token()
    t = time.perf_counter()
    for _ in range(a.steps):
        model.truncate(ctx)
        if a.prefill:
            model._step("prefill", n_tok)
        else:
            model.decode()
    model.next_token()
    wall = (time.perf_counter() - t) / a.steps
    per = timed(True)
    by = defaultdict(lambda: [0, 0.0, 0])  # kind -> dispatches, seconds alone, weight bytes
    where = defaultdict(list)  # kind -> indices of its dispatches
    for i, (d, s) in enumerate(zip(plan_list, per, strict=True)):
        by[label(d, model.plan)][0] += 1
        by[label(d, model.plan)][1] += float(s)
        by[label(d, model.plan)][2] += weight_bytes(d, model)
        where[label(d, model.plan)].append(i)
    one_pass = float(timed(False)[0])  # the step's pass, next to the passes without each kind
    chain = {k: one_pass - float(timed(False, skip=frozenset(idx))[0]) for k, idx in where.items()}
    everything = frozenset(range(len(dispatches)))
    alone = {k: float(timed(False, skip=everything - frozenset(idx))[0]) for k, idx in where.items()}
    bw = stream_read_bandwidth(device, a.stream_read_mib << 20 if a.stream_read_mib else None)["bytes_per_s"]
    res = {"adapter": adapter_name(adapter), "profile": model.profile, "context": ctx, "phase": phase, "tokens": n_tok,
           "dispatches": len(dispatches), "stream_read_gb_s": bw / 1e9,
           "wall_ms": wall * 1e3, "pass_ms": one_pass * 1e3, "kernels_ms": float(per.sum()) * 1e3,
           "by_kind": {k: {"count": c, "ms": s * 1e3, "in_chain_ms": chain[k] * 1e3, "alone_chain_ms": alone[k] * 1e3,
                           "weight_bytes": nb}
                       for k, (c, s, nb) in sorted(by.items(), key=lambda kv: -kv[1][1])}}
    print(f"{res['adapter']} {res['profile']} {phase} of {n_tok} after {ctx}: {len(dispatches)} dispatches; "
          f"wall {res['wall_ms']:.2f} ms/step, "
          f"one pass (GPU) {res['pass_ms']:.2f} ms, sum of kernels {res['kernels_ms']:.2f} ms")
    print(f"  streaming read {bw / 1e9:,.1f} GB/s; a matmul's GB/s are its weights' bytes over its time in the chain")
    for k, v in res["by_kind"].items():
        rate = ""
        if v["weight_bytes"] and v["in_chain_ms"] > 0:
            gbs = v["weight_bytes"] / (v["in_chain_ms"] * 1e-3) / 1e9
            rate = f"; {v['weight_bytes'] / v['count'] / 1e6:.2f} MB each, {gbs:,.1f} GB/s = {gbs * 1e9 / bw:.0%}"
        print(f"  {k:40s} x{v['count']:4d}  {v['ms']:7.3f} ms  ({v['ms'] / v['count'] * 1e3:6.1f} us each; "
              f"in the chain {v['in_chain_ms'] / v['count'] * 1e3:6.1f}, alone {v['alone_chain_ms'] / v['count'] * 1e3:6.1f}"
              f"{rate})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
