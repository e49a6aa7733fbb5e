"""Decode-matmul (4-bit GEMV) variants on this adapter: time and GB/s of weight traffic with cold
weights, in a dependent chain as in a decode step, against a streaming read of the same bytes in the
same kind of chain and against the adapter's streaming-read bandwidth; and a correctness check.

    python benchmarks/gemv_bench.py [--quick] [--json out.json] [--variants 32x4,8x4] [--profiles f16,f32]
        [--clock stamps|wall]

Cold weights: each shape's weights are uploaded as enough copies to fill --cold-mib (default 256
MiB, 5x an H100's 50 MB L2), and successive dispatches rotate through the copies, so every dispatch
reads its weights from memory, as a decode step does (the whole model is far larger than L2).

The timing is a chain: one compute pass of --chain dispatches, each on the next copy and all writing
one output, so that the runtime puts a barrier between them as between a decode step's dependent
matmuls; GPU timestamps around the pass (the wall clock without timestamp-query), rounds repeated for
--seconds and the best one kept, since a GPU that sat idle runs slowly for a while. The same chain of
streaming reads (wgsl/stream_read.wgsl, 16-byte loads) over the same bytes gives what a
dispatch of that size can reach: on an H100, 2 us for an empty dispatch and 23 us for the 66 MB of
an 8B's gate_up, while a step's matmuls take about as long as in this chain (docs/PERFORMANCE.md).
Earlier versions timed one dispatch per pass with little warm-up and were 3-5x off the model.
`--clock wall` times passes of n and 2n dispatches by the wall clock instead, and takes the difference
over n: a dispatch's steady cost in the chain, without what a pass costs besides its dispatches (on an
H100 the timestamps around a pass of 64 trivial dispatches gave 4.6 us a dispatch, the difference 2.2).
x is f16, f32 (the float decode variants) or int8 (`--profiles int8`: blocks of 8 with their scales,
2 bytes an input, as the `q8...` decode variants, the ones a GPU picks, pass it between matmuls;
kernels.q8_x_blocks). `--epilogues q8,addnorm` also times the kernel with what the model's matmuls
do after their sums: the pair's product as int8 blocks (gate_up's), or (other shapes) added into the
residual stream with the next norm's x * weight as int8 blocks and the workgroup's sum of squares
(down's and o's). A variant `LxR` is the one-token matmul with L = `lanes` (256 / L rows per
workgroup) and R rows per thread (wgsl/gemv.wgsl); a `w` after the lanes (`32w`, `16wx2`) lets its workgroups take up to 512
threads, as the decode variants `...w` do (kernels.gemv_threads).
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
from webllm.runtime.device import adapter_name, create_shader_module, device_features, request_device

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
# the last: long rows, whose 16-row workgroups take 512 threads in variant 16w (4 row sets of 128)
QUICK = {"small 256x1024": (256, 1024, False), "small pair 512x2x256": (512, 256, True), "small long 4096x64": (4096, 64, False)}


def random_q4s(rng, n: int, k: int) -> PackedWeight:
    """Random 4-bit codes and f16 scales (speed does not depend on the values)."""
    q = rng.integers(0, 2**32, size=n * k // 8, dtype=np.uint32)
    scales = rng.uniform(0.002, 0.02, size=n * k // 32).astype(np.float32)
    return PackedWeight("q4s", (n, k), {"qweight": q, "scales": _pack_vals(scales, "f16")}, "f16")


EPILOGUES = ("plain", "q8", "addnorm", "normin")
NORM_PARTIALS = 256  # "normin": the sums of squares' partials a reader adds (an 8B's o or down leaves 256)
NORM_EPS = 1e-5


def variant_source(prof, w, n, pair, lanes, rows_per_thread=None, set_threads=None, subgroups=False, threads=256,
                   q8_in=False, epilogue="plain"):
    """The one-token matmul for 256 / lanes rows per workgroup in at most `threads` threads; R (rows per
    thread) and L (threads per row set) as kernels.gemv_threads chooses them unless given (edits the
    kernel's constants). `q8_in`: x as int8 blocks (gemv_q8_in.wgsl), as the `q8...` decode variants read it.
    `epilogue`: "plain" stores y; "q8" writes the pair's product as int8 blocks for the next matmul
    (gate_up's in the int8 decode variants); "addnorm" (no pair) adds it into y (the residual stream)
    and writes the next norm's x * weight as int8 blocks and the workgroup's sum of squares (down's, o's);
    "normin" divides by the RMS that NORM_PARTIALS partial sums of squares give (qkv's, the head's; with
    the pair, gate_up's, whose product is then written as int8 blocks)."""
    kw = {"q8": dict(q8_out=n), "addnorm": dict(add=True, norm_out_offset=0, q8_out=n),
          "normin": dict(norm_in=NORM_PARTIALS, eps=NORM_EPS, q8_out=n if pair else 0)}.get(epilogue, {})
    kern = K.gemv(prof, w, n_rows=n, row0=0, x_type=prof.act, y_type="f32", lanes=lanes, pair=pair,
                  subgroups=subgroups, threads=threads, q8_in=q8_in, **kw)
    src = kern.source
    for name, value in (("R", rows_per_thread), ("L", set_threads)):
        if value is not None:
            lines = [ln for ln in src.splitlines() if ln.startswith(f"const {name}: u32 = ")]
            if not lines:
                return None, kern.bindings  # a gemv.wgsl without that constant
            src = src.replace(lines[0], f"const {name}: u32 = {value}u;")
    return src, kern.bindings


def _encode(dev, pipe, bind_groups, groups: int):
    enc = dev.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipe)
    for bg in bind_groups:
        cp.set_bind_group(0, bg)
        cp.dispatch_workgroups(groups, 1, 1)
    cp.end()
    return enc


class Chain:
    """Times chains of dispatches in one compute pass (see the module docstring)."""

    def __init__(self, dev, n: int, seconds: float, clock: str = "stamps"):
        import wgpu

        self.dev, self.n, self.seconds = dev, n, seconds
        # "wall": the wall clock, differentially (per_dispatch)
        self.stamps = clock == "stamps" and "timestamp-query" in dev.features
        self.wall_diff = clock == "wall"
        self.sync = dev.create_buffer(size=4, usage=wgpu.BufferUsage.COPY_SRC)
        if self.stamps:
            self.qs = dev.create_query_set(type=wgpu.QueryType.timestamp, count=2)
            self.qb = dev.create_buffer(size=16, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
        self.stream_pipes = {}  # by reads a thread (PER_THREAD)

    def one_pass(self, pipe, bind_groups, grid: tuple[int, int, int], n: int | None = None) -> float:
        """Seconds per dispatch of one pass of n (default self.n) dispatches of `grid`, rotating through
        bind_groups."""
        n = n or self.n
        enc = self.dev.create_command_encoder()
        stamps = {"query_set": self.qs, "beginning_of_pass_write_index": 0,
                  "end_of_pass_write_index": 1} if self.stamps else None
        cp = enc.begin_compute_pass(timestamp_writes=stamps)
        cp.set_pipeline(pipe)
        for i in range(n):
            cp.set_bind_group(0, bind_groups[i % len(bind_groups)])
            cp.dispatch_workgroups(*grid)
        cp.end()
        if self.stamps:
            enc.resolve_query_set(self.qs, 0, 2, self.qb, 0)
        t = time.perf_counter()
        self.dev.queue.submit([enc.finish()])
        if self.stamps:
            ts = np.frombuffer(self.dev.queue.read_buffer(self.qb), np.uint64).astype(np.int64)
            return float(ts[1] - ts[0]) * 1e-9 / n
        self.dev.queue.read_buffer(self.sync, 0, 4)  # waits for the queue
        return (time.perf_counter() - t) / n

    def per_dispatch(self, pipe, bind_groups, groups: int) -> float:
        """Seconds per dispatch: the best round of a pass of n dispatches, rotating through bind_groups.
        With the differential wall clock: (best pass of 2n - best pass of n) / n, the two interleaved,
        so that what a pass costs besides its dispatches (the submit, the wait, the GPU's start) cancels."""
        best, best2, rounds, t0 = float("inf"), float("inf"), 0, time.perf_counter()
        while rounds < 5 or time.perf_counter() - t0 < self.seconds:
            dt = self.one_pass(pipe, bind_groups, (groups, 1, 1))
            dt2 = self.one_pass(pipe, bind_groups, (groups, 1, 1), 2 * self.n) if self.wall_diff else 0.0
            rounds += 1
            if rounds > 2:  # the first rounds wake the GPU up
                best, best2 = min(best, dt), min(best2, dt2)
        if self.wall_diff:
            # per-dispatch figures: (2n * best2 - n * best) / n; where noise swamps the difference (a busy
            # software adapter), the 2n pass's own figure, which bounds it from above
            diff = 2 * best2 - best
            return diff if diff > 0 else best2
        return best

    def stream(self, nbytes: int, cold_bytes: int) -> float:
        """Seconds per dispatch of a chain of streaming reads of nbytes, each of its own cold copy."""
        import wgpu

        per_thread = -(-nbytes // (4096 * 65535))  # 256 threads a workgroup, one vec4<u32> each at a time
        if per_thread not in self.stream_pipes:
            code = K._template("stream_read").replace("{{PER_THREAD}}", str(per_thread))
            self.stream_pipes[per_thread] = self.dev.create_compute_pipeline(
                layout="auto", compute={"module": create_shader_module(self.dev, code), "entry_point": "main"})
        pipe = self.stream_pipes[per_thread]
        groups = max(1, nbytes // (4096 * per_thread))
        size = groups * 4096 * per_thread
        copies = max(1, min(self.n, -(-cold_bytes // size)))
        srcs = [self.dev.create_buffer(size=size, usage=wgpu.BufferUsage.STORAGE) for _ in range(copies)]
        out = self.dev.create_buffer(size=groups * 4, usage=wgpu.BufferUsage.STORAGE)
        bgs = [self.dev.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
            {"binding": 0, "resource": {"buffer": b, "offset": 0, "size": size}},
            {"binding": 1, "resource": {"buffer": out, "offset": 0, "size": groups * 4}}]) for b in srcs]
        try:
            return self.per_dispatch(pipe, bgs, groups) * nbytes / size
        finally:
            for b in srcs:
                b.destroy()
            out.destroy()


def main() -> None:
    import wgpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small shapes only (software adapters)")
    ap.add_argument("--variants", default="32,32w,32x4x128,32x2,16,16w,8,64,4",
                    help="comma-separated LANES[w][xR[xL]]: 256/LANES rows per workgroup (w: in up to 512 threads), R "
                         "rows per thread, L threads per row set (default: kernels.gemv_threads' choice)")
    ap.add_argument("--profiles", default="f16,f32,int8",
                    help="x as f16, f32, or int8 blocks of 8 (what the `q8...` decode variants pass between matmuls)")
    ap.add_argument("--epilogues", default="plain",
                    help="comma-separated: plain (store y), q8 (the pair's product as int8 blocks: gate_up's), addnorm "
                         "(add into y, the next norm's x * weight as int8 blocks and the sums of squares: down's; "
                         f"shapes without the pair), normin (x's RMS from {NORM_PARTIALS} partial sums of squares: "
                         "qkv's, the head's, gate_up's)")
    ap.add_argument("--shapes", default="", help="comma-separated label prefixes (default: all)")
    ap.add_argument("--custom", default="", help="comma-separated extra shapes KxN or KxNxpair, measured instead")
    ap.add_argument("--upload", choices=["mapped", "write"], default="write",
                    help="weights uploaded mapped at creation or by queue.write_buffer (as the runtime does)")
    ap.add_argument("--cold-mib", type=int, default=256, help="weights rotated through per shape (MiB)")
    ap.add_argument("--pool", action="store_true",
                    help="all copies' weights in one buffer, each bound as a range of it (default: a buffer each, "
                         "as the runtime allocates a tensor)")
    ap.add_argument("--subgroups", choices=["auto", "on", "off"], default="auto",
                    help="row sets reduce through subgroup operations (auto: where the adapter has them, as the "
                         "tuned `gemv32sg` decode variant does)")
    ap.add_argument("--chain", type=int, default=32, help="dispatches in each timed pass (default 32)")
    ap.add_argument("--seconds", type=float, default=0.4, help="time each variant for this long (default 0.4)")
    ap.add_argument("--clock", choices=("stamps", "wall"), default="stamps",
                    help="GPU timestamps around each pass (the wall clock where the adapter has none), or the wall "
                         "clock, differentially: passes of n and 2n dispatches, the difference over n")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args()
    epilogues = args.epilogues.split(",")
    if set(epilogues) - set(EPILOGUES):
        ap.error(f"--epilogues: {', '.join(sorted(set(epilogues) - set(EPILOGUES)))} (choose from {', '.join(EPILOGUES)})")
    adapter, dev = request_device(want_features=["timestamp-query"])
    chain = Chain(dev, args.chain, args.seconds, args.clock)
    sg = {"on": True, "off": False}.get(args.subgroups, "subgroups" in device_features(dev))
    bw = stream_read_bandwidth(dev)["bytes_per_s"]
    print(f"{adapter_name(adapter)} / {adapter.info.get('description', '')}; streaming read {bw / 1e9:.0f} GB/s; "
          f"clock: {'timestamps' if chain.stamps else 'wall, differential' if chain.wall_diff else 'wall'}; "
          f"subgroups: {sg}", flush=True)
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
    variants = []
    for s in args.variants.split(","):
        f = s.split("x")
        wide = f[0].endswith("w")
        v = (int(f[0].rstrip("w")),) + tuple(int(x) for x in f[1:])
        variants.append((s, v + (None,) * (3 - len(v)), 512 if wide else 256))
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
        if args.pool:  # (buffer, offset, size) ranges of one buffer
            align = dev.limits["min-storage-buffer-offset-alignment"]
            sizes = [-(-len(b) // align) * align for b in blobs]
            copies = min(copies, max(1, dev.limits["max-buffer-size"] // sum(sizes)))
            pool = dev.create_buffer(size=copies * sum(sizes), usage=BU.STORAGE | BU.COPY_DST)
            wbufs, off = [], 0
            for _ in range(copies):
                ranges = []
                for b, sz in zip(blobs, sizes, strict=True):
                    dev.queue.write_buffer(pool, off, b + bytes(-len(b) % 4))
                    ranges.append((pool, off, -(-len(b) // 4) * 4))
                    off += sz
                wbufs.append(ranges)
        else:
            wbufs = [[(buf, 0, buf.size) for buf in (upload(b) for b in blobs)] for _ in range(copies)]
        nw = (rng.random(n, dtype=np.float32) + 0.5).astype(np.float32)  # addnorm: the next norm's weight
        stream_s = chain.stream(nbytes, args.cold_mib << 20)
        for pname in args.profiles.split(","):
            if pname == "f16" and "shader-f16" not in dev.features:
                continue
            int8 = pname == "int8"
            prof = K.Profile(("f16" if "shader-f16" in dev.features else "f32") if int8 else pname)
            if int8:  # the blocks and the x they stand for
                words, xd = K.q8_x_blocks(xv)
                ref, xb = reference(xd.astype(np.float32)), upload(words.tobytes())
            else:
                xq = xv.astype(np.float16 if pname == "f16" else np.float32)
                ref, xb = reference(xq.astype(np.float32)), upload(xq.tobytes())
            for (vname, (lanes, r, lt), threads), epi in ((v, e) for v in variants for e in epilogues):
                if (epi == "addnorm" and pair) or (epi == "q8" and not pair):  # the model's pairings
                    continue
                src, bindings = variant_source(prof, w, n, pair, lanes, r, lt, subgroups=sg, threads=threads, q8_in=int8,
                                               epilogue=epi)
                if src is None:
                    continue
                gx = -(-n // (256 // lanes))
                # one output for the whole chain (so a dependent one), zeros (the residual's h0 with addnorm)
                y = dev.create_buffer(size=4 * n, usage=BU.STORAGE | BU.COPY_SRC)
                extra = []  # addnorm: the next norm's weight, its int8 x * weight, the sums of squares
                if epi == "addnorm":
                    extra = [upload(nw.tobytes()), dev.create_buffer(size=4 * n, usage=BU.STORAGE | BU.COPY_SRC),
                             dev.create_buffer(size=4 * gx, usage=BU.STORAGE)]
                elif epi == "normin":  # partials of a sum of squares of k: x's RMS 1
                    extra = [upload(np.full(NORM_PARTIALS, k / NORM_PARTIALS, np.float32).tobytes())]
                bgl = dev.create_bind_group_layout(entries=[
                    {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}}
                    for i, t in enumerate(bindings)])
                pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                                   compute={"module": create_shader_module(dev, src),
                                                            "entry_point": "main"})
                bgs = [dev.create_bind_group(layout=bgl, entries=[
                    {"binding": i, "resource": {"buffer": b, "offset": off, "size": nb}}
                    for i, (b, off, nb) in enumerate([(uni, 0, uni.size), (xb, 0, xb.size), (y, 0, y.size)] + wbufs[c]
                                                     + [(e, 0, e.size) for e in extra])])
                       for c in range(copies)]

                dev.queue.submit([_encode(dev, pipe, bgs[:1], gx).finish()])
                rms = 1 / np.sqrt(1 + NORM_EPS) if epi == "normin" else 1
                if epi == "plain" or epi == "normin" and not pair:
                    got, want = np.frombuffer(dev.queue.read_buffer(y), np.float32)[check], ref * rms
                else:  # the int8 blocks (of y, or of the next norm's x * weight) against what they stand for
                    words = np.frombuffer(dev.queue.read_buffer(extra[1] if epi == "addnorm" else y), np.uint32)
                    q, d, _ = K.q8_x_values(words, n)
                    got, want = (q * np.repeat(d, 8))[check], ref * (nw[check] if epi == "addnorm" else rms)
                err = float(np.abs(got - want).max() / np.abs(want).max())
                t = chain.per_dispatch(pipe, bgs, gx)
                for b in [y] + extra:
                    b.destroy()
                row = {"shape": label, "profile": pname, "variant": vname, "epilogue": epi,
                       "weight_bytes": nbytes, "copies": copies,
                       "us": t * 1e6, "gb_s": nbytes / t / 1e9, "stream_us": stream_s * 1e6,
                       "of_stream": stream_s / t, "of_bandwidth": nbytes / t / bw, "err": err,
                       "bandwidth_gb_s": bw / 1e9}
                results.append(row)
                vlabel = vname + ("" if epi == "plain" else "+" + epi)
                print(f"{label:20s} {pname} {vlabel:13s}  {row['us']:7.1f} us {row['gb_s']:6.0f} GB/s  "
                      f"{row['of_stream']:4.0%} of the stream chain ({row['stream_us']:.1f} us), "
                      f"{row['of_bandwidth']:4.0%} of the bandwidth  err {err:.1e}", flush=True)
        for b in {r[0] for c in wbufs for r in c}:
            b.destroy()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"adapter": adapter_name(adapter), "driver": adapter.info.get("description", ""), "clock": args.clock,
                       "stream_read_gb_s": bw / 1e9, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
