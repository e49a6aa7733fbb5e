// The OpenAI API's request and response shapes (as the `openai` JS client types them), apart from
// the engine and from the transport (in-process, Web Worker messages). Twin of webllm/protocol/.
import { InvalidParameterError, ParameterTypeError, UnsupportedParameterError } from "./errors.js";

export const MAX_STOP = 4;

/**
 * @typedef {object} CompletionUsage
 * @property {number} prompt_tokens
 * @property {number} completion_tokens
 * @property {number} total_tokens
 * @property {{cached_tokens: number}} prompt_tokens_details prompt tokens already in the KV cache
 * @property {{prefill_tokens_per_second: number, decode_tokens_per_second: number}} [extra] webllm's speed figures
 */

/** @typedef {"stop" | "length" | "abort"} FinishReason "abort": the caller interrupted the generation */

/**
 * @typedef {object} ChatCompletion
 * @property {string} id
 * @property {"chat.completion"} object
 * @property {number} created unix seconds
 * @property {string} model
 * @property {{index: number, message: {role: "assistant", content: string}, finish_reason: FinishReason, logprobs: null}[]} choices
 * @property {CompletionUsage} usage
 */

/**
 * @typedef {object} ChatCompletionChunk
 * @property {string} id
 * @property {"chat.completion.chunk"} object
 * @property {number} created
 * @property {string} model
 * @property {{index: number, delta: {role?: "assistant", content?: string}, finish_reason: FinishReason | null, logprobs: null}[]} choices
 * @property {CompletionUsage} [usage] on the last chunk only
 */

/**
 * @typedef {object} Completion a completion, or (streaming) one chunk of it: the API uses one shape for both
 * @property {string} id
 * @property {"text_completion"} object
 * @property {number} created
 * @property {string} model
 * @property {{index: number, text: string, finish_reason: FinishReason | null, logprobs: null}[]} choices
 * @property {CompletionUsage} [usage]
 */

/**
 * @typedef {object} SamplingParams what both endpoints share, validated
 * @property {number | null} max_tokens null: until the context window is full
 * @property {number | null} temperature 0: greedy; null: the package's default, else OpenAI's (1)
 * @property {number | null} top_p null: the package's default, else 1
 * @property {string | null} model the model the caller names (null: any)
 * @property {number | null} seed null: a random one
 * @property {string[]} stop
 * @property {boolean} stream
 */

/** @typedef {{role: "system" | "developer" | "user" | "assistant", content: string | {type: "text", text: string}[] | null}} ChatMessage */

/**
 * @typedef {object} ChatCompletionRequest
 * @property {ChatMessage[]} messages
 * @property {boolean} [stream]
 * @property {number | null} [max_tokens]
 * @property {number | null} [max_completion_tokens]
 * @property {number | null} [temperature]
 * @property {number | null} [top_p]
 * @property {number | null} [seed]
 * @property {string | string[] | null} [stop]
 * @property {string} [model]
 * @property {number} [n] only 1
 * @property {{include_usage?: boolean}} [stream_options] accepted; the last chunk always carries usage
 */

/**
 * @typedef {object} CompletionRequest
 * @property {string} prompt
 * @property {boolean} [stream]
 * @property {number | null} [max_tokens] default 16 (OpenAI's)
 * @property {number | null} [temperature]
 * @property {number | null} [top_p]
 * @property {number | null} [seed]
 * @property {string | string[] | null} [stop]
 * @property {string} [model]
 * @property {number} [n]
 */

const COMMON = new Set(["model", "max_tokens", "temperature", "top_p", "seed", "n", "stop", "stream", "stream_options"]);
const IGNORED = new Set(["user", "metadata", "store", "service_tier", "parallel_tool_calls"]);

/** @param {string} prefix */
export function newId(prefix = "chatcmpl") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * @param {Record<string, any>} body
 * @param {Set<string>} own fields of this endpoint beyond the common ones
 */
function checkFields(body, own) {
  if (!body || typeof body !== "object" || Array.isArray(body)) throw new ParameterTypeError("the request must be an object");
  for (const [k, v] of Object.entries(body)) {
    if (COMMON.has(k) || own.has(k) || IGNORED.has(k) || v === null || v === undefined) continue;
    throw new UnsupportedParameterError(`'${k}' is not supported by webllm's browser engine`, k);
  }
}

/**
 * @param {any} v @param {string} name @param {number} lo @param {number} hi
 * @param {boolean} [loOpen] @param {number | null} [dflt]
 * @returns {number | null}
 */
function num(v, name, lo, hi, loOpen = false, dflt = null) {
  if (v === null || v === undefined) return dflt;
  if (typeof v !== "number" || Number.isNaN(v)) throw new ParameterTypeError(`'${name}' must be a number`, name);
  if (v > hi || v < lo || (loOpen && v === lo))
    throw new InvalidParameterError(`'${name}' must lie in ${loOpen ? "(" : "["}${lo}, ${hi}] (got ${v})`, name);
  return v;
}

