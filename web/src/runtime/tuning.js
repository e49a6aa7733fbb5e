// Variant tuning: time the plan's prefill and decode variants on this adapter once, keep the winners
// (mirrors webllm/runtime/tuning.py). The cache is keyed by adapter, profile, package (first shard's
// sha256 and a digest of the plan: the same weights compiled again with other kernels are another
// package), phase and the variant names, so a new package, adapter or plan is timed afresh. It lives in
// localStorage in the browser, or in the store the host passes (the Node entry: a JSON file).

import { sha256Hex } from './cache.js';
import { adapterName, softwareAdapter } from './device.js';

/**
 * Where winners are kept: `get`/`set` may be synchronous or return promises.
 * @typedef {{get(key: string): (string | undefined | null | Promise<string | undefined | null>),
 *   set(key: string, value: string): (void | Promise<void>)}} TuningStore
 */

const STORAGE_KEY = 'webllm-tuning';

/** A warm-up step slower than this decides alone (software adapters; see the timers). */
export const SLOW_STEP_S = 0.1;
/** KV length at which decode attention's split counts are timed. */
export const TUNE_CONTEXT = 4096;
/** Decode steps a split count runs in each round of that timing, at least (timeKvSplits). */
export const SPLIT_ROUNDS = [4, 16, 16];
/** Decode steps a variant runs in each round of its timing, at least (timeDecodeVariants). */
export const DECODE_ROUNDS = [4, 16, 16, 16];
/** A round after the first runs at least this long: more steps where steps are short (roundSteps). */
export const ROUND_S = 0.05;
export const MAX_ROUND_STEPS = 256;
/** How long the timing runs steps before it compares variants, at least and at most (settle). */
export const SETTLE_S = [0.5, 2.0];
/** On a slow software adapter, prefill variants whose token tile is at most this times the first's are probed. */
export const SMALL_TILE = 2;

/**
 * Steps in a timing round after the first: at least `least`, and enough for ROUND_S at `stepS` seconds
 * a step, at most MAX_ROUND_STEPS and `room` (the cache's free positions). A round is timed from an idle
 * GPU to the read of its last token, so it carries that read's latency and the host's hiccups, which 16
 * short steps do not outweigh (on an H100 through Dawn, a Llama-3.2-1B read 1,357-1,491 tok/s in rounds
 * of 16 steps, 1,524-1,580 in rounds of 64 and 256; webllm/runtime/tuning.py has the figures).
 * @param {number} stepS @param {number} least @param {number} [room]
 */
export function roundSteps(stepS, least, room = MAX_ROUND_STEPS) {
  const want = Math.min(MAX_ROUND_STEPS, Math.ceil(ROUND_S / Math.max(stepS, 1e-6)));
  return Math.max(1, Math.min(room, Math.max(least, want)));
}

/**
 * Repeat `step` (it resolves to seconds per step) for at least SETTLE_S[0] and until a repetition is
 * no faster than 0.95 of the best before, at most SETTLE_S[1]: the GPU busy again before variants are
 * compared, after idling while their pipelines were built (its clocks drop meanwhile: on an H100 the
 * steps after such a pause ran 3-4x slower for ~0.3 s; webllm/runtime/tuning.py has the figures).
 * Resolves to the fastest repetition's seconds a step.
 * @param {() => Promise<number>} step @returns {Promise<number>}
 */
export async function settle(step) {
  const start = performance.now();
  let last = await step();
  while ((performance.now() - start) / 1000 < SETTLE_S[1]) {
    const now = await step();
    if (now > 0.95 * last && (performance.now() - start) / 1000 >= SETTLE_S[0]) return Math.min(last, now);
    last = Math.min(last, now);
  }
  return last;
}

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
 * @param {import('./model.js').Model} model @param {string} kind @param {string[]} names
 */
export function cacheKey(model, kind, names) {
  const pkg = `${model.manifest.shards[0]?.sha256}:${model.planDigest}`;
  return `${adapterName(model.adapter)}|${model.profile}|${pkg}|${kind}|${names.join(',')}`;
}

