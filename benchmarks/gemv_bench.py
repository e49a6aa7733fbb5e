"""Decode-matmul (4-bit GEMV) variants on this adapter: GB/s of weight traffic with cold weights,
against the streaming-read bandwidth measured in the same run, and a correctness check.

    python benchmarks/gemv_bench.py [--quick] [--json out.json] [--variants 32x4,8x4] [--profiles f16,f32]

Cold weights: each shape's weights are uploaded as enough copies to fill --cold-mib (default 256
MiB, 5x an H100's 50 MB L2), and successive dispatches rotate through the copies, so every dispatch
reads its weights from memory, as a decode step does (the whole model is far larger than L2).
Rotating through many more copies (1 GiB) made some shapes 3-4x slower than the same kernel is
inside a model (benchmarks/profile_decode.py), so treat these as a lower bound.

Two timings per variant:
- `kernel`: GPU timestamps around a compute pass holding one dispatch (when the adapter has
  timestamp-query), median over the copies: the kernel's own time;
- `stream`: wall clock of many dispatches in one pass, each writing its own output (no dependency,
  so the GPU may overlap them): throughput, including the per-dispatch cost.
A variant `LxR` is the one-token matmul with L = `lanes` (256 / L rows per workgroup) and R rows
per thread (wgsl/gemv.wgsl).
"""

from __future__ import annotations

import argparse
import json
import struct
import time

import numpy as np

from webllm import kernels as K
from webllm.evaluation.speed import stream_read_bandwidth
from webllm.quantization.formats import PackedWeight, _pack_vals, dequantize
from webllm.runtime.device import adapter_name, request_device

SHAPES = {  # label: (K, N, pair)
    "1b.qkv 2048x3072": (2048, 3072, False),
    "1b.o 2048x2048": (2048, 2048, False),
    "1b.gu 2048x2x8192": (2048, 8192, True),
    "1b.dn 8192x2048": (8192, 2048, False),
    "1b.head 2048x128256": (2048, 128256, False),
    "8b.qkv 4096x6144": (4096, 6144, False),
    "8b.o 4096x4096": (4096, 4096, False),
    "8b.gu 4096x2x14336": (4096, 14336, True),
    "8b.dn 14336x4096": (14336, 4096, False),
    "8b.head 4096x128256": (4096, 128256, False),
}
QUICK = {"small 256x1024": (256, 1024, False), "small pair 512x2x256": (512, 256, True)}


