// The chat page: a model picker over the site's models.json, a load progress bar, streaming replies
// rendered as sanitized Markdown, stop / new chat, speed figures, and the conversation kept in
// localStorage across reloads. The engine runs in a Web Worker (worker_client.js), so the page
// never blocks while the model loads or generates.
import DOMPurify from "dompurify";
import { Marked } from "marked";
import { createWorkerEngine } from "../src/engine/worker_client.js";

const STORE = "webllm.chat.v1";
const params = new URLSearchParams(location.search);
const MAX_TOKENS = Number(params.get("max_tokens")) || 512;
// sampling: the package's generation defaults unless the address says (?temperature=0: greedy)
const TEMPERATURE = params.has("temperature") ? Number(params.get("temperature")) : undefined;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  model: /** @type {HTMLSelectElement} */ ($("model")),
  load: /** @type {HTMLButtonElement} */ ($("load")),
  stats: $("stats"),
  loading: $("loading"),
  progress: /** @type {HTMLProgressElement} */ ($("progress")),
  progressText: $("progress-text"),
  error: $("error"),
  messages: $("messages"),
  composer: /** @type {HTMLFormElement} */ ($("composer")),
  prompt: /** @type {HTMLTextAreaElement} */ ($("prompt")),
  send: /** @type {HTMLButtonElement} */ ($("send")),
  stop: /** @type {HTMLButtonElement} */ ($("stop")),
  newChat: /** @type {HTMLButtonElement} */ ($("new-chat")),
};

/** @param {string} s */
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Model output is untrusted: raw HTML in it is shown as text (escaped), never interpreted, and the
// rendered Markdown goes through DOMPurify as well (javascript: links and the like).
const markdown = new Marked({
  gfm: true,
  breaks: true,
  renderer: { html: (/** @type {{text: string}} */ token) => escapeHtml(token.text) },
});

/** @param {string} text */
function renderMarkdown(text) {
  return DOMPurify.sanitize(/** @type {string} */ (markdown.parse(text, { async: false })));
}

/** @typedef {{role: "user" | "assistant", content: string}} Turn */

const state = {
  /** @type {import("../src/engine/worker_client.js").WorkerEngine | null} */
  engine: null,
  /** @type {Worker | null} */
  worker: null,
  /** @type {{id: string, name: string, url: string, bytes?: number}[]} */
  models: [],
  modelId: "",
  /** @type {{t: number, phase: string}[]} when each load phase began (ms since the page started) */
  loadPhases: [],
  /** @type {Turn[]} */
  turns: [],
  busy: false,
};
/** @type {any} */ (window).webllmPage = state; // for tests and the console

/** @param {"idle" | "loading" | "ready" | "generating" | "error" | "no-webgpu"} s */
function setState(s) {
  document.body.dataset.state = s;
  const ready = s === "ready";
  el.prompt.disabled = !ready;
  el.send.disabled = !ready;
  el.stop.disabled = s !== "generating";
  el.load.disabled = s === "loading" || s === "generating" || s === "no-webgpu";
  el.model.disabled = el.load.disabled;
}

/** @param {string} msg */
function showError(msg) {
  el.error.textContent = msg;
  el.error.hidden = !msg;
}

function save() {
  try {
    localStorage.setItem(STORE, JSON.stringify({ model: state.modelId, turns: state.turns }));
  } catch {
    // storage full or disabled: the conversation just isn't kept
  }
}

/** @param {Turn} turn */
function addBubble(turn) {
  const div = document.createElement("div");
  div.className = `msg ${turn.role}`;
  if (turn.role === "user") div.textContent = turn.content;
  else div.innerHTML = renderMarkdown(turn.content);
  el.messages.append(div);
  el.messages.scrollTop = el.messages.scrollHeight;
  return div;
}

function renderAll() {
  el.messages.replaceChildren();
  for (const t of state.turns) addBubble(t);
}

/** @param {number} n */
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

