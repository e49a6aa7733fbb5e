// Model: a loaded package on a WebGPU device, stepping prefill and decode with one compute pass each
// (the twin of webllm/runtime/model.py; docs/FORMAT.md says what every field means).
//
// Everything is allocated at load: weight buffers, the plan's buffers (KV caches sized for the
// capacity that fits), one pipeline per kernel and the plan's bind groups. A step writes the uniform
// (fields by name from the plan's table), records the plan's dispatches into one compute pass and
// submits. The sampled token id stays on the GPU (`token_ids[0]`, which the next decode step embeds);
// `generate` reads ids back through a small ring of mappable buffers while later steps run.

import { AdapterError, ContextWindowError, DeviceLostError, InputError, OutOfMemoryError, PackageError,
  WebLLMError } from './errors.js';
import { adapterName, requestDevice } from './device.js';
import {
  PLAN_FIELDS, chooseProfile, packageBase, readKernels, readManifest, readPlan, usableVariants, variantLacks,
} from './package.js';
import { loadShards, openShardCache } from './cache.js';
import { chooseKvSplits, chooseVariant, localTuningStore, planDigest } from './tuning.js';
import { contextSize, fitCapacity } from './memory.js';

/** Token readback ring: step t is read while steps t + 1 .. t + LOOKAHEAD run. */
const LOOKAHEAD = 2;
const STAGING = LOOKAHEAD + 1;
const STEP_FIELDS = ['n_tokens', 'past', 'counter'];
/** Uniform fields the runtime sets that are not sampling fields: the per-step ones and its split count. */
const NOT_SAMPLING = [...STEP_FIELDS, 'kv_splits'];

/**
 * @typedef {import('./package.js').Manifest} Manifest
 * @typedef {import('./package.js').Plan} Plan
 * @typedef {import('./cache.js').Progress} Progress
 * @typedef {{pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, x: number, y: number, z: number,
 *   perY: number | undefined, kvPerZ: number | undefined, maxZ: number | undefined}} Step
 * @typedef {{device?: GPUDevice, adapter?: GPUAdapter, gpu?: GPU, profile?: string, contextWindow?: number,
 *   onProgress?: (p: Progress) => void, decodeVariant?: string, prefillVariant?: string, scoring?: boolean,
 *   kvSplits?: number, maxBindingSize?: number,
 *   maxMemoryBytes?: number, fetch?: typeof globalThis.fetch, cache?: import('./cache.js').ShardCache | false,
 *   tuningStore?: import('./tuning.js').TuningStore | null}} LoadOptions
 */

/** A compiled model package loaded on a WebGPU device. */
export class Model {
  /**
   * Use `Model.load`.
   * @param {{base: string, manifest: Manifest, plan: Plan, adapter: GPUAdapter | null, device: GPUDevice,
   *   ownsDevice: boolean, buffers: Map<string, GPUBuffer>, build: (list: import('./package.js').Dispatch[]) => Promise<Step[]>,
   *   capacity: number, scoring: boolean, planDigest: string}} p
   */
  constructor(p) {
    /** The package's base URL. */
    this.url = p.base;
    this.manifest = p.manifest;
    this.plan = p.plan;
    /** A digest of the plan, part of the tuning cache's package key (tuning.js `planDigest`). */
    this.planDigest = p.planDigest;
    this.adapter = p.adapter;
    this.device = p.device;
    this.profile = p.plan.profile;
    this.config = p.manifest.config;
    /** KV-cache positions allocated (at most the package's context_window). */
    this.capacity = p.capacity;
    this.chunk = Number(p.manifest.prefill_chunk);
    /** Tokens in the KV cache (change it with `truncate` / `reset`). */
    this.past = 0;
    /** The plan's variants this device can run (`variant_features`, `variant_limits`), most preferred first. */
    this.prefillVariants = usableVariants(p.plan, 'prefill', p.device.features, p.device.limits);
    this.decodeVariants = usableVariants(p.plan, 'decode', p.device.features, p.device.limits);
    /** The variants in use (set by `usePrefillVariant` / `useDecodeVariant`). */
    this.prefillVariant = '';
    this.decodeVariant = '';
    /** Decode attention's most KV splits in use (`useKvSplits`; 0: the plan offers no choice). */
    this.kvSplits = 0;
    /** Set when the device is lost: `{reason, message}`. */
    this.lost = /** @type {{reason: string, message: string} | null} */ (null);
    this._ownsDevice = p.ownsDevice;
    this._buffers = p.buffers;
    this._build = p.build;
    this._scoring = p.scoring;
    /** Recorded dispatch lists, built once each ("decode.gemv32", ...). @type {Map<string, Promise<Step[]>>} */
    this._lists = new Map();
    /** The lists in use, by phase. @type {Record<string, Step[]>} */
    this._phases = {};
    this._counter = 0;
    this._fields = p.plan.uniform.fields;
    /** @type {Record<string, number>} */
    this._values = Object.fromEntries(this._fields.map((f) => [f.name, f.default ?? 0]));
    this._uniformBytes = new ArrayBuffer(p.plan.uniform.size);
    this._uniformView = new DataView(this._uniformBytes);
    this._uniform = this._buffer(p.plan.uniform.buffer);
    this._tokenIds = this._buffer('token_ids');
    this._staging = Array.from({ length: STAGING }, (_, i) => p.device.createBuffer(
      { size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `staging${i}` }));
    /** @type {GPUBuffer | null} */
    this._logitsStaging = null;
    this._destroyed = false;
    p.device.lost?.then((info) => {
      if (!this._destroyed) this.lost = { reason: String(info.reason), message: info.message };
    });
  }

