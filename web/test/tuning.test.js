/// <reference types="node" />
// The decode timing lets the GPU settle before it compares variants (tuning.js settle), on a simulated
// clock: no GPU needed (tests/test_tuning.py has the Python twin).

import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_ROUND_STEPS, SETTLE_S, roundSteps, settle, timeDecodeVariants, timePrefillVariants, tokenTile,
} from '../src/runtime/tuning.js';
import { softwareAdapter } from '../src/runtime/device.js';

const realPerformance = globalThis.performance;
let clock = 0; // ms
Object.defineProperty(globalThis, 'performance', { value: { now: () => clock }, configurable: true, writable: true });
afterEach(() => { clock = 0; });
process.on('exit', () => Object.defineProperty(globalThis, 'performance', { value: realPerformance }));

test('settle runs its minimum, then until steps stop getting faster, at most its maximum', async () => {
  /** @param {number[]} times */
  const steps = (times) => { let i = 0; return async () => { clock += 100; return times[i++]; }; };
  const fastest = await settle(steps([0.016, 0.016, 0.016, 0.016, 0.009, 0.0046, 0.0045, ...Array(30).fill(0.0045)]));
  assert.equal(clock, 700);
  assert.equal(fastest, 0.0045);
  clock = 0;
  await settle(steps(Array.from({ length: 100 }, (_, i) => 0.01 * 0.9 ** i)));
  assert.ok(Math.abs(clock - SETTLE_S[1] * 1000) <= 110, String(clock));
});

test('decode variants are compared after the slow spell that follows pipeline builds', async () => {
  // An H100 ran every step in ~16 ms for ~0.3 s after idling through pipeline builds, then gemv32sg in
  // 3.5 ms and gemv4 in 5.9 (Llama-3.1-8B, f32): within the spell the last variant looks fastest here.
  const names = ['gemv32sg', 'gemv32', 'gemv4sg', 'gemv4'];
  /** @type {Record<string, number>} */
  const cost = { gemv32sg: 0.0035, gemv32: 0.0059, gemv4sg: 0.0059, gemv4: 0.0059 };
  let slowUntil = 0;
  const built = new Set();
  /** @param {string} n */
  const build = (n) => { if (!built.has(n)) { built.add(n); clock += 500; slowUntil = clock + 300; } };
  const model = {
    decodeVariant: '', past: 0, capacity: 4416,
    plan: { variant_features: { gemv32sg: ['subgroups'], gemv4sg: ['subgroups'] } },
    /** @param {string} n */
    async useDecodeVariant(n) { build(n); this.decodeVariant = n; },
    /** @param {string} _kind @param {string[]} list */
    async prepareVariants(_kind, list) { list.forEach(build); },
    reset() { this.past = 0; },
    async nextToken() { return 0; },
    decode() { clock += clock < slowUntil ? 16 - names.indexOf(this.decodeVariant) : cost[this.decodeVariant] * 1000; },
  };
  const times = await timeDecodeVariants(/** @type {any} */ (model), names);
  const best = Object.entries(times).sort((a, b) => a[1] - b[1])[0];
  assert.equal(best[0], 'gemv32sg');
  assert.ok(Math.abs(best[1] - 0.0035) < 1e-9, String(best[1]));
});

test('decode rounds after the first last at least ROUND_S where steps are short', async () => {
  // a round carries the read of its last token and the host's hiccups, which 16 short steps did not
  // outweigh on an H100 through Dawn (tests/test_tuning.py has the Python twin)
  for (const [stepS, want] of [[0.0035, 16], [0.0005, 100], [0.00001, MAX_ROUND_STEPS]]) {
    /** @type {number[]} */
    const rounds = [];
    let steps = 0;
    const model = {
      decodeVariant: '', past: 0, capacity: 4416, plan: { variant_features: {} },
      /** @param {string} n */
      async useDecodeVariant(n) { this.decodeVariant = n; },
      async prepareVariants() {},
      reset() { this.past = 0; },
      async nextToken() { if (steps) rounds.push(steps); steps = 0; return 0; },
      decode() { clock += stepS * 1000; steps++; },
    };
    await timeDecodeVariants(/** @type {any} */ (model), ['a', 'b']);
    assert.deepEqual(rounds.slice(-8), [4, 4, want, want, want, want, want, want]);
  }
  assert.equal(roundSteps(0.0005, 16, 40), 40); // within the cache's free positions
  assert.equal(roundSteps(0.2, 16), 16);
});

