"""The prefill matmul (wgsl/matmul_tiled.wgsl) against numpy, for every token tile, weight format and
epilogue. The model tests (test_reference.py) run tiny models whose matrices are too small for the
lowering to pick the 128-token tile, so each tile is pinned here on shapes that end in partial tiles
of tokens and rows and take several groups of 32 along K. "wide" and "dbuf" are the 128-token tile
holding whole groups (32 KiB of workgroup memory: lavapipe offers 32 KiB and the session's device
requests it).

"half" cases run the f16 arithmetic (matmul_tiled `half`: the f16 profile's ruleh, tile32h, ...
prefill variants) on f16 activations, every tile and staging and weight format.

Tolerance: sums of 96 f32 products in a different order than numpy's, relative to the largest
output: 1e-5 (f32 activations); f16 activations round x and y to 11 bits: 2e-3; f16 arithmetic also
rounds each weight, product and sum of a group's 32 products to 11 bits: 4e-3.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from webllm import kernels as K
from webllm.quantization.formats import dequantize, pack_float, pack_q4a, pack_q8s, quantize_q4s

KDIM, N_ROWS = 96, 200  # 3 groups; 200 rows = one full and one partial tile of 128 (or 64 with pair)


def weights(fmt: str, rows: int, rng) -> object:
    w = rng.standard_normal((rows, KDIM), dtype=np.float32) * 0.1
    if fmt in ("f32", "f16"):
        return pack_float(w, fmt)
    if fmt in ("q4s", "q4s-f32"):
        return quantize_q4s(w, "f32" if fmt == "q4s-f32" else "f16")
    g = KDIM // 32
    scale = (rng.random((rows, g)) * 0.02 + 0.001).astype(np.float16)
    if fmt == "q4a":
        return pack_q4a(rng.integers(0, 16, (rows, KDIM)), scale, (-(rng.random((rows, g)) * 0.1)).astype(np.float16))
    return pack_q8s(rng.integers(-128, 128, (rows, KDIM)), scale)


def run_kernel(gpu, kern: K.Kernel, buffers: list[np.ndarray], n_tokens: int, grid: tuple[int, int, int],
               out: int, past: int = 0) -> np.ndarray:
    import wgpu

    from webllm.runtime.device import create_shader_module

    _, dev = gpu
    BU = wgpu.BufferUsage
    size = K.uniform_table()["size"]  # n_tokens, past first; the sampling fields do not matter here
    uni = dev.create_buffer_with_data(data=struct.pack("<II", n_tokens, past) + bytes(size - 8), usage=BU.UNIFORM)
    bufs = [uni] + [dev.create_buffer_with_data(data=np.ascontiguousarray(b).tobytes() + bytes(16),
                                                usage=BU.STORAGE | BU.COPY_SRC) for b in buffers]
    bgl = dev.create_bind_group_layout(entries=[
        {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": t}} for i, t in enumerate(kern.bindings)])
    pipe = dev.create_compute_pipeline(layout=dev.create_pipeline_layout(bind_group_layouts=[bgl]),
                                       compute={"module": create_shader_module(dev, kern.source), "entry_point": "main"})
    bg = dev.create_bind_group(layout=bgl, entries=[
        {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}} for i, b in enumerate(bufs)])
    enc = dev.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipe)
    cp.set_bind_group(0, bg)
    cp.dispatch_workgroups(*grid)
    cp.end()
    dev.queue.submit([enc.finish()])
    return bufs[out]


CASES = [(tokens, fmt, "plain") for tokens in (32, 64, 128) for fmt in ("q4s", "q4s-f32", "q4a", "q8s", "f16", "f32")]
CASES += [(tokens, "q4s", epi) for tokens in (32, 128) for epi in ("pair+bias", "add+bias")]
CASES += [(128, "q4a", "pair"), (128, "f16", "add")]
CASES += [(staging, fmt, "plain") for staging in ("wide", "dbuf") for fmt in ("q4s", "q4s-f32", "q4a", "q8s", "f16", "f32")]
CASES += [(staging, "q4s", epi) for staging in ("wide", "dbuf") for epi in ("pair+bias", "add+bias")]
CASES += [(tokens, fmt, "half") for tokens in (32, 64, 128, "wide", "dbuf") for fmt in ("q4s", "q4a", "q8s", "f16", "f32")]
CASES += [(tokens, "q4s", "half+" + epi) for tokens in (32, 128, "wide") for epi in ("pair+bias", "add+bias")]


@pytest.mark.parametrize("n_tokens", [133, 5])
@pytest.mark.parametrize("tokens,fmt,epilogue", CASES)
def test_matmul_tiled_matches_numpy(gpu, tokens, fmt, epilogue, n_tokens):
    _, dev = gpu
    staging = tokens if tokens in K.MATMUL_STAGINGS else "halves"
    tokens = 128 if staging != "halves" else tokens
    rng = np.random.default_rng(tokens + len(fmt) + len(epilogue) + len(staging))
    pair, add, bias = "pair" in epilogue, "add" in epilogue, "bias" in epilogue
    rows = 2 * N_ROWS if pair else N_ROWS
    w = weights(fmt, rows, rng)
    half = epilogue.startswith("half")
    act = "f16" if fmt == "f16" or half else "f32"  # the f16 profile once, on the f16 weights (and with half)
    prof = K.Profile(act)
    if act == "f16" and "shader-f16" not in dev.features:
        pytest.skip("no shader-f16")
    x = rng.standard_normal((n_tokens, KDIM), dtype=np.float32).astype(np.float16 if act == "f16" else np.float32)
    b = rng.standard_normal(rows, dtype=np.float32)
    y0 = rng.standard_normal((n_tokens, N_ROWS), dtype=np.float32)
    ref = x.astype(np.float32) @ dequantize(w).T + (b if bias else 0)
    if pair:
        g, u = ref[:, :N_ROWS], ref[:, N_ROWS:]
        ref = g / (1 + np.exp(-g)) * u
    if add:
        ref = y0 + ref
    kern = K.matmul_tiled(prof, w, n_rows=N_ROWS, n_out=N_ROWS, row0=0, x_type=act, y_type="f32", pair=pair, add=add,
                          bias=bias, tokens=tokens, staging=staging, half=half)
    assert kern.limits == ((("maxComputeWorkgroupStorageSize", 32768),) if staging != "halves" and not half else ())
    arrays = [w.arrays[a] for a in K.WEIGHT_ARRAYS[w.format]] + ([b] if bias else [])
    grid = (-(-N_ROWS // K.matmul_tile_rows(pair)), -(-n_tokens // tokens), 1)
    ybuf = run_kernel(gpu, kern, [x, y0 if add else np.zeros_like(y0)] + arrays, n_tokens, grid, 2)
    got = np.frombuffer(dev.queue.read_buffer(ybuf), np.float32)[: n_tokens * N_ROWS].reshape(n_tokens, N_ROWS)
    tol = 4e-3 if half else 2e-3 if act == "f16" else 1e-5
    assert np.abs(got - ref).max() <= tol * np.abs(ref).max()


def test_f16_arithmetic_needs_the_f16_profile():
    w = weights("q4s", 64, np.random.default_rng(0))
    with pytest.raises(ValueError, match="f16 arithmetic needs the f16 profile"):
        K.matmul_tiled(K.Profile("f32"), w, n_rows=64, n_out=64, row0=0, x_type="f32", y_type="f32", half=True)