  // ---- loading ------------------------------------------------------------------------------------

  /**
   * Load a package from a URL (relative to the page, or absolute; a folder whose manifest.json is
   * there). `profile`: "f16"/"f32" (default: the first of profile_order the device runs).
   * `contextWindow`: a smaller KV cache than the package's (default: the package's, lowered to what
   * fits the device's limits and `maxMemoryBytes`). `decodeVariant`, `prefillVariant` force one of the
   * plan's variants (default: the fastest on this adapter, timed once and cached); `kvSplits` one of its
   * split counts of decode attention (default: timed at a long context once and cached). `scoring` allocates the
   * all-token logits for `score`. `maxBindingSize` lowers the device's binding limit (tests).
   * `fetch`, `cache`, `tuningStore`: how files are read and where shards and timings are kept
   * (defaults: the global fetch, Cache Storage, localStorage).
   * @param {string | URL} url @param {LoadOptions} [options]
   * @returns {Promise<Model>}
   */
  static async load(url, options = {}) {
    const fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    const report = options.onProgress ?? (() => {});
    const base = packageBase(url);
    report({ phase: 'manifest', bytesDone: 0, bytesTotal: 0, text: `reading ${base}manifest.json` });
    const manifest = await readManifest(base, fetchFn);
    let { device, adapter = null } = options;
    const ownsDevice = !device;
    if (!device) ({ adapter, device } = await requestDevice({ gpu: options.gpu }));
    /** @type {GPUBuffer[]} */
    const created = [];
    try {
      const profile = chooseProfile(manifest, device.features, options.profile, base);
      const plan = await readPlan(base, manifest, profile, fetchFn);
      for (const key of PLAN_FIELDS) {
        if (!(key in plan)) throw new PackageError(`${base}${manifest.profiles[profile].plan}: required field '${key}' is missing`);
      }
      if (options.scoring && !plan.score_variants) {
        throw new PackageError(`${base}: this package has no scoring phase (its vocabulary x prefill chunk is too large)`);
      }
      for (const kind of /** @type {const} */ (['prefill', 'decode'])) {
        const forced = kind === 'prefill' ? options.prefillVariant : options.decodeVariant;
        const usable = usableVariants(plan, kind, device.features, device.limits);
        if (!usable.length) {
          throw new AdapterError(`${base}: no ${kind} variant of this package runs on ${adapterName(adapter)} `
            + `(features: ${JSON.stringify(plan.variant_features)}, limits: ${JSON.stringify(plan.variant_limits)})`);
        }
        if (forced === undefined) continue;
        if (!(forced in plan[`${kind}_variants`])) {
          throw new PackageError(`${base}: no ${kind} variant "${forced}" (has: ${Object.keys(plan[`${kind}_variants`]).join(', ')})`);
        }
        if (!usable.includes(forced)) {
          throw new AdapterError(`${kind} variant "${forced}" needs ${variantLacks(plan, forced, device.features, device.limits).join(', ')}, `
            + 'which this device lacks');
        }
      }
      const planBuffers = plan.buffers.filter((b) => !b.optional || (b.optional === 'score' && options.scoring));
      const capacity = fitCapacity(manifest, planBuffers, {
        maxBindingSize: Math.min(device.limits.maxStorageBufferBindingSize, options.maxBindingSize ?? Infinity),
        maxBufferSize: device.limits.maxBufferSize,
        maxMemoryBytes: options.maxMemoryBytes,
        contextWindow: options.contextWindow,
      });
      if (capacity < manifest.context_window && options.contextWindow === undefined) {
        report({ phase: 'manifest', bytesDone: 0, bytesTotal: 0,
          text: `context window lowered to ${capacity} tokens (of ${manifest.context_window}) to fit this device` });
      }

      // Allocate everything inside error scopes: out of memory becomes a named error, not a lost device.
      const buffers = new Map();
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      for (const b of planBuffers) {
        const usage = (Array.isArray(b.usage) ? b.usage : String(b.usage).split('|'))
          .reduce((u, f) => u | /** @type {any} */ (GPUBufferUsage)[f.trim().toUpperCase()], 0);
        const buf = device.createBuffer({ size: contextSize(b, capacity), usage, label: b.name });
        created.push(buf);
        buffers.set(b.name, buf);
      }
      for (const [name, t] of Object.entries(manifest.tensors)) {
        const buf = device.createBuffer({ size: t.size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: name });
        created.push(buf);
        buffers.set(name, buf);
      }
      const invalid = await device.popErrorScope();
      const oom = await device.popErrorScope();
      const bytes = created.reduce((s, b) => s + b.size, 0);
      if (oom) {
        throw new OutOfMemoryError(`out of GPU memory allocating ${(bytes / 1e6).toFixed(0)} MB for ${base} `
          + `(context ${capacity} tokens); close other GPU tabs or load with a smaller contextWindow`);
      }
      if (invalid) throw new AdapterError(`allocating the model's buffers failed: ${invalid.message}`);

      // Shards: verified, then each byte range written where the manifest's upload list says.
      const cache = await openShardCache(options.cache);
      await loadShards(base, manifest.shards, { fetch: fetchFn, cache, onProgress: report }, (i, data) => {
        for (const [name, tensorOff, shardOff, n] of manifest.shards[i].uploads) {
          const buf = buffers.get(name);
          if (!buf) throw new PackageError(`${base}: shard ${manifest.shards[i].file} uploads to unknown tensor ${name}`);
          if (n % 4 === 0) {
            device.queue.writeBuffer(buf, tensorOff, data, shardOff, n);
          } else { // writeBuffer wants whole words: pad the last piece
            const padded = new Uint8Array((n + 3) & ~3);
            padded.set(data.subarray(shardOff, shardOff + n));
            device.queue.writeBuffer(buf, tensorOff, padded);
          }
        }
      });

      const scoring = !!options.scoring;
      const build = await listBuilder(device, base, plan, buffers, fetchFn, scoring);
      const digest = await planDigest(plan);
      const model = new Model({ base, manifest, plan, adapter, device, ownsDevice, buffers, build, capacity, scoring,
        planDigest: digest });
      created.length = 0; // the model owns them now
      // Kernels are compiled for the variants in use only: a cached (or forced) choice compiles one list
      // per phase, the first load's timing all of them (webllm/runtime/model.py does the same).
      const store = options.tuningStore === undefined ? localTuningStore() : options.tuningStore;
      const tuningReport = (/** @type {string} */ text) => report({ phase: 'tuning', bytesDone: 0, bytesTotal: 0, text });
      report({ phase: 'kernels', bytesDone: 0, bytesTotal: 0, text: 'compiling kernels' });
      await model.usePrefillVariant(options.prefillVariant ?? await chooseVariant(model, 'prefill', store, tuningReport));
      await model.useDecodeVariant(options.decodeVariant ?? await chooseVariant(model, 'decode', store, tuningReport));
      model.useKvSplits(options.kvSplits ?? await chooseKvSplits(model, store, tuningReport));
      report({ phase: 'ready', bytesDone: 0, bytesTotal: 0, text: `ready (${model.profile} profile, `
        + `${capacity} tokens of context, prefill ${model.prefillVariant}, decode ${model.decodeVariant}`
        + `${model.kvSplits ? ` with ${model.kvSplits} KV splits` : ''}, `
        + `${adapterName(adapter)})` });
      return model;
    } catch (e) {
      for (const b of created) b.destroy();
      if (ownsDevice) device.destroy();
      throw e;
    }
  }