async function loadModel() {
  const entry = state.models.find((m) => m.id === el.model.value);
  if (!entry) return;
  showError("");
  setState("loading");
  el.loading.hidden = false;
  el.progress.removeAttribute("value");
  el.progressText.textContent = "starting";
  if (state.engine) await state.engine.unload().catch(() => {});
  state.worker?.terminate();
  state.engine = null;
  state.worker = new Worker(new URL("worker.js", import.meta.url), { type: "module" });
  const t0 = performance.now();
  state.loadPhases = [{ t: t0, phase: "start" }];
  try {
    state.engine = await createWorkerEngine(state.worker, entry.url, {
      modelId: entry.id,
      onProgress: (p) => {
        if (state.loadPhases[state.loadPhases.length - 1]?.phase !== p.phase) state.loadPhases.push({ t: performance.now(), phase: p.phase });
        if (p.bytesTotal) {
          el.progress.max = p.bytesTotal;
          el.progress.value = p.bytesDone ?? 0;
          el.progressText.textContent = `${p.phase}: ${mb(p.bytesDone ?? 0)} / ${mb(p.bytesTotal)}`;
        } else {
          el.progressText.textContent = p.text || p.phase;
        }
      },
    });
  } catch (e) {
    el.loading.hidden = true;
    setState("error");
    const err = /** @type {Error} */ (e);
    const hint = err.name === "OutOfMemoryError" || err.name === "ContextWindowError" || err.name === "AdapterError"
      ? "This model does not fit this browser's GPU: " : "The model could not be loaded: ";
    showError(hint + err.message);
    return;
  }
  el.loading.hidden = true;
  if (state.modelId !== entry.id) {
    state.turns = [];
    renderAll();
  }
  state.modelId = entry.id;
  save();
  const s = await state.engine.stats();
  el.stats.textContent = `${entry.name} · ${s.profile} · loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  setState("ready");
  el.prompt.focus();
}

/** @param {string} text */
async function send(text) {
  const engine = state.engine;
  if (!engine || state.busy || !text.trim()) return;
  state.busy = true;
  showError("");
  const conversation = state.turns; // "New chat" replaces it: a reply still streaming then is dropped
  conversation.push({ role: "user", content: text });
  addBubble(conversation[conversation.length - 1]);
  save();
  /** @type {Turn} */
  const reply = { role: "assistant", content: "" };
  const bubble = addBubble(reply);
  bubble.classList.add("pending");
  setState("generating");
  let frame = 0;
  const paint = () => {
    frame = 0;
    bubble.innerHTML = renderMarkdown(reply.content);
    el.messages.scrollTop = el.messages.scrollHeight;
  };
  try {
    const stream = await engine.chat.completions.create({
      messages: [...conversation], stream: true, max_tokens: MAX_TOKENS, temperature: TEMPERATURE, truncation: "auto",
    });
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta?.content;
      if (delta) {
        reply.content += delta;
        if (!frame) frame = requestAnimationFrame(paint);
      }
      if (chunk.usage) {
        const x = chunk.usage.extra;
        el.stats.textContent = `prefill ${chunk.usage.prompt_tokens - chunk.usage.prompt_tokens_details.cached_tokens} tok ` +
          `${x.prefill_tokens_per_second.toFixed(1)} tok/s · decode ${chunk.usage.completion_tokens} tok ` +
          `${x.decode_tokens_per_second.toFixed(1)} tok/s`;
      }
    }
  } catch (e) {
    showError(/** @type {Error} */ (e).message);
  } finally {
    if (frame) cancelAnimationFrame(frame);
    paint();
    bubble.classList.remove("pending");
    if (reply.content && state.turns === conversation) conversation.push(reply);
    else bubble.remove();
    save();
    state.busy = false;
    setState("ready");
  }
}

async function main() {
  setState("idle");
  if (!("gpu" in navigator) || !(await navigator.gpu.requestAdapter().catch(() => null))) {
    setState("no-webgpu");
    showError("This browser has no WebGPU, so models cannot run here. Use a recent Chrome or Edge (or Safari 26, " +
      "or Firefox with WebGPU enabled) on a machine with a supported GPU.");
    return;
  }
  if ("serviceWorker" in navigator && params.get("sw") !== "0") navigator.serviceWorker.register("sw.js").catch(() => {});
  try {
    const res = await fetch("models.json");
    state.models = (await res.json()).models;
  } catch {
    showError("models.json is missing: build this site with `webllm export-web`.");
    setState("error");
    return;
  }
  for (const m of state.models) {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = m.bytes ? `${m.name} (${mb(m.bytes)})` : m.name;
    el.model.append(o);
  }
  let saved = { model: "", turns: /** @type {Turn[]} */ ([]) };
  try {
    saved = JSON.parse(localStorage.getItem(STORE) || "null") ?? saved;
  } catch {
    // a damaged entry: start afresh
  }
  const wanted = params.get("model") || saved.model;
  if (state.models.some((m) => m.id === wanted)) el.model.value = wanted;
  if (saved.model === el.model.value) {
    state.modelId = saved.model;
    state.turns = saved.turns;
    renderAll();
  }
  el.load.onclick = () => loadModel();
  el.stop.onclick = () => state.engine?.interrupt();
  el.newChat.onclick = async () => {
    state.engine?.interrupt();
    state.turns = [];
    renderAll();
    save();
    await state.engine?.resetChat();
  };
  el.composer.onsubmit = (ev) => {
    ev.preventDefault();
    const text = el.prompt.value;
    el.prompt.value = "";
    send(text);
  };
  el.prompt.onkeydown = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      el.composer.requestSubmit();
    }
  };
  if (params.get("autoload") !== "0") await loadModel();
  else setState("idle");
}

main();