def random_q4s(rng, n: int, k: int) -> PackedWeight:
    """Random 4-bit codes and f16 scales (speed does not depend on the values)."""
    q = rng.integers(0, 2**32, size=n * k // 8, dtype=np.uint32)
    scales = rng.uniform(0.002, 0.02, size=n * k // 32).astype(np.float32)
    return PackedWeight("q4s", (n, k), {"qweight": q, "scales": _pack_vals(scales, "f16")}, "f16")


def variant_source(prof, w, n, pair, lanes, rows_per_thread=None, set_threads=None):
    """The one-token matmul for 256 / lanes rows per workgroup; R (rows per thread) and L (threads per
    row set) as the template chooses them unless given (edits the template's constants)."""
    kern = K.gemv(prof, w, n_rows=n, row0=0, x_type=prof.act, y_type="f32", lanes=lanes, pair=pair)
    src = kern.source
    for name, value in (("R", rows_per_thread), ("L", set_threads)):
        if value is not None:
            lines = [ln for ln in src.splitlines() if ln.startswith(f"const {name}: u32 = ")]
            if not lines:
                return None, kern.bindings  # a gemv.wgsl without that constant
            src = src.replace(lines[0], f"const {name}: u32 = {value}u;")
    return src, kern.bindings


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small shapes only (software adapters)")
    ap.add_argument("--variants", default="32,32x4x128,32x2,16,8,64,4",
                    help="comma-separated LANES[xR[xL]]: 256/LANES rows per workgroup, R rows per thread, L threads "
                         "per row set (default: the template's choice)")
    ap.add_argument("--profiles", default="f16,f32", help="activation types to test x with")
    ap.add_argument("--shapes", default="", help="comma-separated label prefixes (default: all)")
    ap.add_argument("--custom", default="", help="comma-separated extra shapes KxN or KxNxpair, measured instead")
    ap.add_argument("--upload", choices=["mapped", "write"], default="write",
                    help="weights uploaded mapped at creation or by queue.write_buffer (as the runtime does)")
    ap.add_argument("--cold-mib", type=int, default=256, help="weights rotated through per shape (MiB)")
    ap.add_argument("--reps", type=int, default=200, help="dispatches of the wall-clock timing")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args()
    adapter, dev = request_device(want_features=["timestamp-query"])
    stamps = "timestamp-query" in dev.features
    bw = stream_read_bandwidth(dev)["bytes_per_s"]
    print(f"{adapter_name(adapter)} / {adapter.info.get('description', '')}; streaming read {bw / 1e9:.0f} GB/s; "
          f"timestamps: {stamps}", flush=True)
    BU = wgpu.BufferUsage
    rng = np.random.default_rng(0)
    shapes = QUICK if args.quick else SHAPES
    if args.shapes:
        shapes = {k: v for k, v in shapes.items() if any(k.startswith(p) for p in args.shapes.split(","))}
    if args.custom:
        shapes = {}
        for c in args.custom.split(","):
            f = c.split("x")
            shapes[f"custom {c}"] = (int(f[0]), int(f[1]), len(f) > 2)
    variants = [tuple(int(v) for v in s.split("x")) for s in args.variants.split(",")]
    variants = [v + (None,) * (3 - len(v)) for v in variants]
    size = K.uniform_table()["size"]  # n_tokens 1, past 0; the sampling fields do not matter here
    uni = dev.create_buffer(size=size, usage=BU.UNIFORM | BU.COPY_DST)
    dev.queue.write_buffer(uni, 0, struct.pack("<I", 1) + bytes(size - 4))
    results = []
    for label, (k, n, pair) in shapes.items():
        rows = 2 * n if pair else n
        w = random_q4s(rng, rows, k)
        xv = rng.standard_normal(k, dtype=np.float32)
        check = np.r_[0:min(n, 64), max(0, n - 64):n]  # rows checked against numpy
        idx = np.r_[check, check + n] if pair else check
        if rows * k <= 2**27:
            part = dequantize(w)[idx]
        else:  # large: dequantize just the checked rows
            part = np.concatenate([dequantize(w.row_slice(int(i), int(i) + 1)) for i in idx])

        def reference(xq, part=part, check=check, pair=pair):
            ref = part[: len(check)] @ xq
            if pair:
                g, u = ref, part[len(check):] @ xq
                ref = g / (1 + np.exp(-g)) * u
            return ref
        nbytes = w.nbytes
        copies = max(1, -(-(args.cold_mib << 20) // nbytes))
        def upload(data: bytes):
            if args.upload == "mapped":
                return dev.create_buffer_with_data(data=data, usage=BU.STORAGE)
            b = dev.create_buffer(size=-(-len(data) // 4) * 4, usage=BU.STORAGE | BU.COPY_DST)
            dev.queue.write_buffer(b, 0, data)
            return b

        blobs = [np.ascontiguousarray(w.arrays[a]).tobytes() for a in K.WEIGHT_ARRAYS["q4s"]]
        wbufs = [[upload(b) for b in blobs] for _ in range(copies)]
        ybufs = [dev.create_buffer(size=n * 4, usage=BU.STORAGE | BU.COPY_SRC) for _ in range(copies)]
        for pname in args.profiles.split(","):
            if pname == "f16" and "shader-f16" not in dev.features:
                continue
            prof = K.Profile(pname)
            xq = xv.astype(np.float16 if pname == "f16" else np.float32)
            ref = reference(xq.astype(np.float32))
            xb = upload(xq.tobytes())
            for lanes, r, lt in variants:
                src, bindings = variant_source(prof, w, n, pair, lanes, r, lt)
                if src is None:
                    continue
                bgl = dev.create_bind_group_layout(entries=[
                    {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}}
                    for i, t in enumerate(bindings)])
                pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                                   compute={"module": dev.create_shader_module(code=src),
                                                            "entry_point": "main"})
                bgs = [dev.create_bind_group(layout=bgl, entries=[
                    {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}}
                    for i, b in enumerate([uni, xb, ybufs[c]] + wbufs[c])]) for c in range(copies)]
                gx = -(-n // (256 // lanes))

                def encode(reps, one_pass=True, qs=None, pipe=pipe, bgs=bgs, gx=gx, copies=copies):
                    enc = dev.create_command_encoder()
                    cp = enc.begin_compute_pass() if one_pass else None
                    for i in range(reps):
                        if not one_pass:
                            cp = enc.begin_compute_pass(timestamp_writes={
                                "query_set": qs, "beginning_of_pass_write_index": 2 * i,
                                "end_of_pass_write_index": 2 * i + 1})
                        cp.set_pipeline(pipe)
                        cp.set_bind_group(0, bgs[i % copies])
                        cp.dispatch_workgroups(gx, 1, 1)
                        if not one_pass:
                            cp.end()
                    if one_pass:
                        cp.end()
                    return enc

                dev.queue.submit([encode(copies).finish()])
                got = np.frombuffer(dev.queue.read_buffer(ybufs[0]), np.float32)[check]
                err = float(np.abs(got - ref).max() / np.abs(ref).max())
                cmd = encode(args.reps).finish()
                t = time.perf_counter()
                dev.queue.submit([cmd])
                dev.queue.read_buffer(ybufs[0], 0, 4)
                stream_s = (time.perf_counter() - t) / args.reps
                kernel_s = None
                if stamps:
                    m = min(copies * 2, 64)
                    qs = dev.create_query_set(type=wgpu.QueryType.timestamp, count=2 * m)
                    qb = dev.create_buffer(size=16 * m, usage=BU.QUERY_RESOLVE | BU.COPY_SRC)
                    enc = encode(m, one_pass=False, qs=qs)
                    enc.resolve_query_set(qs, 0, 2 * m, qb, 0)
                    dev.queue.submit([enc.finish()])
                    ts = np.frombuffer(dev.queue.read_buffer(qb), np.uint64).reshape(m, 2).astype(np.int64)
                    kernel_s = float(np.median(ts[:, 1] - ts[:, 0])) * 1e-9
                vname = "x".join(str(v) for v in (lanes, r, lt) if v is not None)
                row = {"shape": label, "profile": pname, "variant": vname, "weight_bytes": nbytes,
                       "copies": copies, "stream_us": stream_s * 1e6, "stream_gb_s": nbytes / stream_s / 1e9,
                       "err": err, "bandwidth_gb_s": bw / 1e9}
                if kernel_s:
                    row.update(kernel_us=kernel_s * 1e6, kernel_gb_s=nbytes / kernel_s / 1e9,
                               kernel_ratio=nbytes / kernel_s / bw)
                results.append(row)
                ks = (f"kernel {row['kernel_us']:7.1f} us {row['kernel_gb_s']:6.0f} GB/s "
                      f"({row['kernel_ratio']:.0%})") if kernel_s else ""
                print(f"{label:20s} {pname} {vname:9s}  {ks}  stream {row['stream_us']:7.1f} us "
                      f"{row['stream_gb_s']:6.0f} GB/s  err {err:.1e}", flush=True)
        for c in wbufs:
            for b in c:
                b.destroy()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"adapter": adapter_name(adapter), "driver": adapter.info.get("description", ""),
                       "stream_read_gb_s": bw / 1e9, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