  /** Bytes of every GPU buffer the model allocated: weights, the plan's buffers, KV caches at `capacity`. */
  get gpuMemoryBytes() {
    let n = 0;
    for (const b of this._buffers.values()) n += b.size;
    return n;
  }

  /**
   * The recorded form of a plan list, built (kernels compiled) on first use.
   * @param {string} key @param {import('./package.js').Dispatch[]} list
   */
  _recorded(key, list) {
    let steps = this._lists.get(key);
    if (!steps) {
      steps = this._build(list);
      steps.catch(() => this._lists.delete(key)); // a failed build may be tried again
      this._lists.set(key, steps);
    }
    return steps;
  }

  /**
   * Compile the kernels of these variants now, all at once (the compiles run in parallel).
   * @param {'prefill' | 'decode'} kind @param {string[]} names
   */
  async prepareVariants(kind, names) {
    await Promise.all(names.map((n) => this._recorded(`${kind}.${n}`, this.plan[`${kind}_variants`][n])));
  }

  /** Prefill (and score) with the plan's prefill variant `name` from now on. @param {string} name */
  async usePrefillVariant(name) {
    if (!this.prefillVariants.includes(name)) {
      throw new InputError(`no usable prefill variant "${name}" (has: ${this.prefillVariants.join(', ')})`);
    }
    const prefill = await this._recorded(`prefill.${name}`, this.plan.prefill_variants[name]);
    const score = this._scoring ? await this._recorded(`score.${name}`, this.plan.score_variants?.[name] ?? []) : null;
    this._phases.prefill = prefill;
    if (score) this._phases.score = score;
    this.prefillVariant = name;
  }

