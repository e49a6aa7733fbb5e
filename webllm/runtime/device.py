"""Adapter and device: pick the adapter, request features and the adapter's maximum limits; feature
names and WGSL as wgpu-py's naga takes them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from webllm.errors import AdapterError, InputError

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


# Runtime checks in the shaders wgpu compiles: wgpu adds two to every module by default, bounds checks
# on array accesses and a counter in every loop that breaks it off after 2^64 iterations ("loop
# bounding", against infinite loops). The native runtime keeps the bounds checks and drops the loop
# counters by default: the browser's WebGPU (Dawn) has no loop counters either (an endless loop ends
# in the driver's timeout and a lost device, there as here), and on an H100 they cost 4% of decode
# (Llama-3.1-8B shape, 406 -> 422 tok/s; docs/PERFORMANCE.md). $WEBLLM_SHADER_CHECKS picks: "all"
# (wgpu's default), "bounds" (the default), "none" (no bounds checks either: faster prefill, but a
# faulty or hostile package's kernel could then read or write outside its buffers).
SHADER_CHECKS = {"all": None, "bounds": 1, "none": 0}  # WGPUShaderRuntimeChecks bits: 1 bounds, 2 loop bounding


def shader_checks() -> str:
    """The runtime checks the native runtime's shaders get ($WEBLLM_SHADER_CHECKS, default "bounds")."""
    v = os.environ.get("WEBLLM_SHADER_CHECKS", "") or "bounds"
    if v not in SHADER_CHECKS:
        raise InputError(f"WEBLLM_SHADER_CHECKS must be one of {', '.join(SHADER_CHECKS)} (got {v!r})")
    return v


def _trusted_module(device, code: str, label: str, checks: int):
    """wgpu-native's wgpuDeviceCreateShaderModuleTrusted: a WGSL module with only the given runtime
    checks; None where this wgpu lacks it."""
    try:
        from wgpu.backends.wgpu_native import _api
        from wgpu.backends.wgpu_native._ffi import ffi, lib
        create = _api.libf.wgpuDeviceCreateShaderModuleTrusted
        internal = device._internal
    except (ImportError, AttributeError):
        return None
    src = _api.new_struct_p("WGPUShaderSourceWGSL *", code=_api.to_c_string_view(code))
    src[0].chain.next = ffi.NULL
    src[0].chain.sType = lib.WGPUSType_ShaderSourceWGSL
    desc = _api.new_struct_p("WGPUShaderModuleDescriptor *", nextInChain=ffi.cast("WGPUChainedStruct *", src),
                             label=_api.to_c_string_view(label))
    mid = create(internal, desc, checks)
    if mid == ffi.NULL:
        raise RuntimeError("Shader module creation failed")
    return _api.GPUShaderModule(label, mid, device)


def _module(device, code: str, label: str):
    checks = SHADER_CHECKS[shader_checks()]
    if checks is not None:
        module = _trusted_module(device, code, label, checks)
        if module is not None:
            return module
    return device.create_shader_module(code=code, label=label)


def create_shader_module(device, code: str, label: str = ""):
    """A shader module from a package's WGSL. Kernels that use subgroups begin with `enable subgroups;`,
    which WGSL (and Dawn) require but naga in wgpu 0.32 refuses as "not yet supported" while
    accepting the subgroup built-ins on a device with the feature: where it refuses, the line goes."""
    try:
        return _module(device, code, label)
    except Exception as e:
        if "enable subgroups;" not in code or "enable-extension" not in str(e):
            raise
    return _module(device, code.replace("enable subgroups;", "", 1), label)
