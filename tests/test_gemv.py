"""The one-token matmul (wgsl/gemv.wgsl) against numpy, with its two reductions: the workgroup-memory
tree and the subgroup one (gemv_reduce_subgroups.wgsl). The subgroup reduction has two paths, chosen
by the adapter's subgroup size P against the L threads of a row set: P <= L (subgroupAdd, then L / P
partials per row set) and P > L (a butterfly that must not cross into the next row set). Lavapipe's
P is 8 (SwiftShader's 4): L = 4 (lanes 1) takes the second path, L = 16, 32 and 128 the first, so
both run here whatever the model tests pick. Where P equals the kernel's P_FOLD (32) it takes the same
code with P a constant; the `folded` cases render P_FOLD as this adapter's P (subgroup_size_of) so
that this branch runs here too. Each case checks every epilogue sum the reduction
carries: the rows (plain), the SwiGLU pair's second half (pair), the RMSNorm's sum of squares (norm).

Tolerance: f32 sums of up to 4,096 products in another order than numpy's, relative to the largest
output: 1e-5.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_matmul_tiled import run_kernel

from webllm import kernels as K
from webllm.quantization.formats import dequantize, pack_q4a, quantize_q4s

N_ROWS = 200  # not a multiple of any workgroup's rows: the last workgroup is partial
EPS = 1e-5

# (K, lanes, threads) -> L threads per row set (kernels.gemv_threads): 1 -> 4, 4 -> 16, 32 -> 32 (K 1280)
# or 128 (K 4096); with 512 threads the pair's 2-row sets (f16 x) take 128 too: 512 a workgroup
SHAPES = [(1280, 1, 256), (1280, 4, 256), (1280, 32, 256), (4096, 32, 256), (4096, 32, 512)]


def has_subgroups(dev) -> bool:
    from webllm.runtime.device import device_features

    return "subgroups" in device_features(dev)


def subgroup_size_of(gpu) -> int:
    """The subgroup size a one-workgroup kernel of 256 threads runs with on this device."""
    src = """enable subgroups;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sg: u32) { out[lid] = sg; }"""
    kern = K.Kernel("probe", src, (K.UNIFORM, K.WRITE), ("subgroups",))
    out = run_kernel(gpu, kern, [np.zeros(256, np.uint32)], 0, (1, 1, 1), 1)
    sizes = np.frombuffer(gpu[1].queue.read_buffer(out), np.uint32)[:256]
    assert len(set(sizes)) == 1, sizes
    return int(sizes[0])


def fold_for(gpu, kern):
    """`kern` with gemv_reduce_subgroups.wgsl's P_FOLD set to this adapter's subgroup size."""
    old = "const P_FOLD: u32 = 32u;"
    assert old in kern.source
    return dataclasses.replace(kern, source=kern.source.replace(old, f"const P_FOLD: u32 = {subgroup_size_of(gpu)}u;"))


@pytest.mark.parametrize("x_type", ["f32", "f16"])
@pytest.mark.parametrize("subgroups", [False, True, "folded"], ids=["tree", "subgroups", "folded"])
@pytest.mark.parametrize("epilogue", ["plain", "pair+bias", "norm"])
@pytest.mark.parametrize("kdim,lanes,threads", SHAPES)
def test_gemv_matches_numpy(gpu, kdim, lanes, threads, epilogue, subgroups, x_type):
    """Both ways a thread walks a group: with f32 x the rows' words first and x a word's worth at a
    time (gemv_rows_q4s.wgsl), with f16 x the group of x first (load_x); and with the SwiGLU pair, 2
    rows a thread (K 1,280: x of at most 8 KiB) and 4 (K 4,096 in f32)."""
    _, dev = gpu
    if subgroups and not has_subgroups(dev):
        pytest.skip("no subgroups")
    if x_type == "f16" and "shader-f16" not in dev.features:
        pytest.skip("no shader-f16")
    rng = np.random.default_rng(kdim + lanes + len(epilogue))
    pair, bias, norm = "pair" in epilogue, "bias" in epilogue, epilogue == "norm"
    rows = 2 * N_ROWS if pair else N_ROWS
    w = quantize_q4s(rng.standard_normal((rows, kdim), dtype=np.float32) * 0.1, "f16")
    xdt = np.float16 if x_type == "f16" else np.float32
    x = rng.standard_normal(kdim, dtype=np.float32).astype(xdt).astype(np.float32)  # as the kernel reads it
    b = rng.standard_normal(rows, dtype=np.float32)
    nw = rng.random(kdim, dtype=np.float32) + 0.5
    xin = x * nw / np.sqrt(np.mean(x.astype(np.float64) ** 2) + EPS) if norm else x
    ref = dequantize(w).astype(np.float64) @ xin + (b if bias else 0)
    if pair:
        g, u = ref[:N_ROWS], ref[N_ROWS:]
        ref = g / (1 + np.exp(-g)) * u
    kern = K.gemv(K.Profile(x_type), w, n_rows=N_ROWS, row0=0, x_type=x_type, y_type="f32", lanes=lanes,
                  pair=pair, bias=bias, norm_eps=EPS if norm else None, subgroups=bool(subgroups), threads=threads)
    wide = threads == 512 and pair and x_type == "f16"
    assert dict(kern.limits).get("maxComputeInvocationsPerWorkgroup", 256) == (512 if wide else 256)
    assert ("enable subgroups;" in kern.source) == bool(subgroups)
    assert kern.features == (("subgroups",) if subgroups else ())
    if subgroups == "folded":
        kern = fold_for(gpu, kern)
    assert ("const ROWS_FIRST: bool = true;" in kern.source) == (x_type == "f32")
    arrays = [w.arrays[a] for a in K.WEIGHT_ARRAYS[w.format]] + ([b] if bias else []) + ([nw] if norm else [])
    grid = (-(-N_ROWS // (256 // lanes)), 1, 1)
    ybuf = run_kernel(gpu, kern, [x.astype(xdt), np.zeros(N_ROWS, np.float32)] + arrays, 1, grid, 2)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float32)[:N_ROWS]
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


# (heads, head_dim): K = 512 and 1,024 (x staged at once: a thread combines 1 vec4 of it at once, and 2
# or 4: gemv_combine_in.wgsl CV), 4,032 (two staged ranges; head_dim 96, so a group of 32 inputs may
# straddle two heads), 8,192 (four ranges), 12,288 (not staged: each row set combines)
COMBINE_SHAPES = [(4, 128), (8, 128), (42, 96), (64, 128), (96, 128)]


def q8_round(x: np.ndarray) -> np.ndarray:
    """x as gemv's int8 blocks of 8 give it back: d q, d = max|block| / 127 (gemv_q8_out.wgsl)."""
    b = x.astype(np.float32).reshape(-1, 8)
    amax = np.abs(b).max(1, keepdims=True)
    inv = np.where(amax > 0, np.float32(127) / np.maximum(amax, 1e-30), 0).astype(np.float32)
    return (np.round(b * inv) * (amax / np.float32(127))).reshape(x.shape)