  /** Decode with the plan's decode variant `name` from now on. @param {string} name */
  async useDecodeVariant(name) {
    if (!this.decodeVariants.includes(name)) {
      throw new InputError(`no usable decode variant "${name}" (has: ${this.decodeVariants.join(', ')})`);
    }
    this._phases.decode = await this._recorded(`decode.${name}`, this.plan.decode_variants[name]);
    this.decodeVariant = name;
  }

  /** The split counts of decode attention this plan offers (`decode_splits`; older plans: none). @returns {number[]} */
  get kvSplitsChoices() {
    return [...(this.plan.decode_splits?.choices ?? [])];
  }

  /**
   * Cut decode attention's KV range into at most `n` splits from now on (one of `kvSplitsChoices`; 0
   * where the plan offers none).
   * @param {number} n
   */
  useKvSplits(n) {
    const choices = this.kvSplitsChoices;
    if (choices.length && !choices.includes(n)) throw new InputError(`kv_splits ${n}: this package offers ${choices.join(', ')}`);
    if (!choices.length && n) throw new InputError(`kv_splits ${n}: this package's plan has no decode_splits choices`);
    this.kvSplits = n;
    if ('kv_splits' in this._values) this._values.kv_splits = n;
  }

  // ---- stepping -----------------------------------------------------------------------------------

  /** Forget the conversation: the KV cache is simply overwritten from position 0. */
  reset() {
    this.past = 0;
  }

  /** Keep only the first `past` tokens of the KV cache (a rewind: later steps overwrite the rest). @param {number} past */
  truncate(past) {
    if (!Number.isInteger(past) || past < 0 || past > this.past) {
      throw new InputError(`truncate(${past}): must be between 0 and the ${this.past} tokens in the cache`);
    }
    this.past = past;
  }