test('a software adapter is known by its info, not by a slow step', () => {
  const adapter = (/** @type {any} */ info) => /** @type {any} */ ({ info });
  assert.ok(softwareAdapter(adapter({ vendor: 'google', device: 'swiftshader-device-subzero-', isFallbackAdapter: true })));
  assert.ok(softwareAdapter(adapter({ description: 'llvmpipe (LLVM 15.0.6, 256 bits)' })));
  assert.ok(!softwareAdapter(adapter({ vendor: 'nvidia', description: 'NVIDIA H100 80GB HBM3', isFallbackAdapter: false })));
  assert.ok(!softwareAdapter(null));
});

test('a GPU times every prefill variant however slow its one-token step', async () => {
  // An H100 took 355 ms for the 8B's first one-token prefill step and 117 for the next (a whole token
  // tile's work): the probe meant for software adapters kept the rule, where q8 ran 117 ms a chunk
  // against 216. Only a software adapter takes that shortcut now.
  /** @type {Record<string, number>} */
  const chunk = { rule: 0.216, tile32: 0.251, q8: 0.117 };
  let first = true;
  const model = {
    adapter: { info: { vendor: 'nvidia', description: 'NVIDIA H100 80GB HBM3' } },
    prefillVariant: '', chunk: 512, capacity: 4416, config: { vocab_size: 128256 },
    /** @param {string} n */
    async usePrefillVariant(n) { this.prefillVariant = n; },
    async prepareVariants() {},
    reset() {},
    async nextToken() { return 0; },
    /** @param {number[]} ids */
    async prefill(ids) {
      clock += 1000 * (first ? 0.355 : Math.max(0.117, chunk[this.prefillVariant] * ids.length / 512));
      first = false;
    },
  };
  const times = await timePrefillVariants(/** @type {any} */ (model), Object.keys(chunk));
  assert.deepEqual(Object.keys(times).sort(), Object.keys(chunk).sort());
  assert.equal(Object.entries(times).sort((a, b) => a[1] - b[1])[0][0], 'q8');
});

/**
 * A prefill-only model on a software adapter whose steps cost `cost[variant]` seconds on the simulated
 * clock whatever their length (a whole token tile's work), recording the variants whose kernels compile.
 * @param {Record<string, number>} cost @param {Record<string, number>} tiles token tile of each variant
 */
function slowSoftwareModel(cost, tiles) {
  const built = new Set();
  const model = {
    adapter: { info: { vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' } },
    plan: { prefill_variants: Object.fromEntries(Object.entries(tiles).map(([n, t]) => [n, [
      { kernel: 'embed', bind_group: 0, workgroups: [1, 1, 1], tokens_per_y: 1 },
      { kernel: `matmul_${n}`, bind_group: 1, workgroups: [1, 1, 1], tokens_per_y: t },
      { kernel: 'head', bind_group: 2, workgroups: [1, 1, 1] }]])) },
    prefillVariant: 'rule', chunk: 128, capacity: 2048, config: { vocab_size: 49152 },
    /** @param {string} n */
    async usePrefillVariant(n) { built.add(n); this.prefillVariant = n; },
    /** @param {string} _kind @param {string[]} list */
    async prepareVariants(_kind, list) { list.forEach((n) => built.add(n)); },
    reset() {},
    async nextToken() { return 0; },
    async prefill() { clock += 1000 * cost[this.prefillVariant]; },
  };
  return { model, built };
}

test('a slow software adapter probes one token of each small-tile prefill variant, never builds the large', async () => {
  // Lavapipe, the embedded SmolLM2-135M (f16), seconds a one-token step: rule (32-token tiles) 7.0-7.5,
  // q8 (64) 4.9-5.3, the 128-token tiles 18.4-20.1; here the large tiles are made the fastest, and
  // still never built (tests/test_tuning.py has the Python twin).
  const tiles = { rule: 32, tile128: 128, q8: 64, wide128: 128, dbuf128: 128 };
  const { model, built } = slowSoftwareModel({ rule: 7.2, tile128: 0.5, q8: 5.1, wide128: 0.5, dbuf128: 0.5 }, tiles);
  assert.equal(tokenTile(/** @type {any} */ (model.plan), 'q8'), 64);
  const times = await timePrefillVariants(/** @type {any} */ (model), Object.keys(tiles));
  assert.deepEqual(Object.keys(times).sort(), ['q8', 'rule']);
  assert.equal(Object.entries(times).sort((a, b) => a[1] - b[1])[0][0], 'q8');
  assert.ok(Math.abs(times.q8 - 5.1) < 1e-9, String(times.q8));
  assert.deepEqual([...built].sort(), ['q8', 'rule']);
  assert.equal(model.prefillVariant, 'rule'); // left on the variant it had
});
