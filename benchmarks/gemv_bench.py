"""Decode-matmul variants on this adapter: GB/s of weight traffic per kernel, and a correctness check.

    python benchmarks/gemv_bench.py [--reps 200] [--quick]

Each variant is dispatched `reps` times in one compute pass (the dispatches are independent and
idempotent), timed by a readback after the pass; bytes = the weight arrays' size.
"""

from __future__ import annotations

import argparse
import struct
import time

import numpy as np

from webllm import kernels as K
from webllm.quantization.formats import dequantize, quantize_q4s
from webllm.runtime.device import adapter_name, request_device

SHAPES = {  # (K, N, pair)
    "1b.o   2048x2048": (2048, 2048, False),
    "1b.gu  2048x2x8192": (2048, 8192, True),
    "1b.dn  8192x2048": (8192, 2048, False),
    "1b.head 2048x128256": (2048, 128256, False),
    "8b.qkv 4096x6144": (4096, 6144, False),
    "8b.gu  4096x2x14336": (4096, 14336, True),
    "8b.dn  14336x4096": (14336, 4096, False),
}


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="small shapes only (software adapters)")
    args = ap.parse_args()
    adapter, dev = request_device()
    print(adapter_name(adapter))
    prof = K.Profile("f16" if "shader-f16" in dev.features else "f32")
    BU = wgpu.BufferUsage
    rng = np.random.default_rng(0)
    shapes = {"small 256x1024": (256, 1024, False), "small pair": (256, 512, True)} if args.quick else SHAPES
    uni = dev.create_buffer(size=16, usage=BU.UNIFORM | BU.COPY_DST)
    dev.queue.write_buffer(uni, 0, struct.pack("<4I", 1, 0, 0, 0))
    for label, (k, n, pair) in shapes.items():
        rows = 2 * n if pair else n
        w = quantize_q4s(rng.standard_normal((rows, k), dtype=np.float32) * 0.02, "f16")
        xv = rng.standard_normal(k, dtype=np.float32)
        wd = dequantize(w)
        ref = wd @ xv
        if pair:
            g, u = ref[:n], ref[n:]
            ref = g / (1 + np.exp(-g)) * u
        xdt = np.float16 if prof.name == "f16" else np.float32
        xb = dev.create_buffer_with_data(data=xv.astype(xdt).tobytes(), usage=BU.STORAGE)
        yb = dev.create_buffer(size=n * 4, usage=BU.STORAGE | BU.COPY_SRC)
        wbufs = [dev.create_buffer_with_data(data=np.ascontiguousarray(w.arrays[a]).tobytes(), usage=BU.STORAGE)
                 for a in K.WEIGHT_ARRAYS["q4s"]]
        nbytes = w.nbytes
        variants = {}
        for lanes in (4, 8, 16, 32, 64):
            variants[f"gemv lanes {lanes}"] = (
                K.gemv(prof, w, n_rows=n, row0=0, x_type=prof.act, y_type="f32", lanes=lanes, pair=pair), 256 // lanes)
        for vname, (kern, rows_per_wg) in variants.items():
            bgl = dev.create_bind_group_layout(entries=[
                {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}}
                for i, t in enumerate(kern.bindings)])
            pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                               compute={"module": dev.create_shader_module(code=kern.source),
                                                        "entry_point": "main"})
            bufs = [uni, xb, yb] + wbufs
            bg = dev.create_bind_group(layout=bgl, entries=[
                {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}} for i, b in enumerate(bufs)])
            gx = -(-n // rows_per_wg)

            def run(reps, pipe=pipe, bg=bg, gx=gx, yb=yb):
                enc = dev.create_command_encoder()
                cp = enc.begin_compute_pass()
                cp.set_pipeline(pipe)
                cp.set_bind_group(0, bg)
                for _ in range(reps):
                    cp.dispatch_workgroups(gx, 1, 1)
                cp.end()
                dev.queue.submit([enc.finish()])
                return np.frombuffer(dev.queue.read_buffer(yb), np.float32)

            got = run(1)
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            run(args.reps // 4)
            t = time.perf_counter()
            run(args.reps)
            dt = (time.perf_counter() - t) / args.reps
            print(f"{label:22s} {vname:26s} {dt * 1e6:8.1f} us  {nbytes / dt / 1e9:7.1f} GB/s  err {err:.1e}")


if __name__ == "__main__":
    main()