  /**
   * How the GPU picks each next token: temperature 0 is greedy (argmax); otherwise a draw from
   * softmax(logits / temperature) within the top-p nucleus, fixed by (seed, step counter); seed
   * undefined picks a random one. Other keys set the plan's uniform fields of that name; every field
   * not given returns to its default.
   * @param {{temperature?: number, top_p?: number, seed?: number | null, [field: string]: number | null | undefined}} [params]
   */
  setSampling({ temperature = 0, top_p = 1, seed, ...fields } = {}) {
    if (!(temperature >= 0) || !(top_p > 0 && top_p <= 1)) {
      throw new InputError(`sampling: temperature must be >= 0 and top_p in (0, 1] (got ${temperature}, ${top_p})`);
    }
    const known = new Set(this._fields.map((f) => f.name));
    for (const k of Object.keys(fields)) {
      if (!known.has(k)) throw new InputError(`sampling: this package's uniform has no field "${k}"`);
    }
    const s = seed === undefined || seed === null ? Math.floor(Math.random() * 2 ** 32) : Number(BigInt.asUintN(32, BigInt(seed)));
    this._values = Object.fromEntries(this._fields.map((f) => [f.name, f.default ?? 0]));
    Object.assign(this._values, fields, { temperature, top_p, seed: s });
    if ('kv_splits' in this._values) this._values.kv_splits = this.kvSplits; // the runtime's choice, kept
    this._counter = 0;
  }

  /** The uniform's current sampling values (every field but the per-step ones and kv_splits). */
  get sampling() {
    return Object.fromEntries(Object.entries(this._values).filter(([k]) => !NOT_SAMPLING.includes(k)));
  }

