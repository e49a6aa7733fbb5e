// User-facing errors: named classes by condition (mirrors webllm/errors.py), each with one actionable
// line, so an engine or a page can map them to a message or a status without reading the text.

/** Base of every expected user error (bad input, unknown package version, adapter too small). */
export class WebLLMError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** A model package that is incomplete, corrupt, unreachable or of an unknown format version. */
export class PackageError extends WebLLMError {}

/** The WebGPU adapter cannot run this package (no WebGPU, missing feature, limit too small). */
export class AdapterError extends WebLLMError {}

/** The KV cache cannot hold the request (prompt too long, or no context fits the device). */
export class ContextWindowError extends WebLLMError {}

/** The device ran out of memory while the model was being allocated; everything was released. */
export class OutOfMemoryError extends WebLLMError {}

/** The device was lost (driver reset, `device.destroy()`); reload the model to go on. */
export class DeviceLostError extends WebLLMError {}

/** A caller passed an invalid argument (token id out of range, bad sampling parameter). */
export class InputError extends WebLLMError {}
