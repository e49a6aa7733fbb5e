// The main-thread side of worker.js: the engine's API (chat.completions.create, completions.create,
// interrupt, resetChat, unload, stats), streaming included, with every call answered by the worker.
import { deserializeError } from "./errors.js";

/**
 * Load a package inside `worker` (running the worker bundle) and return an engine proxy.
 * @param {Worker} worker
 * @param {string | URL} packageUrl relative to the page, or absolute
 * @param {{onProgress?: (p: import("./engine.js").Progress) => void} & Omit<import("./engine.js").EngineOptions, "onProgress" | "device">} [options]
 */
export async function createWorkerEngine(worker, packageUrl, options = {}) {
  const client = new WorkerEngine(worker);
  const { onProgress, ...rest } = options;
  const url = new URL(packageUrl, location.href).href;
  await client._call("load", { url, options: rest }, { onProgress });
  return client;
}

/**
 * @typedef {object} Pending
 * @property {(v: any) => void} resolve
 * @property {(e: Error) => void} reject
 * @property {(p: any) => void} [onProgress]
 * @property {(c: any) => void} [onChunk]
 */

export class WorkerEngine {
  /** @param {Worker} worker */
  constructor(worker) {
    this.worker = worker;
    this._next = 1;
    /** @type {Map<number, Pending>} */
    this._pending = new Map();
    worker.addEventListener("message", (ev) => this._onMessage(ev.data));
    worker.addEventListener("error", (ev) => {
      const err = new Error(`the engine's worker failed: ${ev.message || "unknown error"}`);
      for (const p of this._pending.values()) p.reject(err);
      this._pending.clear();
    });
    const self = this;
    this.chat = {
      completions: {
        /** @param {import("./protocol.js").ChatCompletionRequest & {truncation?: string}} request */
        create(request) {
          return self._create("chat", request);
        },
      },
    };
    this.completions = {
      /** @param {import("./protocol.js").CompletionRequest} request */
      create(request) {
        return self._create("completion", request);
      },
    };
  }

  interrupt() {
    this.worker.postMessage({ id: 0, op: "interrupt", args: null });
  }

  /** @returns {Promise<void>} */
  resetChat() {
    return this._call("resetChat", null);
  }

  /** @returns {Promise<void>} */
  unload() {
    return this._call("unload", null);
  }

  /** @returns {Promise<import("./engine.js").EngineStats>} */
  stats() {
    return this._call("stats", null);
  }

  /** @param {any} msg */
  _onMessage(msg) {
    const p = this._pending.get(msg.id);
    if (!p) return;
    if (msg.type === "progress") p.onProgress?.(msg.progress);
    else if (msg.type === "chunk") p.onChunk?.(msg.chunk);
    else {
      this._pending.delete(msg.id);
      if (msg.type === "error") p.reject(deserializeError(msg.error));
      else p.resolve(msg.value);
    }
  }

  /**
   * @param {string} op @param {any} args
   * @param {{onProgress?: (p: any) => void, onChunk?: (c: any) => void}} [hooks]
   * @returns {Promise<any>}
   */
  _call(op, args, hooks = {}) {
    const id = this._next++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, ...hooks });
      this.worker.postMessage({ id, op, args });
    });
  }

  /**
   * A request; when streaming, an async iterator over the chunks the worker posts.
   * @param {"chat" | "completion"} op @param {any} request
   */
  async _create(op, request) {
    if (!request?.stream) return this._call(op, request);
    /** @type {any[]} */
    const queue = [];
    /** @type {(() => void) | null} */
    let wake = null;
    let done = false;
    /** @type {Error | null} */
    let failed = null;
    const finished = this._call(op, request, {
      onChunk: (c) => {
        queue.push(c);
        wake?.();
      },
    }).then(
      () => { done = true; wake?.(); },
      (e) => { failed = e; done = true; wake?.(); },
    );
    // A request refused before its first chunk (a bad parameter) rejects here, as in-process.
    await Promise.race([finished, new Promise((r) => { wake = () => r(undefined); })]);
    if (failed && queue.length === 0) throw failed;
    const self = this;
    return (async function* () {
      let completed = false;
      try {
        for (;;) {
          if (queue.length) {
            yield queue.shift();
            continue;
          }
          if (done) {
            if (failed) throw failed;
            completed = true;
            return;
          }
          await new Promise((r) => { wake = () => r(undefined); });
        }
      } finally {
        if (!completed && !failed) {
          self.interrupt(); // the caller stopped reading: stop generating
          await finished;
        }
      }
    })();
  }
}
