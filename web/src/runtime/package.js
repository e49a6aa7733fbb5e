// Reading a model package from any URL (relative or absolute, any static host with CORS): the
// manifest's checks, the profile choice, the plan and its kernels (mirrors webllm/runtime/package.py;
// shards and their sha256 live in cache.js). The layout is docs/FORMAT.md, version 3.

import { AdapterError, PackageError } from './errors.js';

export const FORMAT_NAME = 'webllm-package';
export const FORMAT_VERSION = 4;
export const MANIFEST = 'manifest.json';

/** @typedef {typeof globalThis.fetch} FetchFn */

/**
 * @typedef {{file: string, nbytes: number, sha256: string, uploads: [string, number, number, number][]}} Shard
 * @typedef {{dtype: string, shape: number[], nbytes: number, size: number}} Tensor
 * @typedef {{plan: string, requires_features: string[], memory_bytes?: number, weight_bytes?: number,
 *   buffer_bytes?: number}} ProfileInfo
 * @typedef {{format: string, format_version: number, config: Record<string, any>, context_window: number,
 *   prefill_chunk: number, max_binding_size?: number, profile_order?: string[],
 *   profiles: Record<string, ProfileInfo>, shards: Shard[], tensors: Record<string, Tensor>,
 *   tokenizer: Record<string, any>, chat_template?: string | null, generation?: Record<string, any>,
 *   [key: string]: any}} Manifest
 * @typedef {{name: string, offset: number, type: 'u32' | 'f32', default?: number}} UniformField
 * @typedef {{kernel: string, bind_group: number, workgroups: [number, number, number], tokens_per_y?: number,
 *   kv_per_z?: number, max_z?: number}} Dispatch
 * @typedef {{name: string, size: number, usage: string[] | string, per_context?: {unit: number, bytes: number},
 *   optional?: string}} PlanBuffer
 * @typedef {{profile: string, requires_features: string[], uniform: {buffer: string, size: number,
 *   fields: UniformField[]}, kernels: Record<string, {file: string, entry_point: string, bindings: string[]}>,
 *   buffers: PlanBuffer[], bind_groups: {kernel: string, buffers: string[]}[],
 *   prefill_variants: Record<string, Dispatch[]>, score_variants?: Record<string, Dispatch[]>,
 *   decode_variants: Record<string, Dispatch[]>, variant_features: Record<string, string[]>,
 *   variant_limits: Record<string, Record<string, number>>, [key: string]: any}} Plan
 */

/** The plan fields every runtime reads. */
export const PLAN_FIELDS = ['profile', 'uniform', 'kernels', 'buffers', 'bind_groups', 'prefill_variants',
  'decode_variants', 'variant_features', 'variant_limits'];

/**
 * The package's base URL (always ending in "/"), resolved against the page when relative.
 * @param {string | URL} url
 */
export function packageBase(url) {
  let s = String(url);
  if (s.endsWith(MANIFEST)) s = s.slice(0, -MANIFEST.length);
  if (!s.endsWith('/')) s += '/';
  try {
    return new URL(s, /** @type {any} */ (globalThis).location?.href).href;
  } catch {
    throw new PackageError(`${url}: not a URL (a relative package URL needs a page to resolve against)`);
  }
}

/**
 * Fetch one file of the package; network and HTTP failures become a PackageError naming the file.
 * @param {FetchFn} fetchFn @param {string} url
 * @returns {Promise<Response>}
 */
export async function fetchFile(fetchFn, url) {
  let r;
  try {
    r = await fetchFn(url);
  } catch (e) {
    throw new PackageError(`${url}: could not be fetched (${/** @type {Error} */ (e).message}; `
      + 'is the server up, and does it send CORS headers for another origin?)');
  }
  if (!r.ok) throw new PackageError(`${url}: HTTP ${r.status} ${r.statusText}`.trim());
  return r;
}

/**
 * @param {FetchFn} fetchFn @param {string} url
 * @returns {Promise<any>}
 */
async function fetchJson(fetchFn, url) {
  const text = await (await fetchFile(fetchFn, url)).text();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PackageError(`${url}: not valid JSON (${/** @type {Error} */ (e).message})`);
  }
}

/**
 * Load and validate manifest.json; refuse unknown formats and versions clearly.
 * @param {string} base package base URL (from `packageBase`) @param {FetchFn} fetchFn
 * @returns {Promise<Manifest>}
 */
export async function readManifest(base, fetchFn) {
  const url = base + MANIFEST;
  let m;
  try {
    m = await fetchJson(fetchFn, url);
  } catch (e) {
    if (e instanceof PackageError && / HTTP 404\b/.test(e.message)) {
      throw new PackageError(`${url}: not found (is ${base} a webllm model package? build one with 'webllm compile')`);
    }
    throw e;
  }
  if (m === null || typeof m !== 'object') throw new PackageError(`${url}: not a webllm package manifest`);
  if (m.format !== FORMAT_NAME) {
    throw new PackageError(`${url}: field 'format' is ${JSON.stringify(m.format)}, expected "${FORMAT_NAME}"`);
  }
  if (m.format_version !== FORMAT_VERSION) {
    throw new PackageError(`${url}: field 'format_version' is ${JSON.stringify(m.format_version)}; this runtime `
      + `reads version ${FORMAT_VERSION} (recompile the model with a matching webllm, or update the page)`);
  }
  for (const key of ['config', 'profiles', 'shards', 'tensors', 'tokenizer', 'context_window', 'prefill_chunk']) {
    if (!(key in m)) throw new PackageError(`${url}: required field '${key}' is missing`);
  }
  return m;
}

