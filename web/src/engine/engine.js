// Engine: chat and text completion over a loaded package, with the OpenAI client's API
// (twin of webllm/engine/engine.py).
//
// A chat request renders the whole conversation with the chat template, tokenizes it, keeps the
// longest prefix already in the KV cache (`model.truncate` past any divergence), prefills only the
// new tokens and generates on the GPU until an end-of-sequence token, a stop string, the token limit
// or `interrupt()`. When the GPU device is lost (driver reset, `device.destroy()`), the engine
// reloads the package from the browser's weight cache by itself; the next request re-prefills the
// conversation and answers exactly as it would have without the loss.
import { Model } from "../runtime/model.js";
import {
  ContextWindowExceededError, EngineUnloadedError, ModelNotFoundError, RequestError, WebLLMError,
} from "./errors.js";
import {
  chatCompletion, chatCompletionChunk, completion, newId, parseChatRequest, parseCompletionRequest, usage,
} from "./protocol.js";
import { StopMatcher } from "./stop.js";
import { cacheStorageTuningStore } from "./storage.js";
import { ChatTemplate } from "./template.js";
import { StreamDecoder, Tokenizer } from "./tokenizer.js";

/** @typedef {import("./protocol.js").ChatCompletion} ChatCompletion */
/** @typedef {import("./protocol.js").ChatCompletionChunk} ChatCompletionChunk */
/** @typedef {import("./protocol.js").Completion} Completion */
/** @typedef {import("./protocol.js").SamplingParams} SamplingParams */
/** @typedef {import("./protocol.js").FinishReason} FinishReason */
/** @typedef {{phase: string, bytesDone?: number, bytesTotal?: number, text?: string}} Progress */

/**
 * @typedef {object} EngineOptions
 * @property {(p: Progress) => void} [onProgress] load progress: phase, bytes done / total, text
 * @property {GPUDevice} [device] a device to use (default: the runtime requests one)
 * @property {string} [profile] "f16" or "f32" (default: the first of the package's profile_order the device runs)
 * @property {number} [contextWindow] a smaller KV capacity than the package's
 * @property {string} [decodeVariant] force one of the plan's decode variants (default: the fastest here)
 * @property {string} [prefillVariant] force one of the plan's prefill variants (default: the fastest here)
 * @property {string} [modelId] the `model` field of responses (default: the package folder's name)
 */

/**
 * @typedef {object} EngineStats figures of the last request and of the load
 * @property {string} model
 * @property {string} profile
 * @property {string} decodeVariant
 * @property {string} prefillVariant
 * @property {number} contextWindow
 * @property {number} loadSeconds
 * @property {number} reloads device losses recovered from
 * @property {number} promptTokens
 * @property {number} cachedTokens
 * @property {number} completionTokens
 * @property {number} prefillSeconds prompt processing, up to the first new token
 * @property {number} decodeSeconds the remaining tokens
 * @property {number} prefillTokensPerSecond
 * @property {number} decodeTokensPerSecond
 * @property {FinishReason | null} finishReason
 */

/**
 * Load a package and return an engine ready to chat.
 * @param {string | URL} packageUrl the package folder (relative to the page, or absolute)
 * @param {EngineOptions} [options]
 */
export async function createEngine(packageUrl, options = {}) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const url = new URL(packageUrl, base);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  const t0 = performance.now();
  const model = await Model.load(url.href, {
    device: options.device, profile: options.profile, contextWindow: options.contextWindow,
    onProgress: options.onProgress, decodeVariant: options.decodeVariant, prefillVariant: options.prefillVariant,
    // in a Web Worker (no localStorage) the timing of the variants is kept in Cache Storage
    tuningStore: "localStorage" in globalThis ? undefined : cacheStorageTuningStore(),
  });
  let tokenizer;
  try {
    options.onProgress?.({ phase: "tokenizer", text: "loading the tokenizer" });
    tokenizer = await Tokenizer.load(url, /** @type {import("./tokenizer.js").TokenizerMeta} */ (model.manifest.tokenizer));
  } catch (e) {
    model.destroy();
    throw e;
  }
  const modelId = options.modelId ?? decodeURIComponent(url.pathname.split("/").filter(Boolean).pop() ?? "model");
  const engine = new Engine(model, tokenizer, { url: url.href, modelId, options });
  engine._stats.loadSeconds = (performance.now() - t0) / 1000;
  options.onProgress?.({ phase: "ready", text: "ready" });
  return engine;
}

