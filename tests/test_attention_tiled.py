"""The prefill attention (wgsl/attention_tiled.wgsl) against numpy, on shapes the tiny models of
test_reference.py do not reach: head_dim 16 to 256, 1 to 40 query heads per KV head (3: tiles that
leave row slots empty), blocks of 4 to 32 positions, 1 to 4 rows a thread, 4 or 8 threads a row
group, K/V staged in f32 or the activation type, a cached past, a sliding window, and token counts
that end in a partial tile and a partial block.

Tolerance, relative to the largest output: f32 activations 1e-5 (sums in another order than numpy's);
f16 activations round q, K, V and the output to 11 bits: 4e-3.
"""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from tiny_models import kv_cache_rows

from webllm import kernels as K


def reference(q, k, v, *, nq, nkv, hd, past, window, scale):
    """out[t, h] = softmax over cache positions j <= past + t (and > past + t - window) of q.k * scale, times v."""
    T = q.shape[0]
    g = nq // nkv
    out = np.zeros((T, nq, hd), np.float64)
    qh = q.reshape(T, nq, hd).astype(np.float64)
    for t in range(T):
        p = past + t
        lo = max(0, p + 1 - window) if window else 0
        for h in range(nq):
            kk = k[lo:p + 1, h // g].astype(np.float64)
            s = kk @ qh[t, h] * scale
            w = np.exp(s - s.max())
            out[t, h] = (w / w.sum()) @ v[lo:p + 1, h // g].astype(np.float64)
    return out.reshape(T, nq * hd)


def run_attention(dev, kern, q, k, v, n_tokens, past, grid_x, per_y):
    import wgpu

    from webllm.runtime.device import create_shader_module

    BU = wgpu.BufferUsage
    size = K.uniform_table()["size"]
    uni = dev.create_buffer_with_data(data=struct.pack("<II", n_tokens, past) + bytes(size - 8), usage=BU.UNIFORM)
    bufs = [uni] + [dev.create_buffer_with_data(data=np.ascontiguousarray(b).tobytes(), usage=BU.STORAGE)
                    for b in (q, k, v)]
    bufs.append(dev.create_buffer(size=q.nbytes, usage=BU.STORAGE | BU.COPY_SRC))
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
    cp.dispatch_workgroups(grid_x, -(-n_tokens // per_y), 1)
    cp.end()
    dev.queue.submit([enc.finish()])
    return np.frombuffer(dev.queue.read_buffer(bufs[-1]), q.dtype).reshape(q.shape).astype(np.float64)


# (nq, nkv, hd, n_tokens, past, window, profile, options)
CASES = [
    (4, 4, 32, 45, 0, 0, "f32", {}),                             # G 1: 32-token tiles
    (8, 2, 64, 37, 5, 0, "f32", {}),                             # G 4, a past, partial tile and block
    (8, 2, 64, 37, 5, 0, "f16", {"stage": "act"}),               # K/V staged as f16: blocks of 32
    (16, 2, 128, 21, 3, 0, "f16", {}),                           # G 8, head_dim 128: 8 threads a row group
    (16, 2, 128, 21, 3, 0, "f32", {"rows_per_thread": 1, "split": 4}),
    (4, 1, 256, 13, 40, 0, "f32", {}),                           # head_dim 256: blocks of 4
    (4, 1, 256, 13, 40, 0, "f16", {"stage": "act", "rows_per_thread": 4}),
    (6, 2, 32, 50, 7, 16, "f32", {}),                            # G 3 (2 of 32 slots idle), a window
    (6, 2, 32, 50, 7, 16, "f16", {"split": 8, "rows_per_thread": 1}),
    (8, 2, 64, 70, 30, 24, "f16", {"rows_per_thread": 4, "split": 8}),  # window across blocks, one warp
    (40, 1, 16, 9, 2, 0, "f32", {}),                             # G 40: 64 slots, one token a tile
    (32, 8, 64, 33, 0, 0, "f32", {"block": 8}),                  # Llama-3.2-1B's heads
    (48, 3, 48, 20, 0, 0, "f16", {}),                            # head_dim 48: 3 vec4 a share
]


@pytest.mark.parametrize("nq,nkv,hd,n_tokens,past,window,profile,options", CASES)
def test_attention_tiled_matches_numpy(gpu, nq, nkv, hd, n_tokens, past, window, profile, options):
    _, dev = gpu
    if profile == "f16" and "shader-f16" not in dev.features:
        pytest.skip("no shader-f16")
    dt = np.float16 if profile == "f16" else np.float32
    rng = np.random.default_rng(nq * 1000 + hd + n_tokens)
    cap = past + n_tokens + 3  # capacity beyond the last position: never read
    q = (rng.standard_normal((n_tokens, nq * hd)) * 1.5).astype(dt)
    k = rng.standard_normal((cap, nkv, hd)).astype(np.float16)  # the cache is f16 in both profiles
    v = rng.standard_normal((cap, nkv, hd)).astype(np.float16)
    scale = hd ** -0.5
    kern = K.attention_tiled(K.Profile(profile), nq=nq, nkv=nkv, hd=hd, window=window, scale=scale, **options)
    got = run_attention(dev, kern, q, kv_cache_rows(k), kv_cache_rows(v), n_tokens, past, nkv,
                        K.attention_tiled_tokens(nq=nq, nkv=nkv))
    ref = reference(q, k, v, nq=nq, nkv=nkv, hd=hd, past=past, window=window, scale=scale)
    tol = 4e-3 if profile == "f16" else 1e-5
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err <= tol, f"error {err:.2e}"


def test_attention_tiled_block_fits_16k():
    for hd in (16, 32, 64, 128, 256):
        for slots in (32, 64):
            for split, rt, nbytes in itertools.product((4, 8), (1, 2, 4), (2, 4)):
                bk = K.attention_tiled_block(hd=hd, slots=slots, split=split, stage_bytes=nbytes, rows_per_thread=rt)
                assert 4 <= bk <= 32 and bk % 4 == 0 and (bk == 4 or bk * rt <= 16)
                assert K.attention_tiled_bytes(hd=hd, slots=slots, split=split, stage_bytes=nbytes, block=bk) <= 16384
