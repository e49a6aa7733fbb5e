/// <reference types="node" />
// Parity with the native runtime on the same package, profile and decode variant: token ids exactly,
// logits within f32 tolerance. Dawn runs with its default toggles here: what a browser runs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, releaseGpu } from '../src/node/index.js';
import { assertClose, collect, reference } from './helpers.js';

const ref = reference();
const skip = ref ? false : 'needs the reference from tests/web_node.py';
/** @type {import('../src/runtime/model.js').Model} */
let model;

before(async () => {
  if (!ref) return;
  model = await loadModel(ref.package, { profile: ref.profile, decodeVariant: ref.decode_variant, prefillVariant: ref.prefill_variant });
});
after(() => { model?.destroy(); releaseGpu(); });

test('greedy generation equals the native runtime', { skip }, async () => {
  if (!ref) return;
  model.reset();
  assert.deepEqual(await collect(model.generate(ref.prompt, ref.greedy.length)), ref.greedy);
  assert.equal(model.past, ref.greedy_past);
});

test('seeded sampling equals the native runtime', { skip }, async () => {
  if (!ref) return;
  model.reset();
  const { temperature, top_p, seed, ids } = ref.seeded;
  model.setSampling({ temperature, top_p, seed });
  assert.deepEqual(await collect(model.generate(ref.prompt, ids.length)), ids);
  model.setSampling();
});

test('a package with the split sampler (three dispatches) gives the native greedy and seeded ids', { skip }, async () => {
  if (!ref) return;
  const { package: pkg, prompt, greedy, seeded } = ref.split;
  const m = await loadModel(pkg, { profile: ref.profile, decodeVariant: ref.decode_variant, prefillVariant: ref.prefill_variant });
  try {
    assert.deepEqual(await collect(m.generate(prompt, greedy.length)), greedy);
    m.reset();
    const { ids, ...sampling } = seeded;
    m.setSampling(sampling);
    assert.deepEqual(await collect(m.generate(prompt, ids.length)), ids);
  } finally {
    m.destroy();
  }
});

test('a generation ending on a stop id leaves the native runtime state (past, logits, next step)', { skip }, async () => {
  if (!ref) return;
  model.reset();
  assert.deepEqual(await collect(model.generate(ref.prompt, 24, ref.stop.stop_ids)), ref.stop.ids);
  assert.equal(model.past, ref.stop.past);
  assertClose(await model.logits(), ref.stop.logits);
  model.decode();
  assert.equal(await model.nextToken(), ref.stop.next);
});

test('a generation closed early by its caller leaves the native runtime state', { skip }, async () => {
  if (!ref) return;
  model.reset();
  const got = [];
  for await (const t of model.generate(ref.prompt, 24)) {
    got.push(t);
    if (got.length === 4) break;
  }
  // the native runtime has submitted the step after the 4th token: its next id is the 5th greedy id
  assert.equal(model.past, ref.prompt.length + 4);
  assert.equal(await model.nextToken(), ref.greedy[4]);
});

test('chunked prefill and a KV rewind give the native logits', { skip }, async () => {
  if (!ref) return;
  model.reset();
  await model.prefill(ref.long_prompt);
  assert.equal(await model.nextToken(), ref.long.next);
  assertClose(await model.logits(), ref.long.logits);
  model.truncate(ref.rewind.keep);
  await model.prefill(ref.rewind.suffix);
  assert.equal(await model.nextToken(), ref.rewind.next);
  assertClose(await model.logits(), ref.rewind.logits);
});

test('decode after 150 tokens (decode attention over several chunks per split) gives the native logits', { skip }, async () => {
  if (!ref) return;
  const { prompt, steps, ids, next, logits } = ref.long_decode;
  model.reset();
  await model.prefill(prompt);
  const got = [];
  for (let i = 0; i < steps; i++) {
    got.push(await model.nextToken());
    model.decode();
  }
  assert.deepEqual(got, ids);
  assert.equal(await model.nextToken(), next);
  assertClose(await model.logits(), logits);
});
