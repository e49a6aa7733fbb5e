/// <reference types="node" />
// Shared by the Node tests: the reference that tests/web_node.py wrote from the native runtime (for
// tests/test_web_node.py and test_web_node_variants.py), a static file server that counts requests, and
// comparisons.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import assert from 'node:assert/strict';

/**
 * @typedef {{package: string, profile: string, decode_variant: string, prefill_variant: string, prompt: number[], long_prompt: number[],
 *   greedy: number[], greedy_past: number, seeded: {temperature: number, top_p: number, seed: number, ids: number[]},
 *   stop: {stop_ids: number[], ids: number[], past: number, logits: number[], next: number},
 *   long: {next: number, logits: number[]}, rewind: {keep: number, suffix: number[], next: number, logits: number[]},
 *   long_decode: {prompt: number[], steps: number, ids: number[], next: number, logits: number[]},
 *   kv_splits: {package: string, prompt: number[], steps: number,
 *     runs: Record<string, {ids: number[], next: number, logits: number[]}>},
 *   split: {package: string, prompt: number[], greedy: number[],
 *     seeded: {temperature: number, top_p: number, top_k: number, seed: number, ids: number[]}},
 *   variants: {package: string, prompt: number[], prefill: Record<string, {next: number, logits: number[]}>,
 *     decode: Record<string, {ids: number[], logits: number[]}>},
 *   wide: {package: string, decode_variants: string[], prompt: number[], ids: number[]}}} Reference
 */

/** The native runtime's reference, or null when the tests run outside pytest. @returns {Reference | null} */
export function reference() {
  const path = process.env.WEBLLM_TEST_REFERENCE;
  return path ? JSON.parse(readFileSync(path, 'utf8')) : null;
}

/**
 * Logits equal within `tol` of max|ref| (f32 sums on two adapters: last bits differ).
 * @param {Float32Array} got @param {number[]} ref @param {number} [tol]
 */
export function assertClose(got, ref, tol = 1e-4) {
  assert.equal(got.length, ref.length);
  let scale = 0, err = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]));
    err = Math.max(err, Math.abs(got[i] - ref[i]));
  }
  assert.ok(err <= tol * scale, `max |logit error| ${err} > ${tol} x ${scale}`);
}

/**
 * A static server for a folder (with CORS, as any static host), counting requests by path.
 * @param {string} root
 * @returns {Promise<{url: string, hits: Map<string, number>, close: () => Promise<void>}>}
 */
export async function serve(root) {
  /** @type {Map<string, number>} */
  const hits = new Map();
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    hits.set(path, (hits.get(path) ?? 0) + 1);
    try {
      const body = await readFile(join(root, normalize(path)));
      res.writeHead(200, { 'access-control-allow-origin': '*', 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404, { 'access-control-allow-origin': '*' });
      res.end();
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(null)));
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    hits,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(() => ok()); }),
  };
}

/** @param {AsyncIterable<number>} it */
export async function collect(it) {
  const out = [];
  for await (const t of it) out.push(t);
  return out;
}