export class Engine {
  /**
   * @param {Model} model
   * @param {Tokenizer} tokenizer
   * @param {{url: string, modelId: string, options: EngineOptions}} source how to load the package again
   */
  constructor(model, tokenizer, source) {
    this.model = model;
    this.tokenizer = tokenizer;
    this.source = source;
    this.modelId = source.modelId;
    const m = model.manifest;
    this.template = new ChatTemplate(m.chat_template, tokenizer.bosToken, tokenizer.eosToken);
    this.stopIds = new Set(tokenizer.eosTokenIds);
    /** @type {Record<string, number>} the package's generation defaults (temperature, top_p), as the Python engine */
    this.generationDefaults = Object.fromEntries(Object.entries(m.generation ?? {}).filter(([, v]) => typeof v === "number"));
    /** @type {number[]} the tokens whose K/V sit in the cache, in order */
    this._cached = [];
    this._interrupted = false;
    this._unloaded = false;
    /** @type {Promise<void> | null} a reload after a device loss, while it runs */
    this._reloading = null;
    /** @type {unknown} why the last reload failed (the next request tries again) */
    this._failed = null;
    /** @type {Promise<void>} the tail of the request queue: one generation at a time */
    this._tail = Promise.resolve();
    /** @type {EngineStats} */
    this._stats = {
      model: this.modelId, profile: model.profile, decodeVariant: model.decodeVariant,
      prefillVariant: model.prefillVariant, contextWindow: model.capacity,
      loadSeconds: 0, reloads: 0, promptTokens: 0, cachedTokens: 0, completionTokens: 0, prefillSeconds: 0,
      decodeSeconds: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0, finishReason: null,
    };
    this._watch(model);

    const self = this;
    this.chat = {
      completions: {
        /**
         * A chat completion, or (stream: true) an async iterator of chunks, usage on the last one.
         * @param {import("./protocol.js").ChatCompletionRequest & {truncation?: "auto" | "disabled"}} request
         * @returns {Promise<any>} ChatCompletion, or AsyncIterable<ChatCompletionChunk> when streaming
         */
        create(request) {
          return self._chatCreate(request);
        },
      },
    };
    this.completions = {
      /**
       * A text completion of a raw prompt, or (stream: true) an async iterator of Completion chunks.
       * @param {import("./protocol.js").CompletionRequest} request
       * @returns {Promise<any>} Completion, or AsyncIterable<Completion> when streaming
       */
      create(request) {
        return self._completionCreate(request);
      },
    };
  }

  /** Stop the current generation; its reply ends with finish_reason "abort". */
  interrupt() {
    this._interrupted = true;
  }

  /** Forget the conversation: the next request prefills from scratch. Waits for a generation in
   * progress to end (call `interrupt()` first to end it now), so its KV cache is never rewound under it. */
  async resetChat() {
    const release = await this._acquire();
    try {
      this._cached = [];
      if (!this._reloading && !this._unloaded) this.model.truncate(0);
    } finally {
      release();
    }
  }

  /** Release the GPU. The engine answers no request afterwards. */
  async unload() {
    this._unloaded = true;
    this._interrupted = true;
    await this._tail.catch(() => {});
    await this._reloading?.catch(() => {});
    this.model.destroy();
  }

  /** @returns {EngineStats} */
  stats() {
    return { ...this._stats };
  }

  // ---- requests --------------------------------------------------------------------------------

  /** @param {any} request */
  async _chatCreate(request) {
    const { messages, params } = parseChatRequest(request);
    this._checkModel(params);
    const truncation = request.truncation ?? "disabled";
    if (truncation !== "auto" && truncation !== "disabled")
      throw new RequestError("'truncation' must be \"auto\" or \"disabled\"", "truncation");
    const prompt = () => this._chatPrompt(messages, params, truncation === "auto");
    const id = newId("chatcmpl");
    const model = this.modelId;
    if (params.stream) {
      const self = this;
      return (async function* () {
        yield chatCompletionChunk(id, model, { role: "assistant", content: "" });
        const gen = self._generate(prompt, params);
        for (;;) {
          const r = await gen.next();
          if (r.done) {
            yield chatCompletionChunk(id, model, {}, r.value.finish, r.value.usage);
            return;
          }
          yield chatCompletionChunk(id, model, { content: r.value });
        }
      })();
    }
    const { text, finish, usage: u } = await this._collect(this._generate(prompt, params));
    return chatCompletion(id, model, text, finish, u);
  }

