/// <reference types="node" />
// The Node entry: the same runtime modules on Dawn (npm package `webgpu`); only the WebGPU object and
// file loading differ from the browser.

import { create, globals } from 'webgpu';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../runtime/model.js';
import { requestDevice } from '../runtime/device.js';
import { FolderCache, fileTuningStore, nodeFetch, toUrl } from './files.js';

Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, GPUShaderStage

if (!process.env.XDG_RUNTIME_DIR) {
  // Vulkan drivers complain when it is unset (headless machines); compute needs no display.
  process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'webllm-xdg-'));
}

/** @type {GPU | null} */
let gpu = null;

/** Dawn's WebGPU entry (one per process; `dawnOptions` as the `webgpu` package's `create`). @param {string[]} [dawnOptions] */
export function nodeGpu(dawnOptions = []) {
  gpu ??= /** @type {GPU} */ (/** @type {unknown} */ (create(dawnOptions)));
  return gpu;
}

/** Adapter and device on Dawn, as the browser's `requestDevice`. */
export async function requestNodeDevice() {
  return requestDevice({ gpu: nodeGpu() });
}

/**
 * `Model.load` with Node's files: a path or URL, shards of http(s) packages cached in a folder, the
 * decode-variant timings in a JSON file.
 * @param {string} where package folder, file: or http(s) URL
 * @param {import('../runtime/model.js').LoadOptions} [options]
 */
export async function loadModel(where, options = {}) {
  return Model.load(toUrl(where), {
    gpu: nodeGpu(), fetch: nodeFetch, cache: new FolderCache(), tuningStore: fileTuningStore(), ...options,
  });
}

/** Let the process exit: Dawn keeps it alive while its entry object is referenced. */
export function releaseGpu() {
  gpu = null;
}

export { Model };
