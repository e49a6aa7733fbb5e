/// <reference types="node" />
// Variants (FORMAT.md, version 4): every prefill and decode variant gives the native runtime's ids and
// logits with the same variant, subgroup ones and the wide prefill (32 KiB of workgroup memory) included
// (Dawn's SwiftShader has 4-wide subgroups, lavapipe's native run 8-wide: the sums meet in another
// order, within f32 tolerance); a device without the subgroups feature and with WebGPU's default
// limits runs the fallbacks and never compiles a subgroup or wide kernel; the timing of both phases
// is cached, and a cached load builds only the winners.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../src/runtime/model.js';
import { fileTuningStore, nodeFetch, toUrl } from '../src/node/files.js';
import { nodeGpu, releaseGpu, requestNodeDevice } from '../src/node/index.js';
import { assertClose, collect, reference } from './helpers.js';

const ref = reference();
const skip = ref ? false : 'needs the reference from tests/web_node.py';
const tmp = mkdtempSync(join(tmpdir(), 'webllm-web-variants-'));
/** @type {{adapter: GPUAdapter, device: GPUDevice}} */
let gpu;

before(async () => {
  if (!ref) return;
  nodeGpu(['enable-dawn-features=disable_workgroup_init']);
  gpu = await requestNodeDevice();
});
after(() => {
  gpu?.device.destroy();
  releaseGpu();
});

/** @param {import('../src/runtime/model.js').LoadOptions} [options] */
function load(options = {}) {
  const v = /** @type {NonNullable<typeof ref>} */ (ref).variants;
  return Model.load(toUrl(v.package), { ...gpu, fetch: nodeFetch, tuningStore: null, profile: 'f32',
    prefillVariant: 'rule', decodeVariant: 'gemv32', ...options });
}

test('every prefill and decode variant gives the native ids and logits', { skip }, async () => {
  if (!ref) return;
  const v = ref.variants;
  const m = await load();
  assert.ok(gpu.device.features.has('subgroups'), 'SwiftShader offers subgroups: the subgroup variants run here');
  assert.deepEqual(m.prefillVariants, Object.keys(v.prefill));
  assert.deepEqual(m.decodeVariants, Object.keys(v.decode));
  // the int8 variants first (q4s weights: activations passed between the decode matmuls as int8 blocks)
  const base = ['gemv32sg', 'gemv32', 'gemv4sg', 'gemv4'];
  assert.deepEqual(m.decodeVariants, [...base.map((n) => `q8${n}`), ...base]);
  assert.ok(gpu.device.limits.maxComputeWorkgroupStorageSize >= 32768, 'SwiftShader offers 32 KiB: wide128, dbuf128 run here');
  assert.deepEqual(m.prefillVariants, ['rule', 'tile64', 'q8', 'wide128', 'dbuf128']);
  for (const [name, want] of Object.entries(v.prefill)) {
    await m.usePrefillVariant(name);
    m.reset();
    await m.prefill(v.prompt);
    assert.equal(await m.nextToken(), want.next, `prefill ${name}`);
    assertClose(await m.logits(), want.logits);
  }
  await m.usePrefillVariant('rule');
  for (const [name, want] of Object.entries(v.decode)) {
    await m.useDecodeVariant(name);
    m.reset();
    assert.deepEqual(await collect(m.generate(v.prompt.slice(0, 6), want.ids.length)), want.ids, `decode ${name}`);
    // int8 variants: an input within float noise of a half step rounds the other way on one adapter, and
    // the output head reads int8 blocks too, so one such flip reaches the logits directly (SwiftShader
    // against lavapipe: 5e-3 of the largest); tests/tiny_models.py TOL_INT8 (f32) bounds the same effect
    assertClose(await m.logits(), want.logits, name.startsWith('q8') ? 3e-2 : 1e-4);
  }
  m.destroy();
});

test('a device without subgroups or 32 KiB of workgroup memory runs the fallbacks and compiles neither', { skip }, async () => {
  if (!ref) return;
  const v = ref.variants;
  const adapter = /** @type {GPUAdapter} */ (await nodeGpu().requestAdapter()); // an adapter gives one device
  const device = await adapter.requestDevice({ requiredFeatures: [] }); // and WebGPU's default limits
  assert.ok(!device.features.has('subgroups'));
  assert.equal(device.limits.maxComputeWorkgroupStorageSize, 16384);
  // timed at load: every usable variant is compiled, and Dawn refuses `enable subgroups;` without the
  // feature, and a 32 KiB kernel beyond the device's limit
  const m = await Model.load(toUrl(v.package), { device, adapter, fetch: nodeFetch, tuningStore: null, profile: 'f32' });
  assert.deepEqual(m.decodeVariants, ['q8gemv32', 'q8gemv4', 'gemv32', 'gemv4']);
  assert.deepEqual(m.prefillVariants, ['rule', 'tile64', 'q8']);
  assert.ok([...m._lists.keys()].every((k) => !k.endsWith('sg') && !/wide|dbuf/.test(k)));
  await assert.rejects(load({ device, adapter, decodeVariant: 'gemv32sg' }), /needs subgroups/);
  await assert.rejects(load({ device, adapter, prefillVariant: 'wide128' }),
    /needs maxComputeWorkgroupStorageSize 32768 \(device: 16384\)/);
  await m.useDecodeVariant('gemv32');
  await m.usePrefillVariant('rule'); // the native ids came after the rule's prefill (the timing may pick q8)
  m.reset();
  assert.deepEqual(await collect(m.generate(v.prompt.slice(0, 6), v.decode.gemv32.ids.length)), v.decode.gemv32.ids);
  m.destroy();
  device.destroy();
});

