// The engine inside a Web Worker: a thin message handler over engine.js, so that tokenizing,
// encoding GPU steps and reading ids back never block the page. The main-thread side is
// worker_client.js. Messages in: {id, op, args}; out: {id, type: "progress" | "chunk" | "result" |
// "error", ...}. A streaming request answers with one "chunk" per ChatCompletionChunk, then a
// "result" with no value.
import { createEngine } from "./engine.js";
import { serializeError } from "./errors.js";

/** @type {import("./engine.js").Engine | null} */
let engine = null;
const scope = /** @type {any} */ (globalThis);

/** @param {any} msg */
function post(msg) {
  scope.postMessage(msg);
}

/** @param {number} id @param {string} op @param {any} args */
async function handle(id, op, args) {
  if (op === "load") {
    if (engine) await engine.unload();
    engine = null;
    engine = await createEngine(args.url, {
      ...args.options,
      onProgress: (/** @type {any} */ p) => post({ id, type: "progress", progress: p }),
    });
    return engine.stats();
  }
  if (op === "interrupt") return engine?.interrupt();
  if (!engine) throw new Error("no model is loaded in this worker");
  switch (op) {
    case "chat":
    case "completion": {
      const api = op === "chat" ? engine.chat.completions : engine.completions;
      const r = await api.create(args);
      if (!args.stream) return r;
      for await (const chunk of r) post({ id, type: "chunk", chunk });
      return undefined;
    }
    case "resetChat":
      return engine.resetChat();
    case "stats":
      return engine.stats();
    case "unload": {
      const e = engine;
      engine = null;
      return e.unload();
    }
    default:
      throw new Error(`unknown operation ${op}`);
  }
}

scope.onmessage = async (/** @type {MessageEvent} */ ev) => {
  const { id, op, args } = ev.data;
  try {
    post({ id, type: "result", value: await handle(id, op, args) });
  } catch (e) {
    post({ id, type: "error", error: serializeError(e) });
  }
};
