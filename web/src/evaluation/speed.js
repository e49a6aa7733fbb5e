// Speed of a loaded model on its device: the figures `webllm bench` reports, measured by the
// JavaScript runtime (the twin of webllm/evaluation/speed.py; same definitions, same JSON fields):
//
//   prefill    a random prompt from an empty cache until the sampled id is readable (time to first
//              token), best of `repeat`;
//   decode     after `context` tokens: `decodeTokens` steps submitted back to back, the id staying on
//              the GPU, timed to a readback after the last one ("GPU only"); and `generate` with every
//              id read back, the clock started at the first token so its prefill is excluded
//              ("streaming"); best of `repeat` each, over the same KV positions;
//   roofline   (bytes one decode step reads / streaming-read bandwidth) / time per step, the bandwidth
//              measured here with the native bench's kernel (webllm/kernels/wgsl/stream_read.wgsl).
//
// Runtime-neutral: the host passes the stream-read kernel's source (Node reads it from the repo).

import { adapterName } from '../runtime/device.js';

/** vec4<u32> each thread of the stream-read kernel reads (PER_THREAD in its template). */
const PER_THREAD = 16;

const now = () => performance.now() / 1000;

/**
 * A deterministic pseudo-random id list (the ids do not matter for speed).
 * @param {number} n @param {number} vocab @param {number} [seed]
 */
export function randomIds(n, vocab, seed = 0x9e3779b9) {
  let x = seed >>> 0;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % vocab;
  });
}

/**
 * Bytes per second a kernel reaches reading one large buffer (default 1 GiB, or the device's binding
 * limit if smaller), best of three timed batches of back-to-back dispatches in one compute pass.
 * @param {GPUDevice} device @param {string} template stream_read.wgsl's text
 * @param {{bytes?: number, seconds?: number}} [options]
 * @returns {Promise<{bytes_per_s: number, buffer_bytes: number}>}
 */
export async function streamReadBandwidth(device, template, { bytes = 2 ** 30, seconds = 0.3 } = {}) {
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  const perGroup = 256 * PER_THREAD * 16;
  const groups = Math.min(Math.floor(Math.min(bytes, limit) / perGroup), 65535);
  const nbytes = groups * perGroup;
  const src = device.createBuffer({ size: nbytes, usage: GPUBufferUsage.STORAGE, label: 'stream src' }); // zero-filled
  const out = device.createBuffer({ size: groups * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const module = device.createShaderModule({ code: template.replaceAll('{{PER_THREAD}}', String(PER_THREAD)) });
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [
    { binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: out } }] });

  /** Seconds from submit to a readback of `reps` dispatches (encoding excluded). @param {number} reps */
  const run = async (reps) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(groups, 1, 1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, read, 0, 4);
    const t = now();
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ); // waits for the queue
    read.unmap();
    return now() - t;
  };
  try {
    await run(1);
    const reps = Math.max(3, Math.min(200, Math.floor(seconds / Math.max(await run(1), 1e-6))));
    let best = Infinity;
    for (let i = 0; i < 3; i++) best = Math.min(best, (await run(reps)) / reps);
    return { bytes_per_s: nbytes / best, buffer_bytes: nbytes };
  } finally {
    src.destroy();
    out.destroy();
    read.destroy();
  }
}

/**
 * Bytes one decode step reads at `context` tokens of KV: weights (every matrix a layer or the output
 * head multiplies by, norms included; of the embedding only one row unless it is the head) and the
 * KV cache.
 * @param {import('../runtime/model.js').Model} model @param {number} context
 */
export function decodeBytes(model, context) {
  const cfg = /** @type {Record<string, any>} */ (model.config);
  const tied = Boolean(cfg.tie_word_embeddings);
  let weights = 0;
  for (const [name, t] of Object.entries(model.manifest.tensors)) {
    if (name.startsWith('rope_table') || (name.startsWith('embed') && !tied)) continue;
    weights += Number(/** @type {any} */ (t).nbytes);
  }
  // the KV cache's buffers by the plan's own rule (per_context: bytes per `unit` positions)
  let kv = 0;
  for (const b of model.plan.buffers) {
    if (b.per_context && (b.name.startsWith('k_cache') || b.name.startsWith('v_cache'))) {
      kv += Math.ceil(context / b.per_context.unit) * b.per_context.bytes;
    }
  }
  return { weights, kv };
}