/**
 * The profile to run: the one named, else the first of `profile_order` whose required features the
 * device has (f16 with shader-f16, else f32).
 * @param {Manifest} manifest @param {Iterable<string>} features the device's features
 * @param {string} [wanted] @param {string} [where] for messages
 */
export function chooseProfile(manifest, features, wanted, where = 'package') {
  const have = new Set(features);
  const profiles = manifest.profiles;
  const order = manifest.profile_order ?? Object.keys(profiles);
  const fits = (/** @type {string} */ p) => (profiles[p].requires_features ?? []).every((f) => have.has(f));
  if (wanted !== undefined && wanted !== null) {
    if (!(wanted in profiles)) {
      throw new PackageError(`${where}: has no profile "${wanted}" (has: ${Object.keys(profiles).join(', ')})`);
    }
    if (!fits(wanted)) {
      throw new AdapterError(`profile "${wanted}" needs ${profiles[wanted].requires_features.join(', ')}, which this `
        + 'device lacks');
    }
    return wanted;
  }
  const usable = order.filter((p) => p in profiles && fits(p));
  if (!usable.length) {
    throw new AdapterError(`${where}: no profile of this package runs on this device (profiles: ${order.join(', ')}; `
      + 'the device lacks shader-f16)');
  }
  return usable[0];
}

/**
 * The plan of one profile.
 * @param {string} base @param {Manifest} manifest @param {string} profile @param {FetchFn} fetchFn
 * @returns {Promise<Plan>}
 */
export async function readPlan(base, manifest, profile, fetchFn) {
  return fetchJson(fetchFn, base + manifest.profiles[profile].plan);
}

/** WGSL language features a plan's `variant_features` may name beside device features (FORMAT.md). */
export const WGSL_LANGUAGE_FEATURES = ['packed_4x8_integer_dot_product'];

/**
 * What the device lacks of variant `name`'s needs: its `variant_features` missing from `features` and
 * its `variant_limits` above the device's `limits`, as ["subgroups", "maxComputeWorkgroupStorageSize
 * 32768 (device: 16384)"]; empty if it can run it (mirrors webllm/runtime/package.py).
 * @param {Plan} plan @param {string} name @param {Iterable<string>} features the device's
 * @param {GPUSupportedLimits | Record<string, number>} limits the device's
 * @returns {string[]}
 */
export function variantLacks(plan, name, features, limits) {
  const have = new Set(features);
  // WGSL language features (FORMAT.md): checked where the implementation reports them (a browser's
  // navigator.gpu.wgslLanguageFeatures; unknown, as from Node with a device passed in: assumed)
  const wgsl = /** @type {any} */ (globalThis).navigator?.gpu?.wgslLanguageFeatures;
  const lacks = (plan.variant_features?.[name] ?? []).filter((f) => (
    WGSL_LANGUAGE_FEATURES.includes(f) ? wgsl !== undefined && !wgsl.has(f) : !have.has(f)));
  for (const [lim, v] of Object.entries(plan.variant_limits?.[name] ?? {})) {
    const got = Number(/** @type {any} */ (limits)[lim] ?? 0);
    if (got < v) lacks.push(`${lim} ${v} (device: ${got})`);
  }
  return lacks;
}

/**
 * Names of the plan's `<kind>_variants` ("prefill" or "decode") this device can run, in the plan's order
 * (most preferred first): those whose `variant_features` it has and whose `variant_limits` its limits reach.
 * @param {Plan} plan @param {'prefill' | 'decode'} kind @param {Iterable<string>} features the device's
 * @param {GPUSupportedLimits | Record<string, number>} limits the device's
 * @returns {string[]}
 */
export function usableVariants(plan, kind, features, limits) {
  const have = [...features];
  return Object.keys(plan[`${kind}_variants`]).filter((n) => !variantLacks(plan, n, have, limits).length);
}

/**
 * The WGSL source of the kernels named (default: every kernel of the plan), fetched in parallel.
 * @param {string} base @param {Plan} plan @param {FetchFn} fetchFn @param {string[]} [names]
 * @returns {Promise<Record<string, string>>} kernel name -> source
 */
export async function readKernels(base, plan, fetchFn, names = Object.keys(plan.kernels)) {
  const files = [...new Set(names.map((n) => plan.kernels[n].file))];
  const texts = await Promise.all(files.map(async (f) => (await fetchFile(fetchFn, `${base}kernels/${f}`)).text()));
  const byFile = Object.fromEntries(files.map((f, i) => [f, texts[i]]));
  return Object.fromEntries(names.map((n) => [n, byFile[plan.kernels[n].file]]));
}