  /**
   * Record one step (one compute pass) for the current KV length; `staging` also copies the sampled
   * id into that ring buffer.
   * @param {string} phase @param {number} nTokens @param {number | null} [staging]
   */
  _encode(phase, nTokens, staging = null) {
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    const kvEnd = this.past + nTokens;
    for (const d of this._phases[phase]) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.x, d.perY === undefined ? d.y : Math.ceil(nTokens / d.perY),
        d.kvPerZ === undefined ? d.z : Math.min(Math.ceil(kvEnd / d.kvPerZ), d.maxZ ?? Infinity,
          d.maxZ === undefined ? Infinity : this.kvSplits || Infinity));
    }
    pass.end();
    if (staging !== null) enc.copyBufferToBuffer(this._tokenIds, 0, this._staging[staging], 0, 4);
    return enc.finish();
  }

  /** Write the step's uniform, then submit its pass (queue order keeps them paired). @param {GPUCommandBuffer} commands @param {number} nTokens */
  _submit(commands, nTokens) {
    if (this.lost) throw new DeviceLostError(`the GPU device was lost (${this.lost.message || this.lost.reason}); reload the model`);
    Object.assign(this._values, { n_tokens: nTokens, past: this.past, counter: this._counter });
    const view = this._uniformView;
    for (const f of this._fields) {
      const v = this._values[f.name];
      if (f.type === 'u32') view.setUint32(f.offset, v >>> 0, true);
      else view.setFloat32(f.offset, v, true);
    }
    this.device.queue.writeBuffer(this._uniform, 0, this._uniformBytes);
    this.device.queue.submit([commands]);
    this.past += nTokens;
    if (this._values.emit ?? 1) this._counter += 1; // the counter numbers the draws: steps that sample nothing don't count
  }

  /** @param {string} phase @param {number} nTokens @param {number | null} [staging] */
  _step(phase, nTokens, staging = null) {
    this._submit(this._encode(phase, nTokens, staging), nTokens);
  }

  /**
   * Append tokens to the KV cache in chunks of at most `chunk`; afterwards the logits (and the next
   * token, sampled on the GPU) are those of the last token.
   * @param {ArrayLike<number>} ids @param {number | null} [staging]
   */
  async prefill(ids, staging = null) {
    this._prefill(this._checkIds(ids), staging);
  }

  /** @param {Uint32Array<ArrayBuffer>} ids @param {number | null} staging */
  _prefill(ids, staging) {
    const hasEmit = 'emit' in this._values; // only the last chunk's next token is wanted (FORMAT.md, "Sampling")
    for (let s = 0; s < ids.length; s += this.chunk) {
      const part = ids.subarray(s, s + this.chunk);
      const last = s + this.chunk >= ids.length;
      if (hasEmit) this._values.emit = last ? 1 : 0;
      this.device.queue.writeBuffer(this._tokenIds, 0, part);
      this._step('prefill', part.length, last ? staging : null);
    }
    if (hasEmit) this._values.emit = 1;
  }

  /** @param {ArrayLike<number>} ids @returns {Uint32Array<ArrayBuffer>} */
  _checkIds(ids) {
    const n = ids.length;
    if (!n) throw new InputError('at least one token is needed');
    const vocab = this.config.vocab_size;
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const t = ids[i];
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new InputError(`token id out of range [0, ${vocab}): ${t}`);
      out[i] = t;
    }
    if (this.past + n > this.capacity) {
      throw new ContextWindowError(`context window full: ${this.past} + ${n} tokens > ${this.capacity}`);
    }
    return out;
  }

  /** One decode step on the token the GPU last sampled (`token_ids[0]`). @param {number | null} [staging] */
  decode(staging = null) {
    if (this.past + 1 > this.capacity) throw new ContextWindowError(`context window full (${this.capacity} tokens)`);
    this._step('decode', 1, staging);
  }

  /**
   * Copy `size` bytes of a buffer out and read them (a readback: waits for the GPU).
   * @param {GPUBuffer} src @param {number} size @param {GPUBuffer} [staging]
   */
  async _read(src, size, staging) {
    const own = !staging;
    const buf = staging ?? this.device.createBuffer({ size: Math.max(16, (size + 3) & ~3),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, buf, 0, (size + 3) & ~3);
    this.device.queue.submit([enc.finish()]);
    await this._map(buf);
    const out = buf.getMappedRange(0, (size + 3) & ~3).slice(0, size);
    buf.unmap();
    if (own) buf.destroy();
    return out;
  }

  /** @param {GPUBuffer} buf */
  async _map(buf) {
    try {
      await buf.mapAsync(GPUMapMode.READ);
    } catch (e) {
      if (this.lost) throw new DeviceLostError(`the GPU device was lost (${this.lost.message || this.lost.reason}); reload the model`);
      throw e;
    }
  }

  /** The last step's logits for its last token, Float32Array [vocab] (a readback: tests and tools). */
  async logits() {
    const n = this.config.vocab_size * 4;
    this._logitsStaging ??= this.device.createBuffer({ size: Math.max(16, n),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'logits staging' });
    return new Float32Array(await this._read(this._buffer('logits'), n, this._logitsStaging));
  }

  /** The token the last step picked (a readback). */
  async nextToken() {
    return new Uint32Array(await this._read(this._tokenIds, 4))[0];
  }

  /**
   * Append tokens to the KV cache and return the logits after each of them, Float32Array [n × vocab].
   * Needs a model loaded with `scoring: true` (perplexity).
   * @param {ArrayLike<number>} ids
   */
  async score(ids) {
    if (!this._phases.score) throw new InputError('score() needs Model.load(..., {scoring: true})');
    const all = this._checkIds(ids);
    const v = this.config.vocab_size;
    const out = new Float32Array(all.length * v);
    for (let s = 0; s < all.length; s += this.chunk) {
      const part = all.subarray(s, s + this.chunk);
      this.device.queue.writeBuffer(this._tokenIds, 0, part);
      this._step('score', part.length);
      out.set(new Float32Array(await this._read(this._buffer('logits_all'), part.length * v * 4)), s * v);
    }
    return out;
  }

  /**
   * Generation after `promptIds` (appended to the cache), sampling as `setSampling` says (greedy by
   * default); yields token ids as they come.
   *
   * Pipelined: the sampled id never leaves the GPU on the critical path. Up to LOOKAHEAD decode
   * steps are submitted ahead of the id being read, each copying its id into a ring of mappable
   * buffers, so the CPU records step t + 1 and the caller handles token t while the GPU runs.
   * Afterwards the model is in the state the native runtime leaves (the KV cache holds the prompt and
   * every token fed back, not the stop token; `logits()` and `token_ids[0]` those of the last step
   * it would have run): steps submitted beyond it are rolled back and that step is run once more.
   * @param {ArrayLike<number>} promptIds @param {number} maxNewTokens @param {Iterable<number>} [stopIds]
   * @returns {AsyncGenerator<number, void, void>}
   */
  async *generate(promptIds, maxNewTokens, stopIds = []) {
    const stop = new Set(stopIds);
    const max = Math.min(maxNewTokens, this.capacity - this.past - promptIds.length + 1);
    if (max <= 0) {
      throw new ContextWindowError(`context window full: ${this.past} + ${promptIds.length} tokens, capacity ${this.capacity}`);
    }
    const prompt = this._checkIds(promptIds);
    const lastChunk = prompt.subarray(Math.floor((prompt.length - 1) / this.chunk) * this.chunk);
    /** Step k produces token k: its uniform state and its input (for a replay). */
    const steps = [{ past: this.past + prompt.length - lastChunk.length, counter: this._counter }];
    this._prefill(prompt, 0);
    /** @type {Promise<void>[]} */
    const maps = [];
    /** @param {number} slot */
    const map = (slot) => {
      const p = this._map(this._staging[slot]);
      p.catch(() => {}); // a lost device rejects every pending map: awaited below, never unhandled
      maps.push(p);
    };
    map(0);
    /** @type {number[]} */
    const tokens = [];
    let submitted = 1; // steps submitted (token k comes from step k)
    let keep = 0; // the last step the native runtime would have run, were the loop to end here
    let settled = false;
    const settle = async () => {
      if (settled) return;
      settled = true;
      await this._settle(maps, submitted, tokens.length);
      if (!this.lost && submitted > keep + 1) this._replay(steps[keep], keep === 0 ? lastChunk : tokens[keep - 1]);
    };
    try {
      for (let i = 0; i < max; i++) {
        while (submitted < max && submitted <= i + LOOKAHEAD) {
          steps.push({ past: this.past, counter: this._counter });
          const slot = submitted % STAGING;
          this._step('decode', 1, slot);
          map(slot);
          submitted += 1;
        }
        await maps[i];
        const buf = this._staging[i % STAGING];
        const tok = new Uint32Array(buf.getMappedRange(0, 4))[0];
        buf.unmap();
        tokens.push(tok);
        keep = i;
        if (stop.has(tok) || i + 1 === max) {
          await settle();
          yield tok;
          return;
        }
        keep = i + 1; // the native runtime submits step i + 1 before it yields token i
        yield tok;
      }
    } finally {
      await settle();
    }
  }

  /**
   * Wait for the ring's outstanding maps (a generation closed early) and unmap them.
   * @param {Promise<void>[]} maps @param {number} submitted @param {number} read
   */
  async _settle(maps, submitted, read) {
    for (let k = read; k < submitted; k++) {
      try {
        await maps[k];
        this._staging[k % STAGING].unmap();
      } catch { /* a lost device: nothing to unmap */ }
    }
  }

  /**
   * Roll back to just before a step and run it again with the same input, counter and KV length, so
   * every buffer holds what it would hold had no later step been submitted.
   * @param {{past: number, counter: number}} step @param {Uint32Array<ArrayBuffer> | number} input prompt chunk or token
   */
  _replay(step, input) {
    this.past = step.past;
    this._counter = step.counter;
    if (typeof input === 'number') {
      this.device.queue.writeBuffer(this._tokenIds, 0, new Uint32Array([input]));
      this._step('decode', 1);
    } else {
      this.device.queue.writeBuffer(this._tokenIds, 0, input);
      this._step('prefill', input.length);
    }
  }

  /** Release every GPU buffer (and the device, when `load` created it). */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    for (const b of this._buffers.values()) b.destroy();
    for (const b of this._staging) b.destroy();
    this._logitsStaging?.destroy();
    this._buffers.clear();
    if (this._ownsDevice) this.device.destroy();
  }

  /** @param {string} name */
  _buffer(name) {
    const b = this._buffers.get(name);
    if (!b) throw new PackageError(`${this.url}: the plan has no buffer "${name}"`);
    return b;
  }
}