test('a device of 256 invocations a workgroup skips the wide decode variants and compiles none of them', { skip }, async () => {
  if (!ref) return;
  const w = ref.wide;
  assert.equal(gpu.device.limits.maxComputeInvocationsPerWorkgroup, 256, 'SwiftShader offers 256');
  const m = await Model.load(toUrl(w.package), { ...gpu, fetch: nodeFetch, tuningStore: null, profile: 'f32',
    prefillVariant: 'rule', decodeVariant: 'q8gemv32sg' });
  assert.deepEqual(m.decodeVariants, w.decode_variants.filter((n) => !n.endsWith('w')));
  assert.deepEqual([...m._lists.keys()].sort(), ['decode.q8gemv32sg', 'prefill.rule']);
  await assert.rejects(Model.load(toUrl(w.package), { ...gpu, fetch: nodeFetch, tuningStore: null, profile: 'f32',
    decodeVariant: 'q8gemv32sgw' }), /needs maxComputeInvocationsPerWorkgroup 512 \(device: 256\)/);
  assert.deepEqual(await collect(m.generate(w.prompt, w.ids.length)), w.ids);
  m.destroy();
});

test('prefill and decode variants are timed once, then read from the store; a cached load builds only the winners', { skip }, async () => {
  if (!ref) return;
  const path = join(tmp, 'tuning.json');
  const store = fileTuningStore(path);
  /** @type {string[]} */
  const phases = [];
  let m = await load({ tuningStore: store, prefillVariant: undefined, decodeVariant: undefined,
    onProgress: (p) => phases.push(p.phase) });
  assert.ok(phases.includes('tuning'));
  const chosen = [m.prefillVariant, m.decodeVariant];
  const saved = JSON.parse(readFileSync(path, 'utf8'));
  assert.deepEqual(Object.keys(saved).map((k) => k.split('|')[3]).sort(), ['decode', 'prefill']);
  assert.deepEqual(Object.values(saved).sort(), [...chosen].sort());
  assert.equal(m.past, 0);
  m.destroy();
  phases.length = 0;
  m = await load({ tuningStore: store, prefillVariant: undefined, decodeVariant: undefined,
    onProgress: (p) => phases.push(p.phase) });
  assert.ok(!phases.includes('tuning'));
  assert.deepEqual([m.prefillVariant, m.decodeVariant], chosen);
  assert.deepEqual([...m._lists.keys()].sort(), [`decode.${chosen[1]}`, `prefill.${chosen[0]}`]);
  // the package part of the key: the first shard's sha256 and the plan's digest
  assert.deepEqual(new Set(Object.keys(saved).map((k) => k.split('|')[2])),
    new Set([`${m.manifest.shards[0].sha256}:${m.planDigest}`]));
  m.destroy();
  // the same weights with another plan (its kernels renamed, as other sources would be) are timed afresh
  /** @type {typeof nodeFetch} */
  const renamed = async (input, init) => {
    const res = await nodeFetch(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (!/plan-f32\.json$/.test(url)) return res;
    let text = await res.text();
    for (const name of Object.keys(JSON.parse(text).kernels)) text = text.replaceAll(`"${name}"`, `"${name}b"`);
    return new Response(text);
  };
  phases.length = 0;
  m = await load({ tuningStore: store, prefillVariant: undefined, decodeVariant: undefined, fetch: renamed,
    onProgress: (p) => phases.push(p.phase) });
  assert.ok(phases.includes('tuning'));
  m.destroy();
});

test('every split count of decode attention gives the native ids and logits; the choice is timed and cached', { skip }, async () => {
  if (!ref) return;
  const k = ref.kv_splits;
  /** @param {import('../src/runtime/model.js').LoadOptions} options */
  const open = (options) => Model.load(toUrl(k.package), { ...gpu, fetch: nodeFetch, tuningStore: null, profile: 'f32',
    decodeVariant: 'gemv32', prefillVariant: 'rule', ...options });
  for (const [n, want] of Object.entries(k.runs)) {
    const m = await open({ kvSplits: Number(n) });
    assert.equal(m.kvSplits, Number(n));
    assert.deepEqual(m.kvSplitsChoices, [1, 2]);
    await m.prefill(k.prompt);
    const ids = [];
    for (let i = 0; i < k.steps; i++) {
      ids.push(await m.nextToken());
      m.decode();
    }
    assert.deepEqual(ids, want.ids, `kv_splits ${n}`);
    assert.equal(await m.nextToken(), want.next);
    assertClose(await m.logits(), want.logits);
    m.setSampling({ temperature: 0.5 }); // sampling fields return to their defaults; the split count stays
    assert.equal(m._values.kv_splits, Number(n));
    assert.ok(!('kv_splits' in m.sampling));
    m.destroy();
  }
  await assert.rejects(open({ kvSplits: 3 }), /kv_splits 3: this package offers 1, 2/);
  const store = fileTuningStore(join(tmp, 'kv-splits.json'));
  const m = await open({ tuningStore: store });
  assert.ok([1, 2].includes(m.kvSplits));
  const saved = JSON.parse(readFileSync(join(tmp, 'kv-splits.json'), 'utf8'));
  assert.deepEqual(Object.entries(saved).filter(([key]) => key.includes('|splits.gemv32|')).map(([, v]) => v), [String(m.kvSplits)]);
  m.destroy();
});
