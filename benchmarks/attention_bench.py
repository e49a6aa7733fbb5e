"""The prefill attention alone (wgsl/attention_tiled.wgsl) on this adapter: µs per dispatch and
TFLOP/s, for the Llama-3.1-8B and Llama-3.2-1B head shapes, against the kernel it replaced.

    PYTHONPATH=. python benchmarks/attention_bench.py [--tokens 512 1024] [--past 0] [--shapes 8b 1b]
        [--profile f16] [--variants default r1-s4 r2-s8 ...] [--old REV | --no-old]
                                         [--reps 20] [--json out.json] [--quick]

One causal prefill step of `--tokens` query tokens after `--past` cached positions, one layer (the
plan's dispatch: x = KV heads, y = ceil(tokens / tokens per workgroup)). Timing: GPU timestamps
around a compute pass holding the one dispatch, median of --reps (wall clock of --reps passes when
the adapter has no timestamp-query). FLOPs = 4 * q_heads * head_dim * (query, position) pairs the
mask keeps (q.k and p.v, a multiply and an add each). Each variant's output is checked against numpy
on a few tokens (err: max abs error / max abs output).

Variants: `default` is the kernel the compiler emits; `rR[-sS][-act][-bkN]` is attention_tiled with R
query rows a thread, S threads a row group (4 or 8; else the default for the head_dim), K/V staged in
the activation type (`act`, else f32), N positions a block (else the most that fit 16 KiB). A variant
the shape cannot take is reported as skipped. `old` is the kernel before this one (64 query rows of 4 threads each,
blocks of 8 positions), built from `git show REV:webllm/kernels/wgsl/attention_tiled.wgsl` (default
REV: 2a6cb1f, its last commit); --no-old leaves it out (e.g. outside a git checkout).
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

from webllm import kernels as K
from webllm.runtime.device import adapter_name, create_shader_module, request_device

SHAPES = {"8b": (32, 8, 128), "1b": (32, 8, 64)}  # q heads, KV heads, head_dim
QUICK_SHAPES = {"quick": (8, 2, 64)}
OLD_REV = "2a6cb1f"


def old_kernel(template: str, prof: K.Profile, *, nq: int, nkv: int, hd: int, scale: float) -> tuple[K.Kernel, int]:
    """The former attention_tiled (its generator, as of OLD_REV) and its tokens per workgroup."""
    n = hd // 16

    def lines(fmt: str, indent: int) -> str:
        return "\n".join(" " * indent + fmt.format(e=e) for e in range(n))

    qt = max(1, 64 // (nq // nkv))
    src = K._fill(template, HEADER=K._header(prof), NQ=nq, NKV=nkv, HD=hd, WINDOW=0, SCALE=K._f32(scale), QT=qt,
                  BK=8 if hd <= 128 else 4,
                  DECLS=lines("var q{e} = vec4<f32>(0.0);\n    var a{e} = vec4<f32>(0.0);", 4),
                  QLOAD=lines("q{e} = vec4<f32>(q[qb + {e}u]) * SCALE;", 8),
                  QK=lines("d = fma(q{e}, ks[kb + {e}u], d);", 12),
                  RESCALE=lines("a{e} *= alpha;", 8),
                  PV=lines("a{e} = fma(pv, vs[vb + {e}u], a{e});", 12),
                  STORE=lines("out[o + {e}u] = vec4<act>(a{e} * inv);", 8))
    return K._make("attention_tiled", src, (K.UNIFORM, K.READ, K.READ, K.READ, K.WRITE)), qt


def variant_kernel(name: str, prof: K.Profile, **kw) -> K.Kernel:
    if name == "default":
        return K.attention_tiled(prof, **kw)
    m = re.fullmatch(r"r(\d+)(?:-s(\d+))?(-act)?(?:-bk(\d+))?", name)
    if not m:
        raise SystemExit(f"unknown variant {name!r} (default, or rR[-sS][-act][-bkN])")
    return K.attention_tiled(prof, rows_per_thread=int(m[1]), split=int(m[2]) if m[2] else None,
                             stage="act" if m[3] else "f32", block=int(m[4]) if m[4] else None, **kw)


def reference_rows(q, k, v, tokens, *, nq, nkv, hd, past, scale):
    """Causal attention output of the given tokens, [len(tokens), nq * hd], in float64."""
    g = nq // nkv
    out = []
    for t in tokens:
        qt = q[t].astype(np.float64).reshape(nkv, g, hd)
        kk = k[:past + t + 1].astype(np.float64)  # [j, nkv, hd]
        s = np.einsum("hgd,jhd->hgj", qt, kk) * scale
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        out.append(np.einsum("hgj,jhd->hgd", w, v[:past + t + 1].astype(np.float64)).reshape(-1))
    return np.array(out)


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--past", type=int, default=0)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--quick", action="store_true", help="one small shape (software adapters)")
    ap.add_argument("--profile", choices=["f16", "f32"], help="activation type (default: f16 where the device has it)")
    ap.add_argument("--variants", nargs="+", default=["default", "r1-s4", "r2-s4", "r2-s8", "r4-s8", "r2-s8-act", "r1-s4-act"])
    ap.add_argument("--old", default=OLD_REV, help="git revision of the former kernel's template")
    ap.add_argument("--no-old", action="store_true")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    adapter, dev = request_device(want_features=["timestamp-query"])
    stamps = "timestamp-query" in dev.features
    prof = K.Profile(args.profile or ("f16" if "shader-f16" in dev.features else "f32"))
    dt = np.float16 if prof.name == "f16" else np.float32
    print(f"{adapter_name(adapter)}; profile {prof.name}; past {args.past}; "
          f"timing: {'GPU timestamps' if stamps else 'wall clock'}", flush=True)
    old_src = None
    if not args.no_old:
        old_src = subprocess.run(["git", "show", f"{args.old}:webllm/kernels/wgsl/attention_tiled.wgsl"],
                                 capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).resolve().parent).stdout
    BU = wgpu.BufferUsage
    size = K.uniform_table()["size"]
    uni = dev.create_buffer(size=size, usage=BU.UNIFORM | BU.COPY_DST)
    qs = dev.create_query_set(type=wgpu.QueryType.timestamp, count=2) if stamps else None
    resolved = dev.create_buffer(size=16, usage=BU.QUERY_RESOLVE | BU.COPY_SRC) if stamps else None
    rng = np.random.default_rng(0)
    results = []
    for sname, (nq, nkv, hd) in (QUICK_SHAPES if args.quick else {s: SHAPES[s] for s in args.shapes}).items():
        for T in args.tokens:
            past = args.past
            cap = past + T
            q = rng.standard_normal((T, nq * hd)).astype(dt)
            k = rng.standard_normal((cap, nkv, hd)).astype(dt)
            v = rng.standard_normal((cap, nkv, hd)).astype(dt)
            scale = hd ** -0.5
            check = sorted({0, 1, T // 3, T // 2 + 1, T - 1})
            ref = reference_rows(q, k, v, check, nq=nq, nkv=nkv, hd=hd, past=past, scale=scale)
            bufs = [uni] + [dev.create_buffer_with_data(data=a.tobytes(), usage=BU.STORAGE) for a in (q, k, v)]
            bufs.append(dev.create_buffer(size=q.nbytes, usage=BU.STORAGE | BU.COPY_SRC | BU.COPY_DST))
            dev.queue.write_buffer(uni, 0, struct.pack("<II", T, past) + bytes(size - 8))
            pairs = sum(past + t + 1 for t in range(T))
            flops = 4 * nq * hd * pairs
            kw = dict(nq=nq, nkv=nkv, hd=hd, window=0, scale=scale)
            variants = {}
            if old_src is not None:
                variants["old"] = old_kernel(old_src, prof, nq=nq, nkv=nkv, hd=hd, scale=scale)
            for vn in args.variants:
                try:
                    variants[vn] = (variant_kernel(vn, prof, **kw), K.attention_tiled_tokens(nq=nq, nkv=nkv))
                except ValueError as e:
                    print(f"{sname} T={T} {vn}: skipped ({e})", flush=True)
            for vn, (kern, qt) in variants.items():
                bgl = dev.create_bind_group_layout(entries=[
                    {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}}
                    for i, t in enumerate(kern.bindings)])
                pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                                   compute={"module": create_shader_module(dev, kern.source),
                                                            "entry_point": "main"})
                bg = dev.create_bind_group(layout=bgl, entries=[
                    {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}} for i, b in enumerate(bufs)])
                grid = (nkv, -(-T // qt), 1)

                def run(timed: bool, pipe=pipe, bg=bg, grid=grid) -> None:
                    enc = dev.create_command_encoder()
                    cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 0,
                                                                  "end_of_pass_write_index": 1} if timed else None)
                    cp.set_pipeline(pipe)
                    cp.set_bind_group(0, bg)
                    cp.dispatch_workgroups(*grid)
                    cp.end()
                    if timed:
                        enc.resolve_query_set(qs, 0, 2, resolved, 0)
                    dev.queue.submit([enc.finish()])

                dev.queue.write_buffer(bufs[-1], 0, bytes(q.nbytes))
                run(False)
                got = np.frombuffer(dev.queue.read_buffer(bufs[-1]), dt).reshape(T, -1)[check].astype(np.float64)
                err = float(np.abs(got - ref).max() / np.abs(ref).max())
                if stamps:
                    ts = []
                    for _ in range(args.reps):
                        run(True)
                        t0, t1 = np.frombuffer(dev.queue.read_buffer(resolved), np.uint64)
                        ts.append((int(t1) - int(t0)) / 1e3)
                    us = float(np.median(ts))
                else:
                    t = time.perf_counter()
                    for _ in range(args.reps):
                        run(False)
                    dev.queue.read_buffer(bufs[-1], 0, 16)
                    us = (time.perf_counter() - t) / args.reps * 1e6
                tflops = flops / us / 1e6
                print(f"{sname:5s} T={T:5d} {vn:12s} {us:9.1f} us  {tflops:6.2f} TFLOP/s  grid {grid[0]}x{grid[1]}  "
                      f"err {err:.1e}", flush=True)
                results.append(dict(shape=sname, nq=nq, nkv=nkv, hd=hd, tokens=T, past=past, variant=vn, us=us,
                                    tflops=tflops, err=err))
            for b in bufs[1:]:
                b.destroy()
    if args.json:
        args.json.write_text(json.dumps({"adapter": adapter_name(adapter), "profile": prof.name,
                                         "timestamps": stamps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
