"""Native runtime: executes a model package with wgpu (WebGPU over Vulkan, Metal or D3D12)."""

from webllm.runtime.model import Model

__all__ = ["Model"]