@pytest.mark.parametrize("q8", [False, True], ids=["float", "int8"])
@pytest.mark.parametrize("past,used", [(10, 1), (200, 4), (330, 6)])
@pytest.mark.parametrize("lanes,threads", [(16, 256), (32, 256), (16, 512)])
@pytest.mark.parametrize("heads,hd", COMBINE_SHAPES)
def test_combine_in_matches_numpy(gpu, heads, hd, lanes, threads, past, used, q8):
    """The o matmul's x combined from decode attention's split partials (gemv.wgsl COMBINE_IN) in f32,
    staged in workgroup memory in as many ranges as K needs (K.combine_staged), or not at all. The
    kernel is compiled for 8 splits; `past` + 1 positions use `used` of them (one per 64 positions,
    attention_splits.wgsl), walked four at a time: the partials of the splits beyond are ignored.
    With 512 threads (an 8B's o in the "w" decode variants) a workgroup of 16 rows takes 512: with the
    int8 staging 8 row sets of 2 rows, 64 threads each from K 2,048 on; in float 4 sets of 4 rows, 128
    threads each from K 4,096 on."""
    _, dev = gpu
    kdim, splits = heads * hd, 8
    assert K.combine_staged(kdim, 4) == {512: 1, 1024: 1, 4032: 2, 8192: 4, 12288: 0}[kdim]
    # int8 staging (q8_staged): 2 bytes an input, so 12,288 inputs stage in 3 ranges
    rng = np.random.default_rng(kdim + lanes)
    w = quantize_q4s(rng.standard_normal((N_ROWS, kdim), dtype=np.float32) * 0.1, "f16")
    part_o = rng.standard_normal((splits, kdim), dtype=np.float32)
    lse = rng.standard_normal((splits, heads), dtype=np.float32) * 3
    wz = np.exp(lse[:used] - lse[:used].max(0))
    x = (part_o[:used].reshape(used, heads, hd) * wz[:, :, None]).sum(0) / wz.sum(0)[:, None]
    if q8:  # within float rounding of a half step an input may round the other way on the GPU: a 1e-3 margin
        x = q8_round(x.reshape(-1))
    ref = dequantize(w).astype(np.float64) @ x.reshape(-1)
    kern = K.gemv(K.Profile("f32"), w, n_rows=N_ROWS, row0=0, x_type="f32", y_type="f32", lanes=lanes,
                  combine_in=dict(nq=heads, hd=hd, window=0, splits=splits), q8_staged=q8, threads=threads)
    assert ("const Q8_STAGED: bool = true;" in kern.source) == q8
    wide = threads == 512 and kdim >= (2048 if q8 else 4096)
    assert dict(kern.limits).get("maxComputeInvocationsPerWorkgroup", 256) == (512 if wide else 256)
    arrays = [w.arrays[a] for a in K.WEIGHT_ARRAYS[w.format]]
    grid = (-(-N_ROWS // (256 // lanes)), 1, 1)
    ybuf = run_kernel(gpu, kern, [part_o, np.zeros(N_ROWS, np.float32)] + arrays + [lse], 1, grid, 2, past=past)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float32)[:N_ROWS]
    assert np.abs(got - ref).max() <= (1e-3 if q8 else 1e-5) * np.abs(ref).max()


@pytest.mark.parametrize("nssq", [5, 600])
@pytest.mark.parametrize("kdim,lanes", [(1280, 32), (4096, 32), (1280, 4)])
def test_norm_in_matches_numpy(gpu, kdim, lanes, nssq):
    """NORM_IN (the RMSNorm's pieces made by the matmul before): x is already x * norm weight, and the
    sum of squares is the sum of `nssq` partials, which each row set adds up eight loads at a time:
    fewer partials than its threads, and several rounds of eight (600 against 32 threads x 8)."""
    _, dev = gpu
    rng = np.random.default_rng(kdim + lanes + nssq)
    w = quantize_q4s(rng.standard_normal((N_ROWS, kdim), dtype=np.float32) * 0.1, "f16")
    x = rng.standard_normal(kdim, dtype=np.float32)
    ssq = rng.random(nssq, dtype=np.float32) * 10
    ref = dequantize(w).astype(np.float64) @ x / np.sqrt(ssq.astype(np.float64).sum() / kdim + EPS)
    kern = K.gemv(K.Profile("f32"), w, n_rows=N_ROWS, row0=0, x_type="f32", y_type="f32", lanes=lanes,
                  norm_in=nssq, eps=EPS)
    arrays = [w.arrays[a] for a in K.WEIGHT_ARRAYS[w.format]]
    grid = (-(-N_ROWS // (256 // lanes)), 1, 1)
    ybuf = run_kernel(gpu, kern, [x, np.zeros(N_ROWS, np.float32)] + arrays + [ssq], 1, grid, 2)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float32)[:N_ROWS]
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("reader", ["q4s", "q4a"])
@pytest.mark.parametrize("subgroups", [False, True], ids=["tree", "subgroups"])
@pytest.mark.parametrize("lanes,threads", [(4, 256), (16, 256), (32, 256), (16, 512)])
@pytest.mark.parametrize("producer", ["pair", "norm_out"])
def test_q8_chain_matches_numpy(gpu, producer, lanes, threads, subgroups, reader):
    """Int8 x (gemv_q8_out.wgsl, gemv_q8_in.wgsl): a matmul writes its output as int8 blocks of 8 (the
    SwiGLU product, or the next norm's h * weight beside the residual add), each within half a step of
    its value, and the next matmul's integer dot products give dequantize(W) @ (d q) to f32 rounding,
    with symmetric (q4s) and asymmetric (q4a: GGUF Q4_1, whose mins take the blocks' sums) weights.
    288 outputs: whole workgroups with 8 and 16 rows, a partial last one with 64 (lanes 4). With 512
    threads (the "w" decode variants; Llama-3.1-8B's down: 16 rows a workgroup, lower.residual_lanes)
    4,096 inputs to 2,048 outputs to 200, so that both matmuls take 512 threads a workgroup."""
    _, dev = gpu
    if subgroups and not has_subgroups(dev):
        pytest.skip("no subgroups")
    rng = np.random.default_rng(lanes + len(producer))
    k1, n1, n2 = (4096, 2048, 200) if threads == 512 else (1280, 288, 200)
    pair = producer == "pair"
    w1 = quantize_q4s(rng.standard_normal((2 * n1 if pair else n1, k1), dtype=np.float32) * 0.1, "f16")
    x = rng.standard_normal(k1, dtype=np.float32)
    ref1 = dequantize(w1).astype(np.float64) @ x
    arrays1 = [w1.arrays[a] for a in K.WEIGHT_ARRAYS[w1.format]]
    kw = dict(n_rows=n1, row0=0, x_type="f32", lanes=lanes, subgroups=subgroups, q8_out=n1, threads=threads)
    grid1 = (-(-n1 // (256 // lanes)), 1, 1)
    if pair:
        g, u = ref1[:n1], ref1[n1:]
        v = g / (1 + np.exp(-g)) * u
        kern1 = K.gemv(K.Profile("f32"), w1, y_type="f32", pair=True, **kw)
        out = run_kernel(gpu, kern1, [x, np.zeros(n1, np.float32)] + arrays1, 1, grid1, 2)
    else:
        h0 = rng.standard_normal(n1, dtype=np.float32)
        nw = rng.random(n1, dtype=np.float32) + 0.5
        v = (h0 + ref1) * nw
        kern1 = K.gemv(K.Profile("f32"), w1, y_type="f32", add=True, norm_out_offset=0, **kw)
        out = run_kernel(gpu, kern1, [x, h0] + arrays1 + [nw, np.zeros(2 * n1, np.float32), np.zeros(grid1[0], np.float32)],
                         1, grid1, 4 + len(arrays1))
    assert "dot4I8Packed" not in kern1.source and "pack4xI8" in kern1.source
    assert dict(kern1.limits).get("maxComputeInvocationsPerWorkgroup", 256) == threads
    words = np.frombuffer(dev.queue.read_buffer(out), np.uint32)
    q, d, c = K.q8_x_values(words, n1)
    blocks = np.abs(v.reshape(-1, 8)).max(1)
    assert np.allclose(d, blocks / 127, rtol=1e-4) and np.abs(q).max() <= 127
    deq = q * np.repeat(d, 8)
    assert np.abs(deq - v).max() <= 0.5 * d.max() * 1.001
    assert np.allclose(c, 8 * d * q.reshape(-1, 8).sum(1), rtol=1e-5, atol=1e-6)
    # the reader: integer dot products over the same bytes
    if reader == "q4s":
        w2 = quantize_q4s(rng.standard_normal((n2, n1), dtype=np.float32) * 0.1, "f16")
    else:
        w2 = pack_q4a(rng.integers(0, 16, (n2, n1)), rng.uniform(0.001, 0.02, (n2, n1 // 32)),
                      rng.uniform(-0.1, 0.0, (n2, n1 // 32)))
    ref2 = dequantize(w2).astype(np.float64) @ deq
    kern2 = K.gemv(K.Profile("f32"), w2, n_rows=n2, row0=0, x_type="f32", y_type="f32", lanes=lanes, subgroups=subgroups,
                   q8_in=True, threads=threads)
    assert "dot4I8Packed" in kern2.source
    assert dict(kern2.limits).get("maxComputeInvocationsPerWorkgroup", 256) == threads
    arrays2 = [w2.arrays[a] for a in K.WEIGHT_ARRAYS[w2.format]]
    ybuf = run_kernel(gpu, kern2, [words[: n1 // 2], np.zeros(n2, np.float32)] + arrays2, 1, (-(-n2 // (256 // lanes)), 1, 1), 2)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float32)[:n2]
    assert np.abs(got - ref2).max() <= 1e-5 * np.abs(ref2).max()


@pytest.mark.parametrize("reader", ["q4s", "q4a"])
@pytest.mark.parametrize("subgroups", [False, True], ids=["tree", "subgroups"])
def test_q8_in_long_rows_in_wide_workgroups(gpu, subgroups, reader):
    """Int8 x of more than 8,192 inputs in workgroups of 512 threads (Llama-3.1-8B's down in the "w"
    decode variants): 4 rows a row set (kernels.gemv_threads), 16 rows a workgroup, 128 threads a row
    set whose 264 groups leave a tail of 8; against numpy."""
    _, dev = gpu
    if subgroups and not has_subgroups(dev):
        pytest.skip("no subgroups")
    rng = np.random.default_rng(8448)
    k, n = 8448, 200
    assert K.gemv_threads(k, n, 16, pair=False, int8_x=True, x_bytes=2, threads=512) == (4, 128)
    assert K.gemv_threads(k, n, 16, pair=False, int8_x=True, x_bytes=2, threads=256) == (2, 32)
    words, xd = K.q8_x_blocks(rng.standard_normal(k))
    q, d, c = K.q8_x_values(words, k)  # the encoder against the decoder the chain test checks the GPU's blocks with
    assert np.abs(q).max() == 127 and np.allclose(q * np.repeat(d, 8), xd, rtol=1e-6)
    assert np.allclose(c, 8 * d * q.reshape(-1, 8).sum(1), rtol=1e-6)
    if reader == "q4s":
        w = quantize_q4s(rng.standard_normal((n, k), dtype=np.float32) * 0.1, "f16")
    else:
        w = pack_q4a(rng.integers(0, 16, (n, k)), rng.uniform(0.001, 0.02, (n, k // 32)), rng.uniform(-0.1, 0.0, (n, k // 32)))
    ref = dequantize(w).astype(np.float64) @ xd
    kern = K.gemv(K.Profile("f32"), w, n_rows=n, row0=0, x_type="f32", y_type="f32", lanes=16, subgroups=subgroups,
                  q8_in=True, threads=512)
    assert "const R: u32 = 4u;" in kern.source and dict(kern.limits)["maxComputeInvocationsPerWorkgroup"] == 512
    arrays = [w.arrays[a] for a in K.WEIGHT_ARRAYS[w.format]]
    ybuf = run_kernel(gpu, kern, [words, np.zeros(n, np.float32)] + arrays, 1, (-(-n // 16), 1, 1), 2)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float32)[:n]
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
