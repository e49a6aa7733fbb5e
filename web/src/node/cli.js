#!/usr/bin/env node
/// <reference types="node" />
// node web/src/node/cli.js <package-dir-or-url> [options]: generate from a package on Dawn and print
// prefill and decode tok/s, measured as `webllm bench` measures them (best of --repeat):
//   prefill    --prompt-tokens random ids, from an empty cache, until the sampled id is readable;
//   decode     --decode-tokens steps submitted back to back after --context tokens (GPU-only);
//   streaming  `generate` with every id read back, clock from the first token (prefill excluded).

import { parseArgs } from 'node:util';
import { dawnOptions, loadModel, nodeGpu, releaseGpu } from './index.js';
import { adapterName } from '../runtime/device.js';
import { WebLLMError } from '../runtime/errors.js';
import { Tokenizer } from '../engine/tokenizer.js';
import { nodeFetch } from './files.js';

const USAGE = `usage: node web/src/node/cli.js <package-dir-or-url> [options]
  --prompt-ids 1,2,3     generate after these token ids (default: random ids)
  --prompt "text"        generate after this text (with the package's tokenizer; prints the reply)
  --max-tokens N         tokens to generate and print (default 32)
  --prompt-tokens N      prompt length of the prefill figure (default 128)
  --decode-tokens N      decode steps of the decode figures (default 128)
  --context N            tokens in the KV cache before the decode figures (default 1)
  --repeat N             repetitions; the best is reported (default 3)
  --profile f16|f32      device profile (default: the first the device runs)
  --decode-variant NAME  force a decode variant (default: the fastest, timed once and cached)
  --prefill-variant NAME force a prefill variant (default: the fastest, timed once and cached)
  --context-window N     KV capacity to allocate (default: the package's, lowered to fit)
  --dawn OPTIONS         Dawn options, ';'-separated (default $WEBLLM_DAWN;
                         e.g. enable-dawn-features=disable_workgroup_init)
  --json                 print one JSON object`;

/** A deterministic pseudo-random id list (the ids do not matter for speed). @param {number} n @param {number} vocab */
function randomIds(n, vocab) {
  let x = 0x9e3779b9;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  });
}

async function main() {
  const { values: a, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'prompt-ids': { type: 'string' }, prompt: { type: 'string' }, 'max-tokens': { type: 'string', default: '32' },
      'prompt-tokens': { type: 'string', default: '128' }, 'decode-tokens': { type: 'string', default: '128' },
      context: { type: 'string', default: '1' }, repeat: { type: 'string', default: '3' }, profile: { type: 'string' },
      'decode-variant': { type: 'string' }, 'prefill-variant': { type: 'string' }, 'context-window': { type: 'string' }, dawn: { type: 'string' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (a.help || positionals.length !== 1) {
    console.log(USAGE);
    return a.help ? 0 : 2;
  }
  if (a.dawn) nodeGpu(dawnOptions(a.dawn));
  const log = a.json ? () => {} : (/** @type {string} */ s) => console.error(s);
  const t0 = performance.now();
  let last = '';
  const model = await loadModel(positionals[0], {
    profile: a.profile, decodeVariant: a['decode-variant'], prefillVariant: a['prefill-variant'],
    contextWindow: a['context-window'] === undefined ? undefined : Number(a['context-window']),
    onProgress: (p) => { if (p.phase !== last || p.phase !== 'weights') log(p.text); last = p.phase; },
  });
  const loadS = (performance.now() - t0) / 1000;
  try {
    const vocab = model.config.vocab_size;
    const sync = () => model.nextToken();
    // --- generation
    let prompt;
    /** @type {((ids: number[]) => string) | null} */
    let detok = null;
    if (a.prompt !== undefined) {
      const meta = /** @type {import('../engine/tokenizer.js').TokenizerMeta} */ (model.manifest.tokenizer);
      const res = await nodeFetch(new URL(meta.file, model.url));
      if (!res.ok) throw new WebLLMError(`${meta.file}: HTTP ${res.status} for the tokenizer`);
      const tok = new Tokenizer(await res.json(), meta);
      prompt = tok.encode(a.prompt);
      detok = (ids) => tok.decode(ids);
    } else if (a['prompt-ids']) {
      prompt = a['prompt-ids'].split(',').map(Number);
    } else {
      prompt = randomIds(8, vocab);
    }
    const stops = model.manifest.tokenizer.eos_token_ids ?? [];
    model.reset();
    /** @type {number[]} */
    const ids = [];
    for await (const t of model.generate(prompt, Number(a['max-tokens']), a.prompt !== undefined ? stops : [])) ids.push(t);
    log(`prompt ${prompt.join(',')}\ngenerated ${ids.join(',')}`);
    if (detok) log(detok(ids));

    // --- speed, as `webllm bench`
    const P = Number(a['prompt-tokens']), D = Number(a['decode-tokens']), R = Number(a.repeat);
    const pIds = randomIds(Math.min(P, model.capacity), vocab);
    const ctx = randomIds(Math.max(1, Number(a.context)), vocab);
    model.reset();
    await model.prefill(pIds.slice(0, 16));
    model.decode();
    await sync();
    const prefill = [], decode = [], streaming = [];
    for (let r = 0; r < R; r++) {
      model.reset();
      await sync();
      let t = performance.now();
      await model.prefill(pIds);
      await sync();
      prefill.push(pIds.length / ((performance.now() - t) / 1000));
      model.reset();
      await model.prefill(ctx);
      await sync();
      t = performance.now();
      for (let i = 0; i < D; i++) model.decode();
      await sync();
      decode.push(D / ((performance.now() - t) / 1000));
      model.reset();
      let n = 0;
      for await (const _ of model.generate(ctx, D + 1)) {
        if (n === 0) t = performance.now();
        n += 1;
      }
      streaming.push((n - 1) / ((performance.now() - t) / 1000));
    }
    const res = {
      runtime: 'js-dawn', adapter: adapterName(model.adapter), profile: model.profile,
      quantization: model.manifest.quantization, layers: model.config.num_hidden_layers,
      dispatches_per_decode_step: model.plan.decode_variants[model.decodeVariant].length,
      decode_variant: model.decodeVariant, prefill_variant: model.prefillVariant, context_window: model.capacity, load_s: loadS,
      prefill_tokens: pIds.length, prefill_tok_s: Math.max(...prefill), decode_context: ctx.length,
      decode_tok_s: Math.max(...decode), generate_tok_s_with_readback: Math.max(...streaming), generated: ids,
    };
    if (a.json) {
      console.log(JSON.stringify(res));
    } else {
      console.log(`${res.adapter}, profile ${res.profile}, ${res.quantization}, ${res.dispatches_per_decode_step} `
        + `dispatches per decode step; variants: decode ${res.decode_variant}, prefill ${res.prefill_variant}; `
        + `loaded in ${loadS.toFixed(1)} s`);
      console.log(`prefill  ${res.prefill_tokens} tokens: ${res.prefill_tok_s.toFixed(1)} tok/s`);
      console.log(`decode   (after ${ctx.length} tokens): ${res.decode_tok_s.toFixed(1)} tok/s on the GPU, `
        + `${res.generate_tok_s_with_readback.toFixed(1)} tok/s streaming ids back`);
    }
    return 0;
  } finally {
    model.destroy();
    releaseGpu();
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  if (e instanceof WebLLMError) {
    console.error(`error: ${e.message}`);
    process.exitCode = 1;
  } else {
    console.error(e);
    process.exitCode = 1;
  }
});