/**
 * A short digest of a plan (its kernels, named by their source's hash, and every dispatch list): the
 * sha256 of its JSON as parsed. Not the Python runtime's digest (JSON numbers print differently), but
 * each runtime's is stable for a given plan file.
 * @param {import('./package.js').Plan} plan @returns {Promise<string>}
 */
export async function planDigest(plan) {
  return (await sha256Hex(new TextEncoder().encode(JSON.stringify(plan)))).slice(0, 16);
}

/**
 * The cached winner among this device's `kind` variants for this adapter and package, else time each
 * and remember the fastest. Small contexts (< 64 tokens) and a single variant just take the first.
 * @param {import('./model.js').Model} model @param {'prefill' | 'decode'} kind
 * @param {TuningStore | null} store @param {(text: string) => void} [report]
 * @returns {Promise<string>}
 */
export async function chooseVariant(model, kind, store, report) {
  const names = kind === 'prefill' ? model.prefillVariants : model.decodeVariants;
  if (names.length === 1 || model.capacity < 64) return names[0];
  const key = cacheKey(model, kind, names);
  const cached = store ? await store.get(key) : undefined;
  if (cached && names.includes(cached)) return cached;
  report?.(`timing ${kind} variants ${names.join(', ')} on this adapter (once)`);
  const timings = await (kind === 'prefill' ? timePrefillVariants(model, names) : timeDecodeVariants(model, names));
  const timed = Object.keys(timings);
  const best = timed.reduce((a, b) => (timings[b] < timings[a] ? b : a));
  if (store) await store.set(key, best);
  return best;
}

/**
 * Decode attention's most KV splits (the plan's `decode_splits` choices): the cached winner for this
 * adapter, package and decode variant, else each choice timed over decode steps at a long context
 * (TUNE_CONTEXT, or the cache's end) and the fastest remembered. The plan's default where it offers one
 * choice, the context is too short for every choice to be used (64 positions a split), or the adapter
 * is a software one (its first step over SLOW_STEP_S); 0 for plans without choices.
 * @param {import('./model.js').Model} model @param {TuningStore | null} store
 * @param {(text: string) => void} [report] @returns {Promise<number>}
 */
export async function chooseKvSplits(model, store, report) {
  const choices = model.kvSplitsChoices;
  if (!choices.length) return 0;
  const fallback = model.plan.decode_splits.default;
  const past = Math.min(TUNE_CONTEXT, model.capacity - Math.max(...SPLIT_ROUNDS)); // room for a round's steps
  if (choices.length === 1 || past < 64 * Math.max(...choices)) return fallback;
  const names = choices.map(String);
  const key = cacheKey(model, `splits.${model.decodeVariant}`, names);
  const cached = store ? await store.get(key) : undefined;
  if (cached && names.includes(cached)) return Number(cached);
  report?.(`timing decode attention's split counts ${names.join(', ')} at ${past} tokens of context (once)`);
  const timings = await timeKvSplits(model, choices, past);
  const timed = Object.keys(timings).map(Number);
  const best = timed.length > 1 ? timed.reduce((a, b) => (timings[b] < timings[a] ? b : a)) : fallback;
  if (store) await store.set(key, String(best));
  return best;
}

/**
 * Seconds per decode step over `steps` steps from KV length `past` (the cache's contents there are
 * whatever it holds: a step's time does not depend on them), the GPU idle at the start.
 * @param {import('./model.js').Model} model @param {number} steps @param {number} [past]
 */
async function decodeSeconds(model, steps, past = 0) {
  model.reset();
  model.past = past;
  await model.nextToken(); // the GPU is idle
  const t = performance.now();
  for (let i = 0; i < steps; i++) model.decode();
  await model.nextToken();
  return (performance.now() - t) / 1000 / steps;
}

/**
 * Seconds per decode step at KV length `past` with each split count: steps of the first repeated until
 * they stop getting faster (settle), then rounds of 4, 16 and 16 steps taken in turn (the last two
 * longer where steps are short: roundSteps), best of the rounds (as timeDecodeVariants). Without the
 * settling, the rounds ran while the GPU was still raising its clocks after idling while the decode
 * pipelines were built, which favours the choices timed last
 * (webllm/runtime/tuning.py has the figures). A first step over SLOW_STEP_S (a software adapter) ends the
 * timing with that one choice. Leaves the model reset, on the split count it had.
 * @param {import('./model.js').Model} model @param {number[]} choices @param {number} past
 * @returns {Promise<Record<number, number>>}
 */
