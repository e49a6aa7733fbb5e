/// <reference types="node" />
// Loading from a static server: progress, the shard cache (a second load fetches no shard; a corrupt
// cached shard is fetched again), sha256 checks, version refusal, the memory fit, the variant cache.
// Dawn without workgroup zero-init here: SwiftShader then compiles the kernels 5x faster (parity.test.js
// runs the default toggles).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../src/runtime/model.js';
import { FolderCache, fileTuningStore, nodeFetch, toUrl } from '../src/node/files.js';
import { nodeGpu, releaseGpu, requestNodeDevice } from '../src/node/index.js';
import { fitCapacity, contextSize } from '../src/runtime/memory.js';
import { ContextWindowError, DeviceLostError, PackageError } from '../src/runtime/errors.js';
import { collect, reference, serve } from './helpers.js';

const ref = reference();
const skip = ref ? false : 'needs the reference from tests/web_node.py';
const tmp = mkdtempSync(join(tmpdir(), 'webllm-web-test-'));
/** @type {{adapter: GPUAdapter, device: GPUDevice}} */
let gpu;
/** @type {Awaited<ReturnType<typeof serve>>} */
let server;
const pkg = join(tmp, 'pkg');

before(async () => {
  if (!ref) return;
  cpSync(ref.package, pkg, { recursive: true });
  nodeGpu(['enable-dawn-features=disable_workgroup_init']);
  gpu = await requestNodeDevice();
  server = await serve(tmp);
});
after(async () => {
  await server?.close();
  gpu?.device.destroy();
  releaseGpu();
});

/** @param {string} url @param {import('../src/runtime/model.js').LoadOptions} [options] */
function load(url, options = {}) {
  return Model.load(url, { ...gpu, fetch: nodeFetch, tuningStore: null, decodeVariant: ref?.decode_variant,
    prefillVariant: ref?.prefill_variant, profile: 'f32', ...options });
}

const shardHits = () => [...server.hits].filter(([p]) => p.endsWith('.bin')).reduce((s, [, n]) => s + n, 0);

test('progress, then a second load from the cache fetches no shard, and a corrupt cached shard is fetched again', { skip }, async () => {
  if (!ref) return;
  const cache = new FolderCache(join(tmp, 'shards'));
  const manifest = JSON.parse(readFileSync(join(pkg, 'manifest.json'), 'utf8'));
  const total = manifest.shards.reduce((/** @type {number} */ s, /** @type {{nbytes: number}} */ x) => s + x.nbytes, 0);
  /** @type {import('../src/runtime/cache.js').Progress[]} */
  const events = [];
  let m = await load(`${server.url}pkg`, { cache, onProgress: (p) => events.push(p) });
  const phases = [...new Set(events.map((e) => e.phase))];
  assert.deepEqual(phases, ['manifest', 'weights', 'kernels', 'ready']);
  const weights = events.filter((e) => e.phase === 'weights');
  assert.ok(weights.every((e, i) => e.bytesTotal === total && (i === 0 || e.bytesDone >= weights[i - 1].bytesDone)));
  assert.equal(weights.at(-1)?.bytesDone, total);
  assert.equal(shardHits(), manifest.shards.length);
  assert.deepEqual(await collect(m.generate(ref.prompt, 8)), ref.greedy.slice(0, 8));
  m.destroy();

  server.hits.clear();
  events.length = 0;
  m = await load(`${server.url}pkg/`, { cache, onProgress: (p) => events.push(p) });
  assert.equal(shardHits(), 0, 'the second load fetched a shard');
  assert.match(events.filter((e) => e.phase === 'weights').at(-1)?.text ?? '', /cache/);
  m.destroy();

  const [cached] = readdirSync(join(tmp, 'shards'));
  const bytes = readFileSync(join(tmp, 'shards', cached));
  bytes[100] ^= 0xff;
  writeFileSync(join(tmp, 'shards', cached), bytes);
  server.hits.clear();
  m = await load(`${server.url}pkg`, { cache });
  assert.equal(shardHits(), 1);
  assert.deepEqual(await collect(m.generate(ref.prompt, 8)), ref.greedy.slice(0, 8));
  m.destroy();
  assert.notDeepEqual(readFileSync(join(tmp, 'shards', cached)), bytes, 'the cache still holds the corrupt copy');
});

test('a shard that fails its sha256 on the server is refused by name', { skip }, async () => {
  if (!ref) return;
  const bad = join(tmp, 'bad');
  cpSync(pkg, bad, { recursive: true });
  const shard = join(bad, 'weights-00000.bin');
  const bytes = readFileSync(shard);
  bytes[7] ^= 1;
  writeFileSync(shard, bytes);
  await assert.rejects(load(`${server.url}bad`, { cache: false }),
    (e) => e instanceof PackageError && /weights-00000\.bin: sha256 mismatch/.test(e.message));
});

test('an unknown format version is refused clearly', { skip }, async () => {
  if (!ref) return;
  const v9 = join(tmp, 'v9');
  cpSync(pkg, v9, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(v9, 'manifest.json'), 'utf8'));
  for (const version of [9, 3]) { // 3: before the variant limits of format 4
    writeFileSync(join(v9, 'manifest.json'), JSON.stringify({ ...manifest, format_version: version }));
    await assert.rejects(load(toUrl(v9)), (e) => e instanceof PackageError
      && new RegExp(`'format_version' is ${version}; this runtime reads version 4`).test(e.message));
  }
  await assert.rejects(load(`${server.url}nothing-here`), (e) => e instanceof PackageError && /manifest\.json: not found/.test(e.message));
});

