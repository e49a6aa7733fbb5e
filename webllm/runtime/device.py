"""Adapter and device: pick the adapter, request features and the adapter's maximum limits; feature
names and WGSL as wgpu-py's naga takes them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from webllm.errors import AdapterError

# Packages name features as WebGPU does; wgpu-py 0.32 spells some differently.
_WGPU_FEATURE = {"subgroups": "subgroup"}

# Limits raised to the adapter's own maxima (never above: a request beyond the adapter's limit fails): big
# weight matrices and KV caches need the first two; a plan's `variant_limits` name others (the 32 KiB
# prefill matmuls need max-compute-workgroup-storage-size), and a variant runs only where they are met.
_LIMITS = ("max-storage-buffer-binding-size", "max-buffer-size", "max-compute-workgroup-storage-size",
           "max-storage-buffers-per-shader-stage", "max-compute-invocations-per-workgroup")


def request_device(want_features: list[str] | None = None):
    """Return (adapter, device). Requests shader-f16 and subgroups where present, limits at maximum."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # Mesa's Vulkan drivers complain on stderr when it is unset (headless machines, containers);
        # compute needs no display, so point it at a private folder.
        os.environ["XDG_RUNTIME_DIR"] = path = tempfile.mkdtemp(prefix="webllm-xdg-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)  # leave no empty folder behind
    try:
        import wgpu
    except ImportError as e:  # pragma: no cover - wgpu is a dependency
        raise AdapterError(f"the wgpu package is not installed ({e})") from None
    try:
        adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
    except Exception as e:  # wgpu raises a bare RuntimeError when no Vulkan/Metal/D3D12 driver is found
        raise AdapterError(
            f"no WebGPU adapter found ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "on Linux without a GPU install Mesa's lavapipe (apt install mesa-vulkan-drivers)"
        ) from None
    if adapter is None:
        raise AdapterError("no WebGPU adapter found")
    feats = set(adapter.features)
    wanted = [_WGPU_FEATURE.get(f, f) for f in want_features or []] + ["shader-f16", "subgroup"]
    required = [f for f in dict.fromkeys(wanted) if f in feats]
    limits = {k: adapter.limits[k] for k in _LIMITS if k in adapter.limits}
    device = adapter.request_device_sync(required_features=required, required_limits=limits)
    return adapter, device


def adapter_name(adapter) -> str:
    info = adapter.info
    return f"{info.get('device', '?')} ({info.get('backend_type', '?')})"


def device_features(device) -> set[str]:
    """The device's features under their WebGPU names (what a package's `requires_features` and
    `variant_features` say): wgpu-py's "subgroup" is WebGPU's "subgroups"."""
    feats = set(device.features)
    return feats | {web for web, native in _WGPU_FEATURE.items() if native in feats}


def device_limits(device) -> dict[str, int]:
    """The device's limits under their WebGPU names (what a package's `variant_limits` say):
    wgpu-py's "max-compute-workgroup-storage-size" is WebGPU's "maxComputeWorkgroupStorageSize"."""
    def web(name: str) -> str:
        head, *rest = name.split("-")
        return head + "".join(w.capitalize() for w in rest)
    return {web(k): v for k, v in device.limits.items() if isinstance(v, int)}


def create_shader_module(device, code: str, label: str = ""):
    """A shader module from a package's WGSL. Kernels that use subgroups begin with `enable subgroups;`,
    which WGSL (and Dawn) require but naga in wgpu 0.32 refuses as "not yet supported" while
    accepting the subgroup built-ins on a device with the feature: where it refuses, the line goes."""
    try:
        return device.create_shader_module(code=code, label=label)
    except Exception as e:
        if "enable subgroups;" not in code or "enable-extension" not in str(e):
            raise
    return device.create_shader_module(code=code.replace("enable subgroups;", "", 1), label=label)
