"""The prefill matmul with integer dot products (wgsl/matmul_q8.wgsl) and its input quantizer
(wgsl/quant_q8.wgsl) against numpy.

matmul_q8 is given x already as int8 blocks (packed here the way quant_q8 packs them for the weights'
format), so its sums are exact integers times the blocks' scales (q4a: plus its min times the block's
d sum q): 1e-5 of the largest output covers the f32 totals' rounding. Every weight format it takes
(q4s with f16 and f32 scales, q4a, q8s), every epilogue but rope (the reference tests run that one).
quant_q8 against numpy's rounding of the same f32 arithmetic: the GPU's 127 / max may differ from
numpy's by an ulp (WGSL allows 2.5 ulp for a division), so an input within that of a half step may
round the other way: at most one step, on a few inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_matmul_tiled import run_kernel, weights

from webllm import kernels as K
from webllm.quantization.formats import dequantize

KDIM, N_ROWS = 96, 200  # 3 blocks (an odd count: both buffers, and the last block staged alone); 200 rows


def quantize_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [T, K] -> (q int8 [T, K], (d, d sum q) f32 [T, K/32, 2]) as quant_q8 computes them."""
    v = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    amax = np.abs(v).max(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127.0) / amax, np.float32(0)).astype(np.float32)
    q = np.round(v * inv).astype(np.int8)
    d = (amax[..., 0] / np.float32(127.0)).astype(np.float32)
    return q.reshape(x.shape), np.stack([d, d * q.astype(np.int32).sum(-1).astype(np.float32)], -1)