test('the KV capacity is lowered to fit the binding limit, a budget, or an explicit context window', { skip }, async () => {
  if (!ref) return;
  const manifest = JSON.parse(readFileSync(join(pkg, 'manifest.json'), 'utf8'));
  const plan = JSON.parse(readFileSync(join(pkg, 'plan-f32.json'), 'utf8'));
  const buffers = plan.buffers.filter((/** @type {any} */ b) => !b.optional);
  const fixed = [...Object.values(manifest.tensors), ...buffers.filter((/** @type {any} */ b) => !b.per_context)]
    .reduce((/** @type {number} */ s, /** @type {any} */ t) => Math.max(s, t.size), 0);
  const kv = buffers.find((/** @type {any} */ b) => b.name.startsWith('k_cache'));
  // a binding limit below the full KV cache but above every other buffer
  const limit = Math.max(fixed, Math.floor(kv.size / 2));
  const expect = Math.min(...buffers.filter((/** @type {any} */ b) => b.per_context)
    .map((/** @type {any} */ b) => Math.floor(Math.floor(limit / 16) * 16 / b.per_context.bytes) * b.per_context.unit));
  assert.ok(expect < manifest.context_window);
  const m = await load(toUrl(pkg), { maxBindingSize: limit });
  assert.equal(m.capacity, expect);
  assert.ok(buffers.every((/** @type {any} */ b) => contextSize(b, m.capacity) <= limit));
  assert.deepEqual(await collect(m.generate(ref.prompt, 8)), ref.greedy.slice(0, 8));
  m.reset();
  await assert.rejects(m.prefill(new Array(expect + 1).fill(1)), ContextWindowError);
  m.destroy();

  const small = await load(toUrl(pkg), { contextWindow: 64 });
  assert.equal(small.capacity, 64);
  // every byte allocated: the tensors, and each plan buffer at its size for 64 tokens
  const tensorBytes = Object.values(manifest.tensors).reduce((/** @type {number} */ s, /** @type {any} */ t) => s + t.size, 0);
  assert.equal(small.gpuMemoryBytes, tensorBytes + buffers.reduce((/** @type {number} */ s, /** @type {any} */ b) => s + contextSize(b, 64), 0));
  assert.ok(small.gpuMemoryBytes < manifest.profiles.f32.memory_bytes);
  assert.deepEqual(await collect(small.generate(ref.prompt, 8)), ref.greedy.slice(0, 8));
  small.destroy();
  await assert.rejects(load(toUrl(pkg), { contextWindow: manifest.context_window + 1 }), ContextWindowError);
  await assert.rejects(load(toUrl(pkg), { contextWindow: 256, maxBindingSize: limit }), ContextWindowError);
});

test('fitCapacity: a memory budget lowers the context; one that holds nothing is refused', () => {
  const manifest = /** @type {any} */ ({ context_window: 1024, tensors: { w: { size: 1000 } } });
  const buffers = /** @type {any} */ ([{ name: 'a', size: 64 }, { name: 'kv', size: 1024 * 64, per_context: { unit: 1, bytes: 64 } },
    { name: 'part', size: 8 * 16, per_context: { unit: 128, bytes: 16 } }]);
  const limits = { maxBindingSize: 1 << 30, maxBufferSize: 1 << 30 };
  assert.equal(fitCapacity(manifest, buffers, limits), 1024);
  // 1064 fixed bytes + 64 per token + 16 per 128 tokens (rounded to 16)
  assert.equal(fitCapacity(manifest, buffers, { ...limits, maxMemoryBytes: 1064 + 64 * 100 + 16 }), 100);
  assert.equal(fitCapacity(manifest, buffers, { ...limits, maxBindingSize: 64 * 300 }), 300);
  assert.throws(() => fitCapacity(manifest, buffers, { ...limits, maxMemoryBytes: 1100 }), ContextWindowError);
});

test('decode variants are timed once per adapter and package, then read from the store', { skip }, async () => {
  if (!ref) return;
  const store = fileTuningStore(join(tmp, 'tuning.json'));
  /** @type {string[]} */
  const phases = [];
  let m = await load(toUrl(pkg), { tuningStore: store, decodeVariant: undefined, onProgress: (p) => phases.push(p.phase) });
  assert.ok(phases.includes('tuning'));
  const chosen = m.decodeVariant;
  assert.deepEqual(Object.values(JSON.parse(readFileSync(join(tmp, 'tuning.json'), 'utf8'))), [chosen]);
  assert.equal(m.past, 0);
  m.destroy();
  phases.length = 0;
  m = await load(toUrl(pkg), { tuningStore: store, decodeVariant: undefined, onProgress: (p) => phases.push(p.phase) });
  assert.ok(!phases.includes('tuning'));
  assert.equal(m.decodeVariant, chosen);
  m.destroy();
});

test('a lost device turns the next step into DeviceLostError', { skip }, async () => {
  if (!ref) return;
  const own = await requestNodeDevice();
  const m = await Model.load(toUrl(pkg), { ...own, fetch: nodeFetch, tuningStore: null, decodeVariant: ref.decode_variant,
    prefillVariant: ref.prefill_variant });
  own.device.destroy();
  await own.device.lost;
  await new Promise((ok) => setTimeout(ok, 0));
  assert.ok(m.lost);
  assert.throws(() => m.decode(), DeviceLostError);
  m.destroy();
});
