// Engine errors: the runtime's named classes plus the request errors, each with one actionable
// line (the twin of webllm/errors.py). Callers branch on the class (or, after a trip through a Web
// Worker, on `name`), never on message text.

import {
  AdapterError, ContextWindowError, DeviceLostError, InputError, OutOfMemoryError, PackageError, WebLLMError,
} from "../runtime/errors.js";

export { AdapterError, ContextWindowError, DeviceLostError, InputError, OutOfMemoryError, PackageError, WebLLMError };

/** A request the engine refuses; `param` names the offending request field when there is one. */
export class RequestError extends WebLLMError {
  /** @param {string} message @param {string | null} [param] */
  constructor(message, param = null) {
    super(message);
    this.param = param;
  }
}

/** A parameter value out of range or inconsistent (temperature -1, top_p 0, five stop strings). */
export class InvalidParameterError extends RequestError {}

/** A parameter of the wrong type, or a required one missing. */
export class ParameterTypeError extends InvalidParameterError {}

/** A parameter this engine does not implement (tools, logprobs): refused, never silently ignored. */
export class UnsupportedParameterError extends RequestError {}

/** The prompt does not fit the model's context window. */
export class ContextWindowExceededError extends RequestError {}

/** The request names a model this engine does not serve. */
export class ModelNotFoundError extends RequestError {}

/** The engine was unloaded; create a new one. */
export class EngineUnloadedError extends WebLLMError {}

const CLASSES = {
  WebLLMError, RequestError, InvalidParameterError, ParameterTypeError, UnsupportedParameterError,
  ContextWindowExceededError, ModelNotFoundError, PackageError, AdapterError, EngineUnloadedError, ContextWindowError, DeviceLostError,
  InputError, OutOfMemoryError,
};

/**
 * Structured-clone form of an error, for postMessage (Error subclasses lose their class on the way).
 * @param {any} e
 * @returns {{name: string, message: string, param?: string | null}}
 */
export function serializeError(e) {
  if (e instanceof Error) return { name: e.name, message: e.message, param: /** @type {any} */ (e).param ?? null };
  return { name: "Error", message: String(e) };
}

/**
 * The error a serialized one stands for: the engine's own class when it is one of ours.
 * @param {{name: string, message: string, param?: string | null}} s
 * @returns {Error}
 */
export function deserializeError(s) {
  const cls = /** @type {any} */ (CLASSES)[s.name];
  const e = cls ? (cls.prototype instanceof RequestError || cls === RequestError ? new cls(s.message, s.param ?? null)
    : new cls(s.message)) : new Error(s.message);
  e.name = s.name;
  return e;
}