  /** @param {any} request */
  async _completionCreate(request) {
    const { prompt, params } = parseCompletionRequest(request);
    this._checkModel(params);
    const ids = () => {
      const t = this.tokenizer.encode(prompt);
      if (t.length === 0) throw new RequestError("the prompt is empty", "prompt");
      return t;
    };
    const id = newId("cmpl");
    const model = this.modelId;
    if (params.stream) {
      const self = this;
      return (async function* () {
        const gen = self._generate(ids, params);
        for (;;) {
          const r = await gen.next();
          if (r.done) {
            yield completion(id, model, "", r.value.finish, r.value.usage);
            return;
          }
          yield completion(id, model, r.value, null);
        }
      })();
    }
    const { text, finish, usage: u } = await this._collect(this._generate(ids, params));
    return completion(id, model, text, finish, u);
  }

  /** @param {SamplingParams} params */
  _checkModel(params) {
    if (params.model !== null && params.model !== this.modelId)
      throw new ModelNotFoundError(`the model '${params.model}' does not exist (this engine serves '${this.modelId}')`, "model");
  }

  /**
   * @param {AsyncGenerator<string, {finish: FinishReason, usage: any}>} gen
   */
  async _collect(gen) {
    let text = "";
    for (;;) {
      const r = await gen.next();
      if (r.done) return { text, ...r.value };
      text += r.value;
    }
  }

  /**
   * The prompt ids of a conversation. With `truncate`, a conversation longer than the context window
   * keeps its system message and drops its oldest turns until the prompt leaves room for the reply.
   * @param {{role: string, content: string}[]} messages
   * @param {SamplingParams} params
   * @param {boolean} truncate
   */
  _chatPrompt(messages, params, truncate) {
    const capacity = this.model.capacity;
    const room = Math.min(params.max_tokens ?? capacity, Math.floor(capacity / 4));
    const msgs = [...messages];
    for (;;) {
      const ids = this.tokenizer.encode(this.template.render(msgs, true));
      const first = msgs[0]?.role === "system" ? 1 : 0;
      if (!truncate || ids.length + room <= capacity || msgs.length - first <= 1) {
        if (ids.length === 0) throw new RequestError("the prompt is empty", "messages");
        return ids;
      }
      msgs.splice(first, 1);
    }
  }

