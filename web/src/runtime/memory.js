// Memory fit before allocation: the plan knows every buffer's size, and the KV-dependent ones follow
// a `per_context` rule, so the largest KV capacity the device can hold is known before any byte is
// allocated (WebGPU reports no free memory; limits and an optional budget are what we can check).

import { AdapterError, ContextWindowError } from './errors.js';

/**
 * Bytes of a plan buffer for a KV capacity of `capacity` tokens (FORMAT.md, `per_context`).
 * @param {import('./package.js').PlanBuffer} b @param {number} capacity
 */
export function contextSize(b, capacity) {
  const rule = b.per_context;
  if (!rule) return b.size;
  return Math.max(16, Math.ceil((Math.ceil(capacity / rule.unit) * rule.bytes) / 16) * 16);
}

/**
 * The KV capacity to allocate: `contextWindow` if given (refused when it does not fit), else the
 * package's context_window lowered until every buffer fits the binding and buffer limits and the
 * whole fits `maxMemoryBytes`. Tensors and fixed buffers that cannot fit are refused outright.
 * @param {import('./package.js').Manifest} manifest @param {import('./package.js').PlanBuffer[]} buffers
 * @param {{maxBindingSize: number, maxBufferSize: number, maxMemoryBytes?: number, contextWindow?: number}} limits
 * @returns {number}
 */
export function fitCapacity(manifest, buffers, { maxBindingSize, maxBufferSize, maxMemoryBytes, contextWindow }) {
  const full = Number(manifest.context_window);
  const limit = Math.min(maxBindingSize, maxBufferSize);
  const mb = (/** @type {number} */ n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  let fixed = 0;
  for (const [name, t] of Object.entries(manifest.tensors)) {
    if (t.size > limit) {
      throw new AdapterError(`tensor ${name} (${t.size} bytes) exceeds this device's storage binding limit of ${limit} `
        + `bytes; recompile with --max-binding-size ${limit}`);
    }
    fixed += t.size;
  }
  for (const b of buffers) {
    if (b.per_context) continue;
    if (b.size > limit) {
      throw new AdapterError(`buffer ${b.name} (${b.size} bytes) exceeds this device's storage binding limit of `
        + `${limit} bytes; recompile with a smaller --prefill-chunk`);
    }
    fixed += b.size;
  }
  const scaled = buffers.filter((b) => b.per_context);
  /** @param {number} c */
  const fits = (c) => scaled.every((b) => contextSize(b, c) <= limit)
    && (maxMemoryBytes === undefined || fixed + scaled.reduce((s, b) => s + contextSize(b, c), 0) <= maxMemoryBytes);
  if (contextWindow !== undefined) {
    if (!Number.isInteger(contextWindow) || contextWindow < 1 || contextWindow > full) {
      throw new ContextWindowError(`contextWindow ${contextWindow}: must be between 1 and the package's ${full}`);
    }
    if (!fits(contextWindow)) {
      throw new ContextWindowError(`a context of ${contextWindow} tokens does not fit this device `
        + `(at most ${largest(fits, contextWindow)} tokens do)`);
    }
    return contextWindow;
  }
  if (fits(full)) return full;
  const c = largest(fits, full);
  if (c < 1) {
    const need = fixed + scaled.reduce((s, b) => s + contextSize(b, 1), 0);
    throw new ContextWindowError(`this model does not fit: even one token of context needs ${mb(need)}`
      + (maxMemoryBytes === undefined ? '' : ` (budget ${mb(maxMemoryBytes)})`));
  }
  return c;
}

/** The largest c in [0, hi] with fits(c) (fits is monotone; 0 when none). @param {(c: number) => boolean} fits @param {number} hi */
function largest(fits, hi) {
  let lo = 0;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
