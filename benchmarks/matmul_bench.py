"""The prefill matmul alone (wgsl/matmul_tiled.wgsl) on this adapter: TFLOP/s and GB/s of weights.

    python benchmarks/matmul_bench.py [--tokens 512] [--tile 64 32] [--quick] [--json out.json]
                                      [--template OLD.wgsl] [--profile f32] [--staging wide dbuf]
                                      [--half] [--shapes 8b.gu ...] [--ablate 'wide128x64' ...]

Cold weights: each shape rotates through copies of its 4-bit matrix (q4s, f16 scales) totalling at
least 512 MiB, so each dispatch reads its weights from memory, not from the 50 MiB L2; x stays hot
(as in a model step, where the previous kernel just wrote it). `reps` dispatches go into one compute
pass (as in a prefill step; they write the same y, so they run one after the other) and are timed
by a readback. FLOPs = 2 * T * K * N (both halves of a pair). The first dispatch's output is checked
against numpy on the dequantized weights for a few tokens. With tile 128, the 32 KiB stagings of
--staging (those of the prefill variants wide128, dbuf128) are timed too where the device reaches
32 KiB. `--template` times another matmul_tiled template (e.g. `git show
<rev>:webllm/kernels/wgsl/matmul_tiled.wgsl`) of the 32 x 32 tile generation. `--half` also times
every variant with f16 arithmetic (suffix " h"). `--ablate V` times variant V (as printed) also
without its in-loop global loads, without barriers, without staging into workgroup memory, with
nothing but the multiply, and with half the workgroup-memory reads: what bounds the kernel (wrong
results, by design). The first variant of each shape tends to measure slow (the copies' first
use): compare the others.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's webllm

from webllm import kernels as K  # noqa: E402
from webllm.quantization.formats import dequantize, quantize_q4s  # noqa: E402
from webllm.runtime.device import adapter_name, create_shader_module, request_device  # noqa: E402

SHAPES = {  # name: (K, N, pair)
    "1b.qkv 2048x3072": (2048, 3072, False),
    "1b.o   2048x2048": (2048, 2048, False),
    "1b.gu  2048x2x8192": (2048, 8192, True),
    "1b.dn  8192x2048": (8192, 2048, False),
    "8b.qkv 4096x6144": (4096, 6144, False),
    "8b.o   4096x4096": (4096, 4096, False),
    "8b.gu  4096x2x14336": (4096, 14336, True),
    "8b.dn  14336x4096": (14336, 4096, False),
}
QUICK = {"small 256x512": (256, 512, False), "small pair 256x2x384": (256, 384, True)}


def legacy_kernel(template: str, prof: K.Profile, w, n: int, pair: bool) -> K.Kernel:
    """A kernel from the 32-token x 32-row template generation (WROWS / WS parameters)."""
    params, bindings = K._weights_and_bias(w, False)
    wrows = 64 if pair else 32
    src = K._fill(template, HEADER=K._header(prof), N_ROWS=n, N_OUT=n, ROW0=0, PAIR=str(pair).lower(), ADD="false",
                  XT=prof.act, YT=prof.act, WROWS=wrows, WS=32 * wrows // 4, **params)
    return K._make("matmul_tiled", src, bindings)


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--tile", type=int, nargs="+", default=[128, 64, 32], help="tokens per workgroup to time")
    ap.add_argument("--staging", nargs="*", default=["wide", "dbuf"], choices=K.MATMUL_STAGINGS[1:],
                    help="also time the 128-token tile with these 32 KiB stagings (default: wide dbuf)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="small shapes (software adapters)")
    ap.add_argument("--template", type=Path, help="also time this older matmul_tiled.wgsl (32 x 32 tiles)")
    ap.add_argument("--cold-bytes", type=int, default=512 << 20)
    ap.add_argument("--profile", choices=["f16", "f32"], help="activation type (default: f16 where the device has it)")
    ap.add_argument("--ablate", nargs="*", metavar="VARIANT",
                    help="also time these variants (e.g. 'wide128x64 h') without their in-loop global loads, "
                         "without barriers, with only the multiply, with half the workgroup-memory reads "
                         "(wrong results: for finding what bounds the kernel)")
    ap.add_argument("--shapes", nargs="*", help="only the shapes whose label starts with one of these (e.g. 8b.gu)")
    ap.add_argument("--half", action="store_true",
                    help="also time each tile in f16 arithmetic (matmul_tiled half=True; f16 profile)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    adapter, dev = request_device()
    name = adapter_name(adapter)
    print(name)
    prof = K.Profile(args.profile or ("f16" if "shader-f16" in dev.features else "f32"))
    xdt = np.float16 if prof.name == "f16" else np.float32
    BU = wgpu.BufferUsage
    rng = np.random.default_rng(0)
    T = args.tokens
    size = K.uniform_table()["size"]  # n_tokens first; the other fields do not matter to a matmul
    uni = dev.create_buffer(size=size, usage=BU.UNIFORM | BU.COPY_DST)
    dev.queue.write_buffer(uni, 0, struct.pack("<I", T) + bytes(size - 4))
    results = []
    for label, (k, n, pair) in (QUICK if args.quick else SHAPES).items():
        if args.shapes and not any(label.startswith(p) for p in args.shapes):
            continue
        rows = 2 * n if pair else n
        w = quantize_q4s(rng.standard_normal((rows, k), dtype=np.float32) * 0.02, "f16")
        xv = rng.standard_normal((T, k), dtype=np.float32).astype(xdt)
        check = sorted({t for t in (0, 3, 37, 70, 101, T // 2, T - 2, T - 1) if 0 <= t < T})
        ref = xv[check].astype(np.float32) @ dequantize(w).T
        if pair:
            g, u = ref[:, :n], ref[:, n:]
            ref = g / (1 + np.exp(-g)) * u
        xb = dev.create_buffer_with_data(data=xv.tobytes(), usage=BU.STORAGE)
        yb = dev.create_buffer(size=T * n * prof.act_bytes, usage=BU.STORAGE | BU.COPY_SRC)
        copies = max(1, min(16, -(-args.cold_bytes // w.nbytes)))
        wsets = [[dev.create_buffer_with_data(data=np.ascontiguousarray(w.arrays[a]).tobytes(), usage=BU.STORAGE)
                  for a in K.WEIGHT_ARRAYS["q4s"]] for _ in range(copies)]
        variants = {f"tile {tm}x{K.matmul_tile_rows(pair)}": (
            K.matmul_tiled(prof, w, n_rows=n, n_out=n, row0=0, x_type=prof.act, y_type=prof.act, pair=pair,
                           tokens=tm), tm, K.matmul_tile_rows(pair)) for tm in args.tile}
        staging_of = dict.fromkeys(variants, "halves")
        for staging in args.staging if 128 in args.tile else []:
            kern = K.matmul_tiled(prof, w, n_rows=n, n_out=n, row0=0, x_type=prof.act, y_type=prof.act, pair=pair,
                                  tokens=128, staging=staging)
            need = dict(kern.limits).get("maxComputeWorkgroupStorageSize", 0)
            if need > dev.limits["max-compute-workgroup-storage-size"]:
                print(f"{label:22s} {staging}128: skipped (needs {need} bytes of workgroup memory)", flush=True)
                continue
            variants[f"{staging}128x{K.matmul_tile_rows(pair)}"] = (kern, 128, K.matmul_tile_rows(pair))
            staging_of[f"{staging}128x{K.matmul_tile_rows(pair)}"] = staging
        if args.half and prof.name == "f16":
            for vname, (_kern, tm, tn) in list(variants.items()):
                staging = staging_of[vname]
                variants[vname + " h"] = (K.matmul_tiled(prof, w, n_rows=n, n_out=n, row0=0, x_type=prof.act,
                                                         y_type=prof.act, pair=pair, tokens=tm, staging=staging,
                                                         half=True), tm, tn)
        for base in args.ablate or []:
            if base not in variants:
                continue
            kern, tm, tn = variants[base]
            loads = [f"{v} = load_x({r}, gn, {q});" for v, r, q in (("x0", "xrow", "kq"), ("x1", "xrow", "kq + 4u"),
                                                                    ("x2", "xrow2", "kq"), ("x3", "xrow2", "kq + 4u"))]
            loads.append("wr = w_fetch(wn, gn);")
            cut = {"no loads": loads, "no barriers": ["workgroupBarrier();"],
                   "mul only": loads + ["workgroupBarrier();", "stage_w(", "stage_w8(", "stage_x("],
                   "no staging": ["stage_w(", "stage_w8(", "stage_x("],
                   "half lds": [("let wb = ws[k * 32u + 16u + tx];", "let wb = wa.yzwx;"),
                                ("let xl = xs[xcol(k, BM4 / 2u + ty)];", "let xl = xk.wzyx;")]}
            for what, edits in cut.items():
                src = kern.source
                body = src[src.index("fn main("):]
                for e in edits:
                    if (e[0] if isinstance(e, tuple) else e) not in src:  # the kernel changed: say so
                        raise SystemExit(f"--ablate {what}: {e!r} is not in the kernel")
                    if isinstance(e, tuple):
                        src = src.replace(*e)
                    elif e.endswith("("):  # calls inside main's loop: the whole statement goes
                        body = re.sub(r"\n\s*(if \(lid < 128u\) \{ )?" + re.escape(e) + r"[^;]*;( \})?", "\n", body)
                    else:
                        body = body.replace(e, "")
                if any(not isinstance(e, tuple) for e in edits):
                    src = src[:src.index("fn main(")] + body
                variants[f"{base} {what}"] = (K.Kernel(kern.name, src, kern.bindings, kern.features, kern.limits), tm, tn)
        if args.template:
            variants["old 32x32"] = (legacy_kernel(args.template.read_text(), prof, w, n, pair), 32, 32)
        for vname, (kern, tm, tn) in variants.items():
            bgl = dev.create_bind_group_layout(entries=[
                {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}}
                for i, t in enumerate(kern.bindings)])
            pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                               compute={"module": create_shader_module(dev, kern.source),
                                                        "entry_point": "main"})
            groups = [dev.create_bind_group(layout=bgl, entries=[
                {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}}
                for i, b in enumerate([uni, xb, yb] + ws)]) for ws in wsets]
            grid = (-(-n // tn), -(-T // tm), 1)

            def run(reps, pipe=pipe, groups=groups, grid=grid, yb=yb):
                enc = dev.create_command_encoder()
                cp = enc.begin_compute_pass()
                cp.set_pipeline(pipe)
                for r in range(reps):
                    cp.set_bind_group(0, groups[r % len(groups)])
                    cp.dispatch_workgroups(*grid)
                cp.end()
                dev.queue.submit([enc.finish()])
                dev.queue.read_buffer(yb, 0, 16)

            run(1)
            got = np.frombuffer(dev.queue.read_buffer(yb), xdt).reshape(T, n)[check].astype(np.float32)
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            run(max(len(groups), args.reps // 4))  # touches every copy once: first use costs extra
            t = time.perf_counter()
            run(args.reps)
            dt = (time.perf_counter() - t) / args.reps
            tflops = 2 * T * k * rows / dt / 1e12
            gbs = w.nbytes / dt / 1e9
            print(f"{label:22s} {vname:14s} {dt * 1e6:9.1f} us  {tflops:6.2f} TFLOP/s  {gbs:7.1f} GB/s  err {err:.1e}",
                  flush=True)
            results.append(dict(shape=label.split()[0], K=k, N=n, pair=pair, tokens=T, variant=vname, us=dt * 1e6,
                                tflops=tflops, gbs=gbs, err=err))
    if args.json:
        args.json.write_text(json.dumps({"adapter": name, "profile": prof.name, "results": results}, indent=1))


if __name__ == "__main__":
    main()
