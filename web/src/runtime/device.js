// Adapter and device: a high-performance adapter, shader-f16 and subgroups where present, and the
// adapter's maximum limits (mirrors webllm/runtime/device.py).

import { AdapterError } from './errors.js';

/**
 * Limits raised to the adapter's own maxima (never above: a request beyond the adapter's limit fails): big
 * weight matrices and KV caches need the first two; a plan's `variant_limits` name others (the 32 KiB
 * prefill matmuls need maxComputeWorkgroupStorageSize), and a variant runs only where they are met.
 */
const LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupsPerDimension',
];

/** Features requested whenever the adapter has them (kernels fall back when they are absent). */
const OPTIONAL_FEATURES = ['shader-f16', 'subgroups'];

/**
 * Request an adapter and a device.
 * @param {{gpu?: GPU, features?: string[], powerPreference?: GPUPowerPreference}} [options]
 *   `gpu`: the WebGPU entry (default `navigator.gpu`; Node passes Dawn's); `features`: also required.
 * @returns {Promise<{adapter: GPUAdapter, device: GPUDevice}>}
 */
export async function requestDevice({ gpu, features = [], powerPreference = 'high-performance' } = {}) {
  gpu = gpu ?? /** @type {any} */ (globalThis).navigator?.gpu;
  if (!gpu) {
    throw new AdapterError('this browser has no WebGPU (navigator.gpu is missing); use a recent Chrome, Edge or '
      + 'Safari, or Firefox with WebGPU enabled');
  }
  const adapter = await gpu.requestAdapter({ powerPreference });
  if (!adapter) throw new AdapterError('no WebGPU adapter found (is the GPU blocklisted or disabled?)');
  const missing = features.filter((f) => !adapter.features.has(f));
  if (missing.length) throw new AdapterError(`${adapterName(adapter)} lacks the feature(s) ${missing.join(', ')}`);
  const requiredFeatures = /** @type {GPUFeatureName[]} */ (
    [...new Set([...features, ...OPTIONAL_FEATURES])].filter((f) => adapter.features.has(f)));
  /** @type {Record<string, number>} */
  const requiredLimits = {};
  for (const k of LIMITS) {
    const v = /** @type {any} */ (adapter.limits)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  let device;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  } catch (e) {
    throw new AdapterError(`${adapterName(adapter)}: requestDevice failed (${/** @type {Error} */ (e).message})`);
  }
  return { adapter, device };
}

/**
 * Whether the adapter is a software one (SwiftShader, lavapipe / llvmpipe, WARP): it says it is a fallback
 * adapter, or its name is one of theirs.
 * @param {GPUAdapter | undefined | null} adapter
 */
export function softwareAdapter(adapter) {
  const info = /** @type {any} */ (adapter)?.info ?? {};
  if (info.isFallbackAdapter === true) return true;
  return /swiftshader|llvmpipe|lavapipe|\bwarp\b|basic render/i.test(adapterName(adapter));
}

/**
 * A short human name of the adapter, also the key of the decode-variant timing cache.
 * @param {GPUAdapter | undefined | null} adapter
 */
export function adapterName(adapter) {
  if (!adapter) return 'unknown adapter';
  const info = /** @type {any} */ (adapter).info ?? {};
  // Dawn on NVIDIA puts the driver version in `description` and the GPU's id in `device`: keep both
  const parts = [info.description, info.device, info.vendor, info.architecture].filter((s) => s);
  return parts.length ? [...new Set(parts)].join(' / ') : 'unknown adapter';
}
