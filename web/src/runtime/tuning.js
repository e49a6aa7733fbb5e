// Decode-variant tuning: time the plan's `decode_variants` on this adapter once, keep the winner
// (mirrors webllm/runtime/tuning.py). The cache is keyed by adapter, profile, package (first shard's
// sha256) and the variant names, so a new package, adapter or plan is timed afresh. It lives in
// localStorage in the browser, or in the store the host passes (the Node entry: a JSON file).

import { adapterName } from './device.js';

/**
 * Where winners are kept: `get`/`set` may be synchronous or return promises.
 * @typedef {{get(key: string): (string | undefined | null | Promise<string | undefined | null>),
 *   set(key: string, value: string): (void | Promise<void>)}} TuningStore
 */

const STORAGE_KEY = 'webllm-tuning';

/** A store in the browser's localStorage, or null where there is none. @returns {TuningStore | null} */
export function localTuningStore() {
  const ls = /** @type {any} */ (globalThis).localStorage;
  if (!ls) return null;
  const read = () => {
    try { return JSON.parse(ls.getItem(STORAGE_KEY) ?? '{}'); } catch { return {}; }
  };
  return {
    get: (key) => read()[key],
    set: (key, value) => {
      try { ls.setItem(STORAGE_KEY, JSON.stringify({ ...read(), [key]: value })); } catch { /* full: time again */ }
    },
  };
}

/**
 * @param {import('./model.js').Model} model @param {string[]} names
 */
export function cacheKey(model, names) {
  return `${adapterName(model.adapter)}|${model.profile}|${model.manifest.shards[0]?.sha256}|${names.join(',')}`;
}

/**
 * The cached winner for this adapter and package, else time each variant and remember the fastest.
 * Small contexts (< 64 tokens) and single-variant plans just take the first.
 * @param {import('./model.js').Model} model @param {TuningStore | null} store
 * @param {(text: string) => void} [report]
 * @returns {Promise<string>}
 */
export async function chooseDecodeVariant(model, store, report) {
  const names = Object.keys(model.plan.decode_variants);
  if (names.length === 1 || model.capacity < 64) return names[0];
  const key = cacheKey(model, names);
  const cached = store ? await store.get(key) : undefined;
  if (cached && names.includes(cached)) return cached;
  report?.(`timing decode variants ${names.join(', ')} on this adapter (once)`);
  const timings = await timeDecodeVariants(model, names);
  const best = names.reduce((a, b) => (timings[b] < timings[a] ? b : a));
  if (store) await store.set(key, best);
  return best;
}

/**
 * Seconds per decode step of each variant, best of several rounds taken in turn, so that a GPU still
 * raising its clocks (or compiling pipelines on first use) favours none of them. Round 0 (one step
 * each) is warm-up; when its fastest step took over 0.1 s (a software adapter, where one slow variant
 * can cost seconds a step and the gaps are large) it decides alone. Leaves the model reset.
 * @param {import('./model.js').Model} model @param {string[]} names
 * @returns {Promise<Record<string, number>>}
 */
export async function timeDecodeVariants(model, names) {
  model.reset();
  await model.prefill([0]);
  /** @type {Record<string, number>} */
  const best = Object.fromEntries(names.map((n) => [n, Infinity]));
  /** @type {Record<string, number>} */
  const warm = {};
  const rounds = [1, 4, 16, 16, 16];
  for (let rnd = 0; rnd < rounds.length; rnd++) {
    for (const name of names) {
      model.useDecodeVariant(name);
      model.truncate(1);
      await model.nextToken();
      const t = performance.now();
      for (let i = 0; i < rounds[rnd]; i++) model.decode();
      await model.nextToken();
      const seconds = (performance.now() - t) / 1000 / rounds[rnd];
      if (rnd === 0) warm[name] = seconds;
      else best[name] = Math.min(best[name], seconds);
    }
    if (rnd === 0 && Math.min(...Object.values(warm)) > 0.1) {
      model.reset();
      return warm;
    }
    if (rnd === 1 && Math.min(...Object.values(best)) > 0.01) break;
  }
  model.reset();
  return best;
}
