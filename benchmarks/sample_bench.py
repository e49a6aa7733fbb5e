"""The sampler's dispatches alone, on one vocabulary: time per sampling step for the kernels a plan
would list (webllm.kernels.sample_dispatches) against the one-workgroup statement of the rule
(sample_single, what the plans ran before the split), for greedy and sampled settings.

    python benchmarks/sample_bench.py PROFILE [--vocab 128256] [--logits peaked|flat] [--reps 50]

PROFILE is f16 or f32 (the activation profile; the sampler's arithmetic is f32 either way). Logits:
`peaked` (default) is LLM-like, a few tokens far above a normal crowd; `flat` puts every token close
to the max, the split sampler's slow case (its per-chunk lists overflow and it scans chunks). Each
setting also checks that both samplers pick the same token. Timing: GPU timestamps around a compute
pass holding one step's dispatches (median of --reps) when the adapter has timestamp-query, else the
wall clock of --reps steps submitted back to back (one pass each) divided by --reps.
"""

from __future__ import annotations

import argparse
import struct
import time

import numpy as np

from webllm import kernels as K
from webllm.runtime.device import adapter_name, create_shader_module, request_device

SETTINGS = {  # label: uniform fields
    "greedy": dict(temperature=0.0),
    "T 0.7 top_p 0.9": dict(temperature=0.7, top_p=0.9),
    "top_k 40": dict(temperature=1.0, top_k=40),
    "T 0.7": dict(temperature=0.7),
    "T 0.7 top_p 0.9 logprobs 5": dict(temperature=0.7, top_p=0.9, sample_flags=K.SAMPLE_FLAGS["logprobs"],
                                       n_logprobs=5),
}


def make_logits(vocab: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "flat":
        return (rng.standard_normal(vocab) * 0.05).astype(np.float32)
    x = rng.standard_normal(vocab) * 2.0
    x[rng.choice(vocab, 30, replace=False)] += rng.uniform(4, 12, 30)
    return x.astype(np.float32)


class Stages:
    """One sampler's pipelines and bind groups over shared buffers."""

    def __init__(self, dev, bufs, dispatches):
        import wgpu

        btype = {K.UNIFORM: wgpu.BufferBindingType.uniform, K.READ: wgpu.BufferBindingType.read_only_storage,
                 K.WRITE: wgpu.BufferBindingType.storage}
        names = ["uniform", "logits", "token_ids", "logit_bias", "token_counts", "token_mask", "sample_out",
                 "sample_adjusted", "sample_chunks"]
        self.steps = []
        for kern, grid in dispatches:
            bgl = dev.create_bind_group_layout(entries=[
                {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": btype[t]}}
                for i, t in enumerate(kern.bindings)])
            pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                               compute={"module": create_shader_module(dev, kern.source),
                                                        "entry_point": "main"})
            bg = dev.create_bind_group(layout=bgl, entries=[
                {"binding": i, "resource": {"buffer": bufs[n], "offset": 0, "size": bufs[n].size}}
                for i, n in enumerate(names[:len(kern.bindings)])])
            self.steps.append((pipe, bg, grid))

    def record(self, cp) -> None:
        for pipe, bg, grid in self.steps:
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bg)
            cp.dispatch_workgroups(*grid)


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser()
    ap.add_argument("profile", choices=["f16", "f32"])
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--logits", choices=["peaked", "flat"], default="peaked")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--settings", default="", help="comma-separated label prefixes (default: all)")
    args = ap.parse_args()
    adapter, dev = request_device(want_features=["timestamp-query"])
    stamps = "timestamp-query" in dev.features
    prof = K.Profile(args.profile)
    if prof.name == "f16" and "shader-f16" not in dev.features:
        raise SystemExit("this adapter has no shader-f16: use the f32 profile")
    V = args.vocab
    print(f"{adapter_name(adapter)}; vocab {V}; {args.logits} logits; timing: "
          f"{'GPU timestamps' if stamps else 'wall clock'}", flush=True)

    BU = wgpu.BufferUsage
    table = K.uniform_table()
    sizes = {"uniform": table["size"], "logits": 4 * V, "token_ids": 16, **K.sampler_buffers(V),
             **K.sample_scratch_buffers(V)}
    bufs = {n: dev.create_buffer(size=max(16, -(-s // 16) * 16),
                                 usage=(BU.UNIFORM if n == "uniform" else BU.STORAGE) | BU.COPY_DST | BU.COPY_SRC)
            for n, s in sizes.items()}
    dev.queue.write_buffer(bufs["logits"], 0, make_logits(V, args.logits).tobytes())
    plan = Stages(dev, bufs, K.sample_dispatches(prof, vocab=V))
    single = Stages(dev, bufs, [(K.sample_single(prof, vocab=V), [1, 1, 1])])
    qs = dev.create_query_set(type=wgpu.QueryType.timestamp, count=2) if stamps else None
    resolved = dev.create_buffer(size=16, usage=BU.QUERY_RESOLVE | BU.COPY_SRC) if stamps else None

    def set_fields(fields: dict, seed: int) -> None:
        values = {f["name"]: f["default"] for f in table["fields"]} | {"emit": 1, "seed": seed} | fields
        data = bytearray(table["size"])
        for f in table["fields"]:
            struct.pack_into("<I" if f["type"] == "u32" else "<f", data, f["offset"],
                             int(values[f["name"]]) if f["type"] == "u32" else float(values[f["name"]]))
        dev.queue.write_buffer(bufs["uniform"], 0, data)

    def step(stages: Stages, timed: bool) -> None:
        enc = dev.create_command_encoder()
        cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 0,
                                                      "end_of_pass_write_index": 1} if timed else None)
        stages.record(cp)
        cp.end()
        if timed:
            enc.resolve_query_set(qs, 0, 2, resolved, 0)
        dev.queue.submit([enc.finish()])

    def token() -> int:
        return int(np.frombuffer(dev.queue.read_buffer(bufs["sample_out"]), np.uint32)[0])

    def time_us(stages: Stages, fields: dict) -> float:
        set_fields(fields, 1)
        step(stages, False)
        token()  # warm up, and wait
        if stamps:
            ts = []
            for _ in range(args.reps):
                step(stages, True)
                t0, t1 = np.frombuffer(dev.queue.read_buffer(resolved), np.uint64)
                ts.append((int(t1) - int(t0)) / 1e3)
            return float(np.median(ts))
        t = time.perf_counter()
        for _ in range(args.reps):
            step(stages, False)
        token()
        return (time.perf_counter() - t) / args.reps * 1e6

    settings = {k: v for k, v in SETTINGS.items()
                if not args.settings or any(k.startswith(p) for p in args.settings.split(","))}
    print(f"{'setting':30} {'plan':>10} {'single':>10}   dispatches: plan {len(plan.steps)}, single 1")
    for label, fields in settings.items():
        picks = []
        for stages in (plan, single):
            set_fields(fields, 7)
            step(stages, False)
            picks.append(token())
        same = "" if picks[0] == picks[1] else f"  DIFFERENT TOKENS {picks}"
        print(f"{label:30} {time_us(plan, fields):8.1f}us {time_us(single, fields):8.1f}us{same}", flush=True)


if __name__ == "__main__":
    main()