/** @param {any} v @param {string} name @returns {number | null} */
function posInt(v, name) {
  if (v === null || v === undefined) return null;
  if (!Number.isInteger(v)) throw new ParameterTypeError(`'${name}' must be an integer`, name);
  if (v < 1) throw new InvalidParameterError(`'${name}' must be at least 1 (got ${v})`, name);
  return v;
}

/**
 * The fields both endpoints share, validated. None of the package's generation defaults is applied here.
 * @param {Record<string, any>} body
 * @param {number | null} maxTokens
 * @returns {SamplingParams}
 */
function sampling(body, maxTokens) {
  if (body.n !== undefined && body.n !== null && body.n !== 1)
    throw new UnsupportedParameterError("'n' > 1 is not supported by webllm's browser engine", "n");
  let stop = body.stop ?? [];
  if (typeof stop === "string") stop = [stop];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== "string"))
    throw new ParameterTypeError("'stop' must be a string or a list of strings", "stop");
  if (stop.length > MAX_STOP) throw new InvalidParameterError(`'stop': at most ${MAX_STOP} strings (got ${stop.length})`, "stop");
  if (stop.some((s) => s === "")) throw new InvalidParameterError("'stop': empty strings cannot be matched", "stop");
  const seed = body.seed ?? null;
  if (seed !== null && !Number.isInteger(seed)) throw new ParameterTypeError("'seed' must be an integer", "seed");
  if (body.model !== undefined && body.model !== null && typeof body.model !== "string")
    throw new ParameterTypeError("'model' must be a string", "model");
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean")
    throw new ParameterTypeError("'stream' must be a boolean", "stream");
  return {
    max_tokens: maxTokens,
    temperature: num(body.temperature, "temperature", 0, 2),
    top_p: num(body.top_p, "top_p", 0, 1, true),
    seed,
    stop,
    stream: !!body.stream,
    model: body.model ?? null,
  };
}

/**
 * Validate a chat request into the conversation (as the chat template takes it) and the sampling parameters.
 * @param {ChatCompletionRequest} body
 * @returns {{messages: {role: string, content: string}[], params: SamplingParams}}
 */
export function parseChatRequest(body) {
  checkFields(body, new Set(["messages", "max_completion_tokens", "truncation"]));
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw new ParameterTypeError("'messages' must be a non-empty list", "messages");
  const messages = body.messages.map((m, i) => {
    if (!m || typeof m !== "object" || !["system", "developer", "user", "assistant"].includes(m.role))
      throw new InvalidParameterError(`messages[${i}]: 'role' must be system, developer, user or assistant`, "messages");
    let content = m.content ?? "";
    if (Array.isArray(content)) content = content.map((p) => (p && p.type === "text" ? p.text : "")).join("");
    if (typeof content !== "string") throw new ParameterTypeError(`messages[${i}]: 'content' must be a string`, "messages");
    return { role: m.role === "developer" ? "system" : m.role, content };
  });
  const limit = posInt(body.max_completion_tokens, "max_completion_tokens") ?? posInt(body.max_tokens, "max_tokens");
  return { messages, params: sampling(body, limit) };
}

/**
 * @param {CompletionRequest} body
 * @returns {{prompt: string, params: SamplingParams}}
 */
export function parseCompletionRequest(body) {
  checkFields(body, new Set(["prompt", "echo"]));
  if (body && /** @type {any} */ (body).echo) throw new UnsupportedParameterError("'echo' is not supported", "echo");
  if (typeof body.prompt !== "string") throw new ParameterTypeError("'prompt' must be a string", "prompt");
  const limit = body.max_tokens === undefined ? 16 : posInt(body.max_tokens, "max_tokens");
  return { prompt: body.prompt, params: sampling(body, limit) };
}

/**
 * @param {number} prompt @param {number} cached @param {number} completion
 * @param {number} [prefillTps] @param {number} [decodeTps]
 * @returns {CompletionUsage}
 */
export function usage(prompt, cached, completion, prefillTps = 0, decodeTps = 0) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
    extra: { prefill_tokens_per_second: prefillTps, decode_tokens_per_second: decodeTps },
  };
}

/**
 * @param {string} id @param {string} model @param {string} content @param {FinishReason} finish
 * @param {CompletionUsage} u
 * @returns {ChatCompletion}
 */
export function chatCompletion(id, model, content, finish, u) {
  return {
    id, object: "chat.completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: finish, logprobs: null }],
    usage: u,
  };
}

/**
 * @param {string} id @param {string} model @param {{role?: "assistant", content?: string}} delta
 * @param {FinishReason | null} finish @param {CompletionUsage} [u]
 * @returns {ChatCompletionChunk}
 */
export function chatCompletionChunk(id, model, delta, finish = null, u = undefined) {
  /** @type {ChatCompletionChunk} */
  const c = {
    id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
  };
  if (u) c.usage = u;
  return c;
}

/**
 * @param {string} id @param {string} model @param {string} text @param {FinishReason | null} finish
 * @param {CompletionUsage} [u]
 * @returns {Completion}
 */
export function completion(id, model, text, finish, u = undefined) {
  /** @type {Completion} */
  const c = {
    id, object: "text_completion", created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, text, finish_reason: finish, logprobs: null }],
  };
  if (u) c.usage = u;
  return c;
}
