/// <reference types="node" />
// The Node entry: the same runtime modules on Dawn (npm package `webgpu`); only the WebGPU object and
// file loading differ from the browser.

import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Model } from '../runtime/model.js';
import { requestDevice } from '../runtime/device.js';
import { FolderCache, fileTuningStore, nodeFetch, toUrl } from './files.js';

/**
 * The npm package `webgpu` (Dawn): from $WEBLLM_NODE_MODULES when set (a node_modules folder kept
 * outside the checkout, e.g. carried to a GPU machine; ES modules ignore NODE_PATH), else as usual.
 * @returns {Promise<typeof import('webgpu')>}
 */
async function importWebgpu() {
  const dir = process.env.WEBLLM_NODE_MODULES;
  if (!dir) return import('webgpu');
  return import(pathToFileURL(createRequire(join(dir, 'x.js')).resolve('webgpu')).href);
}

const { create, globals } = await importWebgpu();
Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, GPUShaderStage

if (!process.env.XDG_RUNTIME_DIR) {
  // Vulkan drivers complain when it is unset (headless machines); compute needs no display.
  process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'webllm-xdg-'));
}

/** @type {GPU | null} */
let gpu = null;

/**
 * Dawn's options from $WEBLLM_DAWN: `;`-separated, as the `webgpu` package's `create` takes them
 * (e.g. `enable-dawn-features=disable_workgroup_init`, which makes SwiftShader compile 5x faster).
 * @param {string} [value]
 */
export function dawnOptions(value = process.env.WEBLLM_DAWN ?? '') {
  return value.split(';').map((s) => s.trim()).filter((s) => s);
}

/** Dawn's WebGPU entry (one per process; its options are read when it is first made). @param {string[]} [options] */
export function nodeGpu(options = dawnOptions()) {
  gpu ??= /** @type {GPU} */ (/** @type {unknown} */ (create(options)));
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
