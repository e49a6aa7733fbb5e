// Small things the engine keeps in the browser's Cache Storage, which (unlike localStorage) Web
// Workers have too.

const TUNING_CACHE = "webllm-tuning";

/**
 * The runtime's decode-variant timing cache in Cache Storage, for hosts without localStorage (a Web
 * Worker): without it every load would time the variants again (seconds on a software adapter).
 * @returns {import("../runtime/tuning.js").TuningStore | null}
 */
export function cacheStorageTuningStore() {
  const storage = /** @type {CacheStorage | undefined} */ (/** @type {any} */ (globalThis).caches);
  if (!storage) return null;
  const url = (/** @type {string} */ key) => `https://webllm.invalid/tuning/${encodeURIComponent(key)}`;
  return {
    async get(key) {
      try {
        const hit = await (await storage.open(TUNING_CACHE)).match(url(key));
        return hit ? await hit.text() : undefined;
      } catch {
        return undefined;
      }
    },
    async set(key, value) {
      try {
        await (await storage.open(TUNING_CACHE)).put(url(key), new Response(value));
      } catch {
        // storage refused: the next load times again
      }
    },
  };
}