/**
 * A function turning a plan dispatch list into its recorded form: it compiles the pipelines the list
 * needs that are not yet built (in parallel) and builds its bind groups (once each). One bind group
 * layout per list of binding types, so a bind group serves every kernel with its kernel's binding types
 * (FORMAT.md, `bind_groups`). The WGSL of every kernel the usable variants name is fetched here, so a
 * missing file fails the load.
 * @param {GPUDevice} device @param {string} base @param {Plan} plan @param {Map<string, GPUBuffer>} buffers
 * @param {typeof globalThis.fetch} fetchFn @param {boolean} scoring
 * @returns {Promise<(list: import('./package.js').Dispatch[]) => Promise<Step[]>>}
 */
async function listBuilder(device, base, plan, buffers, fetchFn, scoring) {
  const lists = [];
  for (const kind of /** @type {const} */ (['prefill', 'decode'])) {
    for (const n of usableVariants(plan, kind, device.features, device.limits)) lists.push(plan[`${kind}_variants`][n]);
  }
  if (scoring) {
    for (const n of usableVariants(plan, 'prefill', device.features, device.limits)) lists.push(plan.score_variants?.[n] ?? []);
  }
  const names = [...new Set(lists.flat().map((d) => d.kernel))];
  for (const name of names) {
    if (!plan.kernels[name]) throw new PackageError(`${base}: plan-${plan.profile}.json dispatches unknown kernel ${name}`);
  }
  const sources = await readKernels(base, plan, fetchFn, names);
  /** @type {Record<string, GPUBufferBindingType>} */
  const btype = { uniform: 'uniform', 'read-only-storage': 'read-only-storage', storage: 'storage' };
  /** @type {Map<string, GPUBindGroupLayout>} */
  const layouts = new Map();
  /** @param {string} name kernel */
  const layout = (name) => {
    const types = plan.kernels[name].bindings;
    let l = layouts.get(types.join());
    if (!l) {
      l = device.createBindGroupLayout({ label: types.join(), entries: types.map((t, i) => {
        if (!(t in btype)) throw new PackageError(`${base}: kernel ${name} binding ${i} has unknown type "${t}"`);
        return { binding: i, visibility: GPUShaderStage.COMPUTE, buffer: { type: btype[t] } };
      }) });
      layouts.set(types.join(), l);
    }
    return l;
  };
  /** @type {Map<string, Promise<GPUComputePipeline>>} */
  const pipelines = new Map();
  // Error scopes are a stack shared by everything in flight: each is pushed and popped around
  // synchronous calls only, so that builds running side by side never pop each other's.
  /** @param {string} name */
  const compile = async (name) => {
    const k = plan.kernels[name];
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: sources[name], label: name });
    const pipeline = device.createComputePipelineAsync({ label: name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout(name)] }),
      compute: { module, entryPoint: k.entry_point } });
    const invalid = device.popErrorScope();
    try {
      const built = await pipeline;
      const e = await invalid;
      if (e) throw e;
      return built;
    } catch (e) {
      const info = await module.getCompilationInfo?.().catch(() => null);
      const msgs = info?.messages?.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      throw new AdapterError(`kernel ${name} (${k.file}) does not compile on this device: `
        + `${msgs?.length ? msgs.join('; ') : /** @type {Error} */ (e).message}`);
    }
  };
  /** @type {Map<number, GPUBindGroup>} */
  const groups = new Map();
  /** @param {number} i */
  const bindGroup = (i) => {
    let g = groups.get(i);
    if (!g) {
      const entry = plan.bind_groups[i];
      if (!entry) throw new PackageError(`${base}: plan-${plan.profile}.json has no bind group ${i}`);
      g = device.createBindGroup({ layout: layout(entry.kernel), entries: entry.buffers.map((name, j) => {
        const buffer = buffers.get(name);
        if (!buffer) throw new PackageError(`${base}: plan-${plan.profile}.json binds unknown buffer ${name}`);
        return { binding: j, resource: { buffer } };
      }) });
      groups.set(i, g);
    }
    return g;
  };
  return async (list) => {
    const kernels = [...new Set(list.map((d) => d.kernel))];
    for (const k of kernels) {
      if (!sources[k]) throw new PackageError(`${base}: plan-${plan.profile}.json dispatches unknown kernel ${k}`);
      if (!pipelines.has(k)) {
        const p = compile(k);
        p.catch(() => pipelines.delete(k)); // a failed compile may be tried again
        pipelines.set(k, p);
      }
    }
    const ready = new Map(await Promise.all(kernels.map(
      async (k) => /** @type {[string, GPUComputePipeline]} */ ([k, await pipelines.get(k)]))));
    device.pushErrorScope('validation');
    /** @type {Step[]} */
    let built = [];
    let thrown = null;
    try {
      built = list.map((d) => ({ pipeline: /** @type {GPUComputePipeline} */ (ready.get(d.kernel)),
        bindGroup: bindGroup(d.bind_group), x: d.workgroups[0], y: d.workgroups[1], z: d.workgroups[2],
        perY: d.tokens_per_y, kvPerZ: d.kv_per_z, maxZ: d.max_z }));
    } catch (e) {
      thrown = e;
    }
    const invalid = await device.popErrorScope(); // popped before anything else can push
    if (thrown) throw thrown;
    if (invalid) throw new AdapterError(`building the bind groups failed: ${invalid.message}`);
    return built;
  };
}

export { WebLLMError };
