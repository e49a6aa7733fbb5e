#!/usr/bin/env node
/// <reference types="node" />
// node web/src/node/conformance.js <fixture-dir> [--profile f16|f32] [--decode-variant NAME]: run a
// conformance fixture (tests/conformance/) on Dawn, one line per case, as
// `python -m webllm.runtime.conformance` does natively. Exit status 1 when a case fails.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, releaseGpu } from './index.js';
import { runConformance } from '../runtime/conformance.js';
import { adapterName } from '../runtime/device.js';
import { WebLLMError } from '../runtime/errors.js';

async function main() {
  const { values: a, positionals } = parseArgs({ allowPositionals: true, options: {
    profile: { type: 'string' }, 'decode-variant': { type: 'string' } } });
  if (positionals.length !== 1) {
    console.log('usage: node web/src/node/conformance.js <fixture-dir> [--profile f16|f32] [--decode-variant NAME]');
    return 2;
  }
  const fixture = positionals[0];
  let expected;
  try {
    expected = JSON.parse(readFileSync(join(fixture, 'expected.json'), 'utf8'));
  } catch (e) {
    throw new WebLLMError(`${join(fixture, 'expected.json')}: cannot be read (${/** @type {Error} */ (e).message})`);
  }
  const model = await loadModel(join(fixture, expected.package), { profile: a.profile, decodeVariant: a['decode-variant'] });
  try {
    console.log(`${adapterName(model.adapter)}, profile ${model.profile}, decode ${model.decodeVariant}`);
    const results = await runConformance(model, expected);
    for (const r of results) console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: ${r.detail}`);
    const failed = results.filter((r) => !r.ok).length;
    console.log(`${results.length - failed} passed, ${failed} failed`);
    return failed || !results.length ? 1 : 0;
  } finally {
    model.destroy();
    releaseGpu();
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(e instanceof WebLLMError ? `error: ${e.message}` : e);
  process.exitCode = 1;
});