  /**
   * One generation, holding the engine for its whole duration: yields text pieces, returns the
   * finish reason and usage.
   * @param {() => number[]} promptIds computed once the engine is ours (the tokenizer is cheap)
   * @param {SamplingParams} params
   * @returns {AsyncGenerator<string, {finish: FinishReason, usage: import("./protocol.js").CompletionUsage}>}
   */
  async *_generate(promptIds, params) {
    const release = await this._acquire();
    try {
      const model = await this._live();
      this._interrupted = false;
      const ids = promptIds();
      if (ids.length >= model.capacity)
        throw new ContextWindowExceededError(
          `the prompt has ${ids.length} tokens; this model's context window is ${model.capacity}`, "messages");
      // the caller's value, else the package's generation default, else OpenAI's
      const temperature = params.temperature ?? this.generationDefaults.temperature ?? 1;
      const top_p = params.top_p ?? this.generationDefaults.top_p ?? 1;
      const seed = params.seed ?? Math.floor(Math.random() * 2 ** 32);
      model.setSampling({ temperature, top_p, seed: seed >>> 0 });
      let keep = 0;
      while (keep < this._cached.length && keep < ids.length && this._cached[keep] === ids[keep]) keep++;
      keep = Math.min(keep, ids.length - 1); // at least one token is prefilled, for its logits
      model.truncate(keep);
      const room = model.capacity - ids.length + 1; // the last token is never fed back
      const maxNew = Math.min(params.max_tokens ?? room, room);

      const stats = this._stats;
      Object.assign(stats, {
        promptTokens: ids.length, cachedTokens: keep, completionTokens: 0, prefillSeconds: 0, decodeSeconds: 0,
        prefillTokensPerSecond: 0, decodeTokensPerSecond: 0, finishReason: null,
      });
      const detok = new StreamDecoder(this.tokenizer);
      const stops = new StopMatcher(params.stop);
      /** @type {number[]} */
      const out = [];
      /** @type {FinishReason} */
      let finish = "length";
      const t0 = performance.now();
      let tFirst = t0;
      try {
        for await (const tok of model.generate(ids.slice(keep), maxNew, [...this.stopIds])) {
          const now = performance.now();
          if (out.length === 0) {
            tFirst = now;
            stats.prefillSeconds = (now - t0) / 1000;
          }
          out.push(tok);
          stats.completionTokens = out.length;
          stats.decodeSeconds = (now - tFirst) / 1000;
          if (this.stopIds.has(tok)) {
            finish = "stop";
            break;
          }
          const { emit, hit } = stops.push(detok.push(tok));
          if (emit) yield emit;
          if (hit) {
            finish = "stop";
            break;
          }
          if (this._interrupted) {
            finish = "abort";
            break;
          }
        }
      } catch (e) {
        if (this._reloading) throw new WebLLMError("the GPU device was lost during this reply; the model is being " +
          "reloaded from the browser's cache: send the request again");
        throw e;
      } finally {
        if (model === this.model && !this._reloading) this._cached = ids.concat(out).slice(0, model.past);
      }
      if (finish !== "stop") {
        const rest = stops.flush();
        if (rest) yield rest;
      }
      stats.finishReason = finish;
      stats.prefillTokensPerSecond = stats.prefillSeconds > 0 ? (ids.length - keep) / stats.prefillSeconds : 0;
      stats.decodeTokensPerSecond = stats.decodeSeconds > 0 && out.length > 1 ? (out.length - 1) / stats.decodeSeconds : 0;
      return {
        finish,
        usage: usage(ids.length, keep, out.length, stats.prefillTokensPerSecond, stats.decodeTokensPerSecond),
      };
    } finally {
      release();
    }
  }

  /** Wait for the previous request; returns the function that lets the next one go. */
  async _acquire() {
    const prev = this._tail;
    /** @type {() => void} */
    let release = () => {};
    this._tail = new Promise((resolve) => (release = resolve));
    await prev;
    return release;
  }

  /** The loaded model, after any reload in progress; reloads again if an earlier attempt failed. */
  async _live() {
    if (this._unloaded) throw new EngineUnloadedError("this engine was unloaded; create a new one");
    if (this._failed) {
      this._failed = null;
      this._reloading = this._reload();
    }
    if (this._reloading) await this._reloading;
    if (this._unloaded) throw new EngineUnloadedError("this engine was unloaded; create a new one");
    return this.model;
  }

  // ---- device loss -------------------------------------------------------------------------------

  /** @param {Model} model */
  _watch(model) {
    model.device.lost.then((info) => {
      if (this._unloaded || model !== this.model) return; // our own unload, or an old device
      console.warn(`webllm: GPU device lost (${info.reason}: ${info.message}); reloading the model`);
      this._reloading = this._reload();
    });
  }

  /** Load the package again on a new device, from the local weight cache, keeping the same profile,
   * decode variant and context window so that answers do not change. The conversation is prefilled
   * again by the next request (the cache is empty). */
  async _reload() {
    const old = this.model;
    const o = this.source.options;
    this._cached = [];
    try {
      old.destroy();
    } catch {
      // a lost device's resources are gone already
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const t0 = performance.now();
        const model = await Model.load(this.source.url, {
          profile: old.profile, contextWindow: old.capacity, decodeVariant: old.decodeVariant,
          prefillVariant: old.prefillVariant,
          onProgress: o.onProgress,
        });
        this.model = model;
        this._stats.reloads++;
        this._stats.loadSeconds = (performance.now() - t0) / 1000;
        this._watch(model);
        this._reloading = null;
        return;
      } catch (e) {
        if (attempt >= 2 || this._unloaded) {
          this._reloading = null;
          this._failed = e;
          throw e;
        }
        await new Promise((r) => setTimeout(r, 250 * (attempt + 1)));
      }
    }
  }
}
