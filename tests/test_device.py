"""The native runtime's shader modules: the runtime checks wgpu compiles into them
($WEBLLM_SHADER_CHECKS, webllm/runtime/device.py)."""

from __future__ import annotations

import numpy as np
import pytest
import wgpu

from webllm.errors import InputError
from webllm.runtime import device as D

# a loop whose trip count comes from a buffer (so that the compiler keeps it, and wgpu's loop bounding
# would apply) over indexed reads of a runtime-sized array (where the bounds checks apply)
KERNEL = """
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var s = 0u;
    for (var i = 0u; i < src[0]; i++) { s += src[(gid.x + i) % 64u] * (i + 1u); }
    dst[gid.x] = s;
}
"""


def run_kernel(device, module) -> np.ndarray:
    src = np.arange(64, dtype=np.uint32) + 5
    src[0] = 40
    a = device.create_buffer_with_data(data=src.tobytes(), usage=wgpu.BufferUsage.STORAGE)
    b = device.create_buffer(size=64 * 4, usage=wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC)
    pipe = device.create_compute_pipeline(layout="auto", compute={"module": module, "entry_point": "main"})
    bg = device.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
        {"binding": 0, "resource": {"buffer": a}}, {"binding": 1, "resource": {"buffer": b}}])
    enc = device.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipe)
    cp.set_bind_group(0, bg)
    cp.dispatch_workgroups(1)
    cp.end()
    device.queue.submit([enc.finish()])
    return np.frombuffer(device.queue.read_buffer(b), dtype=np.uint32)


def expected() -> np.ndarray:
    src = np.arange(64, dtype=np.uint64) + 5
    src[0] = 40
    return np.array([sum(int(src[(g + i) % 64]) * (i + 1) for i in range(40)) for g in range(64)], dtype=np.uint64)


@pytest.mark.parametrize("checks", sorted(D.SHADER_CHECKS))
def test_each_setting_compiles_and_runs(gpu, monkeypatch, checks):
    monkeypatch.setenv("WEBLLM_SHADER_CHECKS", checks)
    _, device = gpu
    out = run_kernel(device, D.create_shader_module(device, KERNEL, f"checks-{checks}"))
    assert np.array_equal(out, expected().astype(np.uint32))


def test_default_drops_only_loop_bounding(gpu, monkeypatch):
    monkeypatch.delenv("WEBLLM_SHADER_CHECKS", raising=False)
    assert D.shader_checks() == "bounds"
    _, device = gpu
    # the wgpu this project pins has the trusted entry point, so the setting takes effect
    assert D._trusted_module(device, KERNEL, "t", D.SHADER_CHECKS["bounds"]) is not None


def test_bad_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WEBLLM_SHADER_CHECKS", "fast")
    with pytest.raises(InputError, match="WEBLLM_SHADER_CHECKS must be one of all, bounds, none"):
        D.shader_checks()
