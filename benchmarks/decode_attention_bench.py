"""Decode attention alone (wgsl/attention_decode.wgsl) on this adapter: µs per layer in a dependent
chain with cold K and V, against a streaming read of the same bytes, and a check against numpy.

    python benchmarks/decode_attention_bench.py [--shapes 8b 1b] [--contexts 1 1024 4096]
        [--profiles f16 f32] [--splits 8 16 32] [--variants default gw2 ...] [--json out.json] [--quick]

One decode step (one query token at position ctx - 1 over ctx cached positions) per dispatch, the
plan's grid (x = query heads / heads per workgroup, z = splits). The chain: one compute pass of
--chain dispatches, each reading the K and V of its own layer (copies rotated through enough memory,
--cold-mib, that every dispatch reads them from DRAM as a decode step does) and all writing the same
partials buffers, so that the runtime puts a barrier between them as between a decode step's
dependent dispatches; GPU timestamps around the pass. Every configuration of a context is timed in
turn, round after round (--seconds each in all), and the best pass of each kept: the GPU's clocks
drift (it runs slowly for a while after sitting idle), and this spreads the drift over all of them.
`stream` is a chain of streaming reads of the same bytes (gemv_bench.py's Chain), timed after them.

Variants, `+`-joined parts: `default` (the kernel the compiler emits), `gwN` (N query heads a
workgroup), and probes
that strip a phase out of the kernel (their results are wrong; they say where the time goes):
`noV` (no V sums, so no V loads), `nodots` (K's dot products replaced by an add of two of its dims),
`nomerge` (the split's end: no merge of the row groups' sums), `noexp` (exp replaced by a
multiply), `l1k` / `l1v` (K / V read from the first 64 positions only, so from L1), `nobar` (no
barrier in the chunk loop). The check combines the splits' partials as the o matmul does (err: max
abs error over the largest output).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemv_bench import Chain  # noqa: E402

from webllm import kernels as K  # noqa: E402
from webllm.runtime.device import adapter_name, create_shader_module, request_device  # noqa: E402

SHAPES = {"8b": (32, 8, 128), "1b": (32, 8, 64)}  # q heads, KV heads, head_dim
QUICK = {"quick": (8, 2, 64)}

# probes: (old, new) replacements in the rendered source, each of which must occur
PROBES = {
    "noV": [("add_rows(&a0, base, n);", "")],
    "nodots": [("fn dots(r: RAW, s: u32) {\n    let k = unpack8(r);",
                "fn dots(r: RAW, s: u32) {\n    let u = unpack8(r);\n    pd0.x += u.a.x + u.b.w;\n    return;\n"
                "    let k = unpack8(r);")],
    "nomerge": [("for (var h = 0u; h < HB; h++) {", "for (var h = 0u; h < 0u; h++) {")],
    # K / V read from the first chunk's positions only (each workgroup's 16 KB stay in its SM's L1): what
    # the kernel costs without L2's bandwidth and latency
    "l1k": [("fn k_raw(i: u32) -> RAW { return k_cache[i]; }",
             "fn k_raw(i: u32) -> RAW { return k_cache[i % (CH * NKV * NS)]; }")],
    "l1v": [("fn v_raw(i: u32) -> RAW { return v_cache[i]; }",
             "fn v_raw(i: u32) -> RAW { return v_cache[i % (CH * NKV * NS)]; }")],
    # no barrier between a chunk's dots and its V sums (races: what the barrier costs)
    "nobar": [("        workgroupBarrier();\n        // V: each thread's own online softmax",
               "        // V: each thread's own online softmax")],
    "noexp": [("let al = exp(", "let al = 0.5 * ("), ("let p0 = exp(", "let p0 = 0.5 * ("),
              ("exp(s1 - mn)", "0.5 * (s1 - mn)"), ("exp(s2 - mn)", "0.5 * (s2 - mn)"),
              ("exp(s3 - mn)", "0.5 * (s3 - mn)")],
}


def kernel_source(prof, shape, splits: int, variant: str, template: Path | None):
    nq, nkv, hd = shape
    gw, parts = 0, []
    for part in variant.split("+"):
        if part.startswith("gw"):
            gw = int(part[2:])
        else:
            parts.append(part)
    if gw and ((nq // nkv) % gw or not K.attention_decode_fits(nq=nq, nkv=nkv, hd=hd, heads_per_wg=gw)):
        return None, 0
    if template is not None:  # the library's templates, with this one in place of attention_decode.wgsl
        K._template.cache_clear()
        orig = K._DIR
        K._DIR = Path(tempfile.mkdtemp(prefix="wgsl-"))
        for f in orig.glob("*.wgsl"):
            shutil.copy(f, K._DIR)
        shutil.copy(template, K._DIR / "attention_decode.wgsl")
        try:
            kern = K.attention_decode(prof, nq=nq, nkv=nkv, hd=hd, window=0, scale=1 / math.sqrt(hd),
                                      splits=splits, heads_per_wg=gw)
        finally:
            shutil.rmtree(K._DIR)
            K._DIR = orig
            K._template.cache_clear()
    else:
        kern = K.attention_decode(prof, nq=nq, nkv=nkv, hd=hd, window=0, scale=1 / math.sqrt(hd), splits=splits,
                                  heads_per_wg=gw)
    src = kern.source
    for part in parts:
        if part == "default":
            continue
        for old, new in PROBES[part]:
            if old not in src:
                return None, 0
            src = src.replace(old, new)
    return src, gw or K.attention_decode_heads(nq=nq, nkv=nkv, hd=hd)


def packed_rows(x: np.ndarray) -> bytes:
    """K or V [ctx, nkv, hd] f16 as the cache holds it (kernels/wgsl/rope_store.wgsl): word i of a row
    is the pair (dim i, dim i + hd / 2)."""
    h = x.shape[-1] // 2
    return np.ascontiguousarray(np.stack([x[..., :h], x[..., h:]], axis=-1)).tobytes()


def reference(q, k, v, nq, nkv, hd):
    """out[h, :] for the one token over all positions (k, v: [ctx, nkv, hd] f32)."""
    g = nq // nkv
    out = np.empty((nq, hd), np.float32)
    for h in range(nq):
        s = k[:, h // g, :] @ q[h] / math.sqrt(hd)
        p = np.exp(s - s.max())
        out[h] = p @ v[:, h // g, :] / p.sum()
    return out


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--quick", action="store_true", help="one small shape (software adapters)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[1, 1024, 4096])
    ap.add_argument("--profiles", nargs="+", default=["f16", "f32"])
    ap.add_argument("--splits", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--variants", nargs="+", default=["default"])
    ap.add_argument("--template", type=Path, action="append", default=[],
                    help="an attention_decode.wgsl to time as well (its variants: name@path)")
    ap.add_argument("--chain", type=int, default=32)
    ap.add_argument("--cold-mib", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    adapter, dev = request_device(want_features=["timestamp-query"])
    chain = Chain(dev, a.chain, a.seconds)
    print(f"{adapter_name(adapter)}; timestamps: {chain.stamps}", flush=True)
    BU = wgpu.BufferUsage
    rng = np.random.default_rng(0)
    shapes = QUICK if a.quick else {s: SHAPES[s] for s in a.shapes}
    templates = [(None, None)] + [(t.parent.name, t) for t in a.template]
    size = K.uniform_table()["size"]
    names = [f.name for f in K.STEP_FIELDS]
    results = []
    for sname, (nq, nkv, hd) in shapes.items():
        for pname in a.profiles:
            if pname == "f16" and "shader-f16" not in dev.features:
                continue
            prof = K.Profile(pname)
            dt = np.float16 if pname == "f16" else np.float32
            for ctx in a.contexts:
                layer = ctx * nkv * hd * 2  # bytes of K (and of V) per layer: f16 in both profiles
                copies = max(1, min(a.chain, -(-(a.cold_mib << 20) // (2 * layer))))
                k = rng.standard_normal((ctx, nkv, hd), dtype=np.float32).astype(np.float16)
                v = rng.standard_normal((ctx, nkv, hd), dtype=np.float32).astype(np.float16)
                q = (rng.standard_normal((nq, hd), dtype=np.float32) * 2).astype(dt)
                ref = reference(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), nq, nkv, hd)
                kvb = []
                for _ in range(copies):
                    kb = dev.create_buffer(size=layer, usage=BU.STORAGE | BU.COPY_DST)
                    vb = dev.create_buffer(size=layer, usage=BU.STORAGE | BU.COPY_DST)
                    dev.queue.write_buffer(kb, 0, packed_rows(k))
                    dev.queue.write_buffer(vb, 0, packed_rows(v))
                    kvb.append((kb, vb))
                qb = dev.create_buffer(size=q.nbytes, usage=BU.STORAGE | BU.COPY_DST)
                dev.queue.write_buffer(qb, 0, q.tobytes())
                uni = dev.create_buffer(size=size, usage=BU.UNIFORM | BU.COPY_DST)
                vals = dict.fromkeys(names, 0)
                vals.update(n_tokens=1, past=ctx - 1)
                dev.queue.write_buffer(uni, 0, b"".join(struct.pack("<I", int(vals[n])) for n in names)
                                       + bytes(size - 4 * len(names)))
                configs = []  # (splits, variant name, pipe, bind groups, grid, part buffers)
                parts = {}
                for splits in a.splits:
                    po = dev.create_buffer(size=splits * nq * hd * prof.act_bytes, usage=BU.STORAGE | BU.COPY_SRC)
                    pl = dev.create_buffer(size=splits * nq * 4, usage=BU.STORAGE | BU.COPY_SRC)
                    parts[splits] = (po, pl)
                    for tname, tpath in templates:
                        for variant in a.variants:
                            src, gw = kernel_source(prof, (nq, nkv, hd), splits, variant, tpath)
                            if src is None:
                                continue
                            bgl = dev.create_bind_group_layout(entries=[
                                {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}}
                                for i, t in enumerate((K.UNIFORM, K.READ, K.READ, K.READ, K.WRITE, K.WRITE))])
                            pipe = dev.create_compute_pipeline(
                                layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                compute={"module": create_shader_module(dev, src), "entry_point": "main"})
                            bgs = [dev.create_bind_group(layout=bgl, entries=[
                                {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}}
                                for i, b in enumerate((uni, qb, kb, vb, po, pl))]) for kb, vb in kvb]
                            grid = (nq // gw, min(splits, -(-ctx // K.KV_SPLIT_UNIT)))
                            err = check(dev, pipe, bgs[0], *grid, po, pl, ref, splits, nq, hd, dt)
                            configs.append((splits, variant if tname is None else f"{variant}@{tname}", pipe, bgs,
                                            grid, err))
                # rounds over all configs in turn, the best pass of each kept: a GPU's clocks drift (it
                # runs slowly for a while after sitting idle), and this spreads the drift over all of them
                best = [float("inf")] * len(configs)
                t0, rounds = time.perf_counter(), 0
                while rounds < 8 or time.perf_counter() - t0 < a.seconds * len(configs):
                    for i, (_, _, pipe, bgs, grid, _) in enumerate(configs):
                        t = chain.one_pass(pipe, bgs, (grid[0], 1, grid[1]))
                        if rounds >= 2:
                            best[i] = min(best[i], t)
                    rounds += 1
                stream_s = chain.stream(2 * layer, a.cold_mib << 20)
                for (splits, vname, _, _, _, err), t in zip(configs, best, strict=True):
                    row = {"shape": sname, "profile": pname, "context": ctx, "splits": splits, "variant": vname,
                           "us": t * 1e6, "stream_us": stream_s * 1e6, "kv_bytes": 2 * layer,
                           "gb_s": 2 * layer / t / 1e9, "err": err}
                    results.append(row)
                    print(f"{sname} {pname} ctx {ctx:5d} splits {splits:3d} {vname:18s} {t * 1e6:7.2f} us "
                          f"(stream of its {2 * layer / 1e6:5.1f} MB: {stream_s * 1e6:5.2f} us)  err {err:.1e}",
                          flush=True)
                for po, pl in parts.values():
                    po.destroy()
                    pl.destroy()
                for kb, vb in kvb:
                    kb.destroy()
                    vb.destroy()
    if a.json:
        a.json.write_text(json.dumps({"adapter": adapter_name(adapter), "results": results}, indent=1))


def check(dev, pipe, bg, gx, gz, po, pl, ref, splits, nq, hd, dt) -> float:
    enc = dev.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipe)
    cp.set_bind_group(0, bg)
    cp.dispatch_workgroups(gx, 1, gz)
    cp.end()
    dev.queue.submit([enc.finish()])
    o = np.frombuffer(dev.queue.read_buffer(po), dt).astype(np.float32).reshape(splits, nq, hd)[:gz]
    lse = np.frombuffer(dev.queue.read_buffer(pl), np.float32).reshape(splits, nq)[:gz]
    m = lse.max(0)
    w = np.exp(lse - m)
    out = (o * w[:, :, None]).sum(0) / w.sum(0)[:, None]
    return float(np.abs(out - ref).max() / np.abs(ref).max())


if __name__ == "__main__":
    main()
