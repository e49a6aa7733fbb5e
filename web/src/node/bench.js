#!/usr/bin/env node
/// <reference types="node" />
// node web/src/node/bench.js <package-dir-or-url> [options]: `webllm bench` through the JavaScript
// runtime on Dawn. The same figures with the same definitions (web/src/evaluation/speed.js, the twin
// of webllm/evaluation/speed.py) and the same JSON fields, plus "host": "dawn"; `webllm bench --dawn`
// runs it beside the native measurement.
//
// A profile this adapter cannot run (Dawn on NVIDIA has no shader-f16) is not a failure: with --json
// the result is {"host": "dawn", "adapter": ..., "unavailable": "<why>"} and the exit status 0. Any
// other failure prints {"host": "dawn", "error": "<why>"} (exit status 1), so a caller always reads
// one JSON line from stdout.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { adapterName } from '../runtime/device.js';
import { AdapterError, WebLLMError } from '../runtime/errors.js';
import { benchModel } from '../evaluation/speed.js';
import { dawnOptions, loadModel, nodeGpu, releaseGpu } from './index.js';

const USAGE = `usage: node web/src/node/bench.js <package-dir-or-url> [options]
  --prompt-tokens 512,1024   prompt lengths for prefill and time to first token
  --context 0,4096           KV lengths to decode after (capped by the context window)
  --decode-tokens N          tokens to decode per measurement (default 128)
  --repeat N                 repetitions; the best is reported (default 3)
  --profile f16|f32          device profile (default: the first the device runs)
  --decode-variant NAME      force a decode variant (default: the fastest, timed once and cached)
  --prefill-variant NAME     force a prefill variant (default: the fastest, timed once and cached)
  --no-bandwidth             skip the streaming-read measurement (and the roofline ratio)
  --stream-read-mib N        size of the streaming-read buffer (default 1024, capped by the binding limit)
  --dawn OPTIONS             Dawn options, ';'-separated (default $WEBLLM_DAWN)
  --quiet                    no loading progress on stderr
  --json                     print one JSON object`;

const STREAM_READ = new URL('../../../webllm/kernels/wgsl/stream_read.wgsl', import.meta.url);

/** "512,1024" -> [512, 1024], each an integer >= min. @param {string} name @param {string} text @param {number} min */
function intList(name, text, min) {
  const out = text.split(',').filter((s) => s.trim()).map(Number);
  if (!out.length || out.some((v) => !Number.isInteger(v) || v < min)) {
    throw new WebLLMError(`--${name} ${text}: integers of at least ${min}, comma-separated`);
  }
  return out;
}

/** The adapter's name without a device (for a profile it cannot run). */
async function nodeAdapterName() {
  return adapterName(await nodeGpu().requestAdapter({ powerPreference: 'high-performance' }));
}

/** @param {Record<string, any>} res @returns {string} */
function report(res) {
  const lines = [`dawn: ${res.adapter}, profile ${res.profile}, ${res.quantization}, ${res.layers} layers, `
    + `context window ${res.context_window}`,
  `load ${res.load_s.toFixed(1)} s; GPU memory ${(res.gpu_memory_bytes / 2 ** 30).toFixed(2)} GiB; `
    + `${res.dispatches_per_decode_step} dispatches per decode step; variants: decode ${res.decode_variant}, `
    + `prefill ${res.prefill_variant}`];
  if (res.stream_read_gb_s !== undefined) lines.push(`streaming read, measured: ${res.stream_read_gb_s.toFixed(0)} GB/s`);
  for (const p of res.prefill) lines.push(`prefill ${p.tokens}: ${p.tok_s.toFixed(0)} tok/s, first token ${p.ttft_ms.toFixed(1)} ms`);
  for (const d of res.decode) {
    lines.push(`decode after ${d.context}: ${d.tok_s.toFixed(1)} tok/s GPU only, ${d.streaming_tok_s.toFixed(1)} streaming`
      + (d.roofline_ratio === undefined ? '' : `, roofline ratio ${d.roofline_ratio.toFixed(2)}`));
  }
  return lines.join('\n');
}

async function main() {
  const { values: a, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'prompt-tokens': { type: 'string', default: '512,1024' }, context: { type: 'string', default: '0,4096' },
      'decode-tokens': { type: 'string', default: '128' }, repeat: { type: 'string', default: '3' },
      profile: { type: 'string' }, 'decode-variant': { type: 'string' }, 'prefill-variant': { type: 'string' },
      'no-bandwidth': { type: 'boolean', default: false }, 'stream-read-mib': { type: 'string', default: '1024' },
      dawn: { type: 'string' }, quiet: { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (a.help || positionals.length !== 1) {
    console.log(USAGE);
    return a.help ? 0 : 2;
  }
  const options = {
    promptTokens: intList('prompt-tokens', a['prompt-tokens'], 1), contexts: intList('context', a.context, 0),
    decodeTokens: intList('decode-tokens', a['decode-tokens'], 1)[0], repeat: intList('repeat', a.repeat, 1)[0],
    streamRead: a['no-bandwidth'] ? null : readFileSync(STREAM_READ, 'utf8'),
    streamReadBytes: intList('stream-read-mib', a['stream-read-mib'], 1)[0] * 2 ** 20,
  };
  nodeGpu(dawnOptions(a.dawn));
  const log = a.quiet ? () => {} : (/** @type {string} */ s) => console.error(s);
  const t0 = performance.now();
  let last = '';
  let model;
  try {
    model = await loadModel(positionals[0], {
      profile: a.profile, decodeVariant: a['decode-variant'], prefillVariant: a['prefill-variant'],
      onProgress: (p) => { if (p.phase !== last || p.phase !== 'weights') log(p.text); last = p.phase; },
    });
  } catch (e) {
    if (!(e instanceof AdapterError)) throw e;
    // this adapter cannot run the package (a feature or a limit): a result, not a failure
    const res = { host: 'dawn', adapter: await nodeAdapterName(), unavailable: e.message };
    console.log(a.json ? JSON.stringify(res) : `dawn: ${res.adapter}: unavailable: ${res.unavailable}`);
    return 0;
  }
  const loadS = (performance.now() - t0) / 1000;
  try {
    const res = { host: 'dawn', load_s: loadS, ...await benchModel(model, options), package: positionals[0] };
    console.log(a.json ? JSON.stringify(res) : report(res));
    return 0;
  } finally {
    model.destroy();
    releaseGpu();
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  const message = e instanceof Error ? e.message : String(e);
  if (!(e instanceof WebLLMError)) console.error(e); // a bug: keep its stack
  console.error(`error: ${message}`);
  if (process.argv.includes('--json')) console.log(JSON.stringify({ host: 'dawn', error: message }));
  process.exitCode = 1;
});