export async function timeKvSplits(model, choices, past) {
  const keep = model.kvSplits;
  /** @param {number} n @param {number} steps */
  const run = async (n, steps) => {
    model.useKvSplits(n);
    return decodeSeconds(model, steps, past);
  };
  /** @type {Record<number, number>} */
  let best = {};
  const first = await run(choices[0], 1);
  if (first > SLOW_STEP_S) {
    best = { [choices[0]]: first };
  } else {
    const stepS = await settle(() => run(choices[0], 4));
    best = Object.fromEntries(choices.map((c) => [c, Infinity]));
    for (let rnd = 0; rnd < SPLIT_ROUNDS.length; rnd++) {
      const steps = rnd === 0 ? SPLIT_ROUNDS[0] : roundSteps(stepS, SPLIT_ROUNDS[rnd], model.capacity - past);
      for (const c of choices) best[c] = Math.min(best[c], await run(c, steps));
    }
  }
  model.reset();
  if (keep) model.useKvSplits(keep);
  return best;
}

/**
 * Seconds per decode step of each variant. First one step of the first variant that needs no feature.
 * When that step takes over SLOW_STEP_S (a software adapter, where a step costs seconds and the gaps are
 * wide), one step each of the variants that need no feature decides: each variant timed there costs its
 * compile and a step of seconds at first load, and emulated subgroups gain little there and not reliably
 * (webllm/runtime/tuning.py has the figures). Otherwise every variant's pipelines are built, steps of
 * the first are repeated until they stop getting faster (settle), and each variant is timed in rounds of
 * 4, 16, 16 and 16 steps taken in turn (the last three longer where steps are short: roundSteps), best
 * of the rounds (the first round decides alone where a step takes over 10 ms: a large model). Steps
 * start from an empty cache (no prefill: one costs seconds on a software adapter). Leaves the model
 * reset, on the variant it had.
 * @param {import('./model.js').Model} model @param {string[]} names
 * @returns {Promise<Record<string, number>>}
 */
export async function timeDecodeVariants(model, names) {
  const keep = model.decodeVariant;
  const needs = model.plan.variant_features ?? {};
  let plain = names.filter((n) => !(needs[n] ?? []).length);
  if (!plain.length) plain = names.slice(0, 1);
  /** @param {string} name @param {number} steps */
  const run = async (name, steps) => {
    await model.useDecodeVariant(name);
    return decodeSeconds(model, steps);
  };
  /** @type {Record<string, number>} */
  const warm = { [plain[0]]: await run(plain[0], 1) };
  const slow = warm[plain[0]] > SLOW_STEP_S;
  await model.prepareVariants('decode', slow ? plain : names); // their kernels compile side by side
  let best = warm;
  if (slow) {
    for (const name of plain) if (!(name in warm)) warm[name] = await run(name, 1);
  } else {
    const stepS = await settle(() => run(plain[0], 4));
    best = Object.fromEntries(names.map((n) => [n, Infinity]));
    for (let rnd = 0; rnd < DECODE_ROUNDS.length; rnd++) {
      const steps = rnd === 0 ? DECODE_ROUNDS[0] : roundSteps(stepS, DECODE_ROUNDS[rnd], model.capacity);
      for (const name of names) best[name] = Math.min(best[name], await run(name, steps));
      if (rnd === 0 && Math.min(...Object.values(best)) > 0.01) break;
    }
  }
  model.reset();
  if (keep) await model.useDecodeVariant(keep);
  return best;
}

/**
 * `n` token ids spread over the vocabulary, the same every time (webllm/runtime/tuning.py's
 * spread_ids: a prefill timed on them moves data the way a prompt does).
 * @param {number} n @param {number} vocab @returns {number[]}
 */
export function spreadIds(n, vocab) {
  return Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);
}