def pack_blocks(q: np.ndarray, nibbles: bool = True) -> np.ndarray:
    """int8 [T, K] -> the q8x words: with `nibbles`, per block of 32, word 2j = inputs 8j, 8j+2, 8j+4,
    8j+6 (lowest byte first), word 2j+1 = 8j+1, 8j+3, 8j+5, 8j+7; else in order."""
    t, k = q.shape
    if not nibbles:
        return np.ascontiguousarray(q).view(np.uint32).reshape(t, -1)
    b = q.reshape(t, k // 8, 8).view(np.uint8)
    order = np.stack([b[..., 0::2], b[..., 1::2]], axis=2)  # [T, K/8, 2, 4]
    return np.ascontiguousarray(order).reshape(t, -1).view(np.uint32)


CASES = [(fmt, epi, yt) for fmt in ("q4s", "q4s-f32") for epi in ("plain", "pair+bias", "add+bias") for yt in ("f32", "f16")]
CASES += [(fmt, epi, "f32") for fmt in ("q4a", "q8s") for epi in ("plain", "pair+bias", "add+bias")] + [("q4a", "plain", "f16")]


@pytest.mark.parametrize("n_tokens", [133, 5])
@pytest.mark.parametrize("fmt,epilogue,yt", CASES)
def test_matmul_q8_matches_numpy(gpu, fmt, epilogue, yt, n_tokens):
    _, dev = gpu
    if yt == "f16" and "shader-f16" not in dev.features:
        pytest.skip("no shader-f16")
    rng = np.random.default_rng(len(fmt) + len(epilogue) + len(yt) + n_tokens)
    pair, add, bias = "pair" in epilogue, "add" in epilogue, "bias" in epilogue
    rows = 2 * N_ROWS if pair else N_ROWS
    w = weights(fmt, rows, rng)
    x = rng.standard_normal((n_tokens, KDIM), dtype=np.float32)
    x[1, 32:64] = 0.0  # a block of zeros: d = 0
    q, d = quantize_blocks(x)
    b = rng.standard_normal(rows, dtype=np.float32)
    y0 = rng.standard_normal((n_tokens, N_ROWS), dtype=np.float32).astype(np.float16 if yt == "f16" else np.float32)
    xq = (q.reshape(n_tokens, -1, 32) * d[..., :1]).reshape(n_tokens, KDIM).astype(np.float64)
    ref = xq @ dequantize(w).T.astype(np.float64) + (b if bias else 0)
    if pair:
        g, u = ref[:, :N_ROWS], ref[:, N_ROWS:]
        ref = g / (1 + np.exp(-g)) * u
    if add:
        ref = y0.astype(np.float64) + ref
    kern = K.matmul_q8(K.Profile(yt), w, n_rows=N_ROWS, n_out=N_ROWS, row0=0, y_type=yt, pair=pair, add=add, bias=bias)
    assert kern.limits == ()
    arrays = [w.arrays[a] for a in K.WEIGHT_ARRAYS[w.format]] + ([b] if bias else [])
    grid = (-(-N_ROWS // K.matmul_tile_rows(pair)), -(-n_tokens // K.MATMUL_Q8_TOKENS), 1)
    xw = pack_blocks(q, K.quant_q8_nibbles(w.format))
    ybuf = run_kernel(gpu, kern, [xw, y0 if add else np.zeros_like(y0)] + arrays + [d], n_tokens, grid, 2)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float16 if yt == "f16" else np.float32)
    got = got[: n_tokens * N_ROWS].reshape(n_tokens, N_ROWS).astype(np.float64)
    tol = 2e-3 if yt == "f16" else 1e-5
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("xt,nibbles", [("f32", True), ("f16", True), ("f32", False)])
def test_quant_q8_matches_numpy(gpu, xt, nibbles):
    _, dev = gpu
    if xt == "f16" and "shader-f16" not in dev.features:
        pytest.skip("no shader-f16")
    n_tokens, k = 37, 4096 + 32 * 70  # 198 blocks a token: 4 workgroups across, the last partly idle
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((n_tokens, k), dtype=np.float32) * rng.random((n_tokens, 1), dtype=np.float32) * 10)
    x = x.astype(np.float16 if xt == "f16" else np.float32)
    x[2, 64:96] = 0.0
    q, d = quantize_blocks(x)
    kern = K.quant_q8(K.Profile(xt), k=k, x_type=xt, nibbles=nibbles)
    kb = k // 32
    q8x = np.zeros(n_tokens * k // 4 + 4, np.uint32)
    q8d = np.full(2 * n_tokens * kb + 4, -1.0, np.float32)
    grid = (-(-kb // 64), -(-n_tokens // 4), 1)
    bufs = [x, q8x, q8d]
    out_x = run_kernel(gpu, kern, bufs, n_tokens, grid, 2)
    got_q = np.frombuffer(dev.queue.read_buffer(out_x), np.uint32)[: n_tokens * k // 4].reshape(n_tokens, -1)
    # unpack the words back to inputs in order
    if nibbles:
        by = got_q.view(np.uint8).reshape(n_tokens, k // 8, 2, 4).view(np.int8)
        got = np.empty((n_tokens, k // 8, 8), np.int8)
        got[..., 0::2], got[..., 1::2] = by[:, :, 0], by[:, :, 1]
    else:
        got = got_q.view(np.int8)
    diff = np.abs(got.reshape(n_tokens, k).astype(np.int32) - q.astype(np.int32))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert np.array_equal(pack_blocks(q, nibbles).reshape(n_tokens, -1)[diff.reshape(n_tokens, -1, 4).max(-1) == 0],
                          got_q[diff.reshape(n_tokens, -1, 4).max(-1) == 0])
    # the scales are written to the buffer after q8x's binding: read them through a run of their own
    out_d = run_kernel(gpu, kern, bufs, n_tokens, grid, 3)
    got_d = np.frombuffer(dev.queue.read_buffer(out_d), np.float32)[: 2 * n_tokens * kb].reshape(n_tokens, kb, 2)
    np.testing.assert_allclose(got_d[..., 0], d[..., 0], rtol=1e-6, atol=0)
    # d sum q: a q off by one step moves the sum by one d
    exact = diff.reshape(n_tokens, kb, 32).max(-1) == 0
    np.testing.assert_allclose(got_d[..., 1][exact], d[..., 1][exact], rtol=1e-6, atol=1e-30)
    assert np.all(np.abs(got_d[..., 1] - d[..., 1]) <= d[..., 0] * 32 + 1e-30)