/**
 * @typedef {{promptTokens?: number[], contexts?: number[], decodeTokens?: number, repeat?: number,
 *   streamRead?: string | null, streamReadBytes?: number}} BenchOptions
 *   `streamRead`: stream_read.wgsl's text (null: skip the bandwidth and the roofline ratio).
 */

/**
 * Measure a loaded model (see the header). Returns the fields speed.py's `bench` returns, but for
 * those of loading (`load_s`), which the host that loaded the model adds.
 * @param {import('../runtime/model.js').Model} model @param {BenchOptions} [options]
 */
export async function benchModel(model, options = {}) {
  const { promptTokens = [512, 1024], contexts = [0, 4096], decodeTokens = 128, repeat = 3 } = options;
  const vocab = model.config.vocab_size;
  const layers = /** @type {number} */ (model.config.num_hidden_layers);
  const info = /** @type {any} */ (model.adapter)?.info ?? {};
  const dispatches = model.plan.decode_variants[model.decodeVariant].length;
  /** @type {Record<string, any>} */
  const res = {
    adapter: adapterName(model.adapter), driver: info.description ?? '', profile: model.profile, quantization: model.manifest.quantization, layers,
    context_window: model.capacity, prefill_chunk: model.chunk, decode_variant: model.decodeVariant,
    prefill_variant: model.prefillVariant, kv_splits: model.kvSplits,
    dispatches_per_decode_step: dispatches, dispatches_per_layer: dispatches / layers,
    gpu_memory_bytes: model.gpuMemoryBytes,
  };
  let seed = 1;
  const ids = (/** @type {number} */ n) => randomIds(n, vocab, seed++);
  const sync = () => model.nextToken(); // a 4-byte readback waits for the queue

  // warm-up: some drivers compile pipelines on first use
  model.reset();
  await model.prefill(ids(Math.min(model.chunk, 16)));
  model.decode();
  await sync();

  res.prefill = [];
  for (let n of promptTokens) {
    n = Math.min(n, model.capacity - 1);
    const prompt = ids(n);
    let best = Infinity;
    for (let r = 0; r < repeat; r++) {
      model.reset();
      await sync();
      const t = now();
      await model.prefill(prompt);
      await sync(); // the first token (sampled on the GPU) is back: time to first token
      best = Math.min(best, now() - t);
    }
    res.prefill.push({ tokens: n, tok_s: n / best, ttft_ms: best * 1e3 });
  }

  res.decode = [];
  for (let ctx of contexts) {
    ctx = Math.max(1, Math.min(ctx, model.capacity - decodeTokens - 2));
    model.reset();
    await model.prefill(ids(ctx)); // filled once; each repeat decodes over the same positions
    await sync();
    let gpu = Infinity, streaming = Infinity;
    for (let r = 0; r < repeat; r++) {
      model.truncate(ctx);
      await sync();
      let t = now();
      for (let i = 0; i < decodeTokens; i++) model.decode();
      await sync();
      gpu = Math.min(gpu, (now() - t) / decodeTokens);
      model.truncate(ctx - 1); // generate() prefills one token: the same positions again
      let n = 0;
      for await (const _ of model.generate(ids(1), decodeTokens + 1)) {
        if (n === 0) t = now(); // the clock starts at the first token: its prefill excluded
        n += 1;
      }
      streaming = Math.min(streaming, (now() - t) / (n - 1));
    }
    const by = decodeBytes(model, ctx);
    res.decode.push({ context: ctx, tok_s: 1 / gpu, streaming_tok_s: 1 / streaming, weight_bytes: by.weights,
      kv_bytes: by.kv, read_gb_s: (by.weights + by.kv) / gpu / 1e9 });
  }
  if (options.streamRead) {
    const bw = await streamReadBandwidth(model.device, options.streamRead, { bytes: options.streamReadBytes });
    res.stream_read_gb_s = bw.bytes_per_s / 1e9;
    for (const d of res.decode) d.roofline_ratio = (d.weight_bytes + d.kv_bytes) / bw.bytes_per_s * d.tok_s;
  }
  return res;
}