/** Variants whose warm-up steps are this close get more rounds, however slow the steps. */
export const CLOSE = 0.15;

/**
 * Whether the two fastest of `times` are within CLOSE of each other: one round can't tell them apart.
 * @param {Record<string, number>} times
 */
function close(times) {
  const [a, b = Infinity] = Object.values(times).sort((x, y) => x - y);
  return b <= a * (1 + CLOSE);
}

/**
 * Tokens per workgroup of prefill variant `name`'s widest dispatch (`tokens_per_y`): its matmuls' token
 * tile, 32 or 128 for the tiled matmul, 64 for the int8 `q8`. A step of fewer tokens still runs one
 * whole tile.
 * @param {import('./package.js').Plan} plan @param {string} name @returns {number}
 */
export function tokenTile(plan, name) {
  return Math.max(...plan.prefill_variants[name].map((d) => d.tokens_per_y || 1));
}

/**
 * Seconds per prefill step of one full chunk (min(prefill_chunk, capacity) tokens) of each variant, in
 * rounds taken in turn as for decode: round 0 (one step each) is warm-up, then the best of two more; a
 * warm-up round whose fastest step took over SLOW_STEP_S decides alone unless its two fastest are within
 * CLOSE. First, on a software adapter (softwareAdapter), a one-token step of the first variant: when that
 * takes over SLOW_STEP_S, one one-token step each of the small-tile variants decides (token tile at most
 * SMALL_TILE times the first's, tokenTile; features the device lacks are not among `names`), and the
 * others are never compiled. There a step costs a whole token tile's work whatever its length: on
 * lavapipe (embedded SmolLM2-135M, f16) `rule` (32-token tiles) took 7.0-7.5 s at one token and
 * 27.3-27.9 at 128, the int8 `q8` (64-token tiles) 4.9-5.3 and 11.0-12.3, the 128-token tiles 18.4-20.1
 * at one token; a chunk of each would add 40-60 s to the first load (tuning.py has the figures). Only
 * there: on an H100 a Llama-3.1-8B's first one-token step took 355 ms and the next 117 (tuning.py).
 * Otherwise every variant's pipelines are built and run once (a 64-token step each: no first use in the
 * rounds, where one round may decide) and 64-token steps of the first repeated until they stop getting
 * faster (settle) before the rounds. Leaves the model reset, on the variant it had.
 * @param {import('./model.js').Model} model @param {string[]} names
 * @returns {Promise<Record<string, number>>}
 */
export async function timePrefillVariants(model, names) {
  const keep = model.prefillVariant;
  /** @param {string} name @param {number} tokens */
  const step = async (name, tokens) => {
    await model.usePrefillVariant(name);
    model.reset();
    await model.nextToken(); // the GPU is idle
    const t = performance.now();
    await model.prefill(spreadIds(tokens, model.config.vocab_size));
    await model.nextToken();
    return (performance.now() - t) / 1000;
  };
  /** @type {Record<string, number>} */
  let best = {};
  const probe = softwareAdapter(model.adapter) ? await step(names[0], 1) : 0;
  if (probe > SLOW_STEP_S) {
    const tile = tokenTile(model.plan, names[0]);
    const small = names.filter((n) => tokenTile(model.plan, n) <= SMALL_TILE * tile);
    await model.prepareVariants('prefill', small); // their kernels compile side by side
    best = { [names[0]]: probe };
    for (const name of small.slice(1)) best[name] = await step(name, 1);
  } else {
    await model.prepareVariants('prefill', names);
    const n = Math.min(model.chunk, model.capacity);
    for (const name of names) await step(name, Math.min(n, 64)); // each run once: no first use in the rounds
    await settle(() => step(names[0], Math.min(n, 64)));
    best = Object.fromEntries(names.map((name) => [name, Infinity]));
    for (let rnd = 0; rnd < 3; rnd++) {
      for (const name of names) best[name] = Math.min(best[name], await step(name, n));
      if (rnd === 0 && Math.min(...Object.values(best)) > SLOW_STEP_S && !close(best)) break;
    }
  }
  model.reset();
  if (keep) await model.usePrefillVariant(keep);
  return best;
}
