// Weight shards: fetched once, kept in the browser's Cache Storage (or a cache object the host gives,
// such as the Node entry's folder cache), and verified by sha256 (SubtleCrypto) every time they are read,
// so a second load reads no shard over the network and a corrupt cached shard is fetched again.

import { PackageError } from './errors.js';
import { fetchFile } from './package.js';

export const CACHE_NAME = 'webllm-shards';

/**
 * The subset of the Cache Storage API a shard cache needs (a browser `Cache` is one).
 * @typedef {{match(url: string): Promise<Response | undefined>, put(url: string, response: Response): Promise<void>,
 *   delete(url: string): Promise<boolean>}} ShardCache
 */

/**
 * Progress of a load: `phase` is one of "manifest", "weights", "kernels", "tuning", "ready".
 * @typedef {{phase: string, bytesDone: number, bytesTotal: number, text: string}} Progress
 */

/**
 * Hex sha256 of some bytes (SubtleCrypto: browsers in secure contexts, Node 20+).
 * @param {Uint8Array} bytes
 */
export async function sha256Hex(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new PackageError('SubtleCrypto is unavailable (serve the page over https or from localhost)');
  const digest = new Uint8Array(await subtle.digest('SHA-256', /** @type {BufferSource} */ (bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The shard cache to use: `option` itself when it is a cache object, none when false, else the
 * browser's Cache Storage when there is one (none in Node unless the host passes one).
 * @param {ShardCache | false | undefined} option
 * @returns {Promise<ShardCache | null>}
 */
export async function openShardCache(option) {
  if (option === false) return null;
  if (option) return option;
  const storage = /** @type {any} */ (globalThis).caches;
  if (!storage) return null;
  try {
    return await storage.open(CACHE_NAME);
  } catch {
    return null; // Cache Storage refused (private window, opaque origin): load from the network each time
  }
}

/**
 * Whether bytes are the shard the manifest describes.
 * @param {Uint8Array} bytes @param {import('./package.js').Shard} shard
 */
async function matches(bytes, shard) {
  return bytes.byteLength === shard.nbytes && (await sha256Hex(bytes)) === shard.sha256;
}

/**
 * Read a response body, reporting bytes as they arrive.
 * @param {Response} r @param {(n: number) => void} onBytes @param {number} expected
 */
async function readBody(r, onBytes, expected) {
  if (!r.body) {
    const b = new Uint8Array(await r.arrayBuffer());
    onBytes(b.byteLength);
    return b;
  }
  const reader = r.body.getReader();
  let out = new Uint8Array(expected);
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n + value.byteLength > out.byteLength) { // longer than the manifest says: keep it, the size check reports
      const bigger = new Uint8Array(Math.max(out.byteLength * 2, n + value.byteLength));
      bigger.set(out.subarray(0, n));
      out = bigger;
    }
    out.set(value, n);
    n += value.byteLength;
    onBytes(value.byteLength);
  }
  return out.subarray(0, n);
}

/**
 * One verified shard: from the cache when it is there and intact, else from the network (then cached).
 * A cached copy that fails its size or hash is deleted and fetched again.
 * @param {string} base package base URL @param {import('./package.js').Shard} shard
 * @param {{fetch: typeof globalThis.fetch, cache: ShardCache | null, onBytes: (n: number, fromCache: boolean) => void}} io
 * @returns {Promise<{bytes: Uint8Array<ArrayBuffer>, fromCache: boolean}>}
 */
export async function loadShard(base, shard, { fetch, cache, onBytes }) {
  const url = base + shard.file;
  if (cache) {
    const hit = await cache.match(url).catch(() => undefined);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await matches(bytes, shard)) {
        onBytes(bytes.byteLength, true);
        return { bytes, fromCache: true };
      }
      await cache.delete(url).catch(() => false);
    }
  }
  let sent = 0;
  const r = await fetchFile(fetch, url);
  const bytes = await readBody(r, (n) => { sent += n; onBytes(n, false); }, shard.nbytes);
  if (bytes.byteLength !== shard.nbytes) {
    throw new PackageError(`${url}: weight shard has ${bytes.byteLength} bytes, the manifest says ${shard.nbytes} `
      + '(truncated download?)');
  }
  if ((await sha256Hex(bytes)) !== shard.sha256) {
    throw new PackageError(`${url}: sha256 mismatch (corrupt download, or the package changed while loading); `
      + 'reload, or rebuild the package');
  }
  if (sent !== bytes.byteLength) onBytes(bytes.byteLength - sent, false);
  if (cache) {
    try {
      await cache.put(url, new Response(/** @type {BodyInit} */ (bytes)));
    } catch {
      // storage full or refused: this load still works, the next one fetches again
    }
  }
  return { bytes, fromCache: false };
}

/**
 * Load every shard (a few at a time) and hand each verified shard to `use`, reporting progress.
 * @param {string} base @param {import('./package.js').Shard[]} shards
 * @param {{fetch: typeof globalThis.fetch, cache: ShardCache | null, onProgress?: (p: Progress) => void,
 *   parallel?: number}} io
 * @param {(index: number, bytes: Uint8Array<ArrayBuffer>) => void} use
 * @returns {Promise<{fetched: number, cached: number}>} shard counts by source
 */
export async function loadShards(base, shards, { fetch, cache, onProgress, parallel = 4 }, use) {
  const bytesTotal = shards.reduce((s, x) => s + x.nbytes, 0);
  let bytesDone = 0;
  const counts = { fetched: 0, cached: 0 };
  const mb = (/** @type {number} */ n) => (n / 1e6).toFixed(1);
  /** @param {number} n @param {boolean} fromCache */
  const onBytes = (n, fromCache) => {
    bytesDone += n;
    onProgress?.({ phase: 'weights', bytesDone, bytesTotal,
      text: `weights ${mb(bytesDone)} / ${mb(bytesTotal)} MB${fromCache ? ' (cache)' : ''}` });
  };
  let next = 0;
  const worker = async () => {
    while (next < shards.length) {
      const i = next++;
      const { bytes, fromCache } = await loadShard(base, shards[i], { fetch, cache, onBytes });
      counts[fromCache ? 'cached' : 'fetched'] += 1;
      use(i, bytes);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, shards.length) }, worker));
  return counts;
}
