/// <reference types="node" />
// What differs in Node: files. A fetch that also reads file: URLs, a shard cache kept in a folder
// (the browser's Cache Storage stands in there), and a JSON file for the decode-variant timings.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** $WEBLLM_CACHE, else $XDG_CACHE_HOME/webllm, else ~/.cache/webllm (as webllm/models_cache.py). */
export function cacheDir() {
  if (process.env.WEBLLM_CACHE) return process.env.WEBLLM_CACHE;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'webllm');
}

/**
 * A package argument as a URL: http(s) and file URLs stay, a path becomes a file: URL.
 * @param {string} where
 */
export function toUrl(where) {
  if (/^(https?|file):/.test(where)) return where;
  return pathToFileURL(resolve(where)).href + (where.endsWith('/') ? '' : '/');
}

/**
 * fetch, plus file: URLs read from disk (Node's own fetch refuses them).
 * @param {string | URL | Request} input @param {RequestInit} [init]
 * @returns {Promise<Response>}
 */
export async function nodeFetch(input, init) {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  if (!url.startsWith('file:')) return fetch(input, init);
  try {
    return new Response(await readFile(fileURLToPath(url)));
  } catch (e) {
    const code = /** @type {any} */ (e).code;
    return new Response(null, { status: code === 'ENOENT' ? 404 : 500, statusText: code === 'ENOENT' ? 'Not Found' : String(code) });
  }
}

/**
 * Shards of http(s) packages kept in a folder, one file per URL: the Cache Storage subset the
 * runtime uses (file: packages are local already and are not copied).
 */
export class FolderCache {
  /** @param {string} [dir] */
  constructor(dir = join(cacheDir(), 'web-shards')) {
    this.dir = dir;
  }

  /** @param {string} url */
  _path(url) {
    return join(this.dir, `${createHash('sha256').update(url).digest('hex')}.bin`);
  }

  /** @param {string} url */
  async match(url) {
    if (url.startsWith('file:')) return undefined;
    try {
      return new Response(await readFile(this._path(url)));
    } catch {
      return undefined;
    }
  }

  /** @param {string} url @param {Response} response */
  async put(url, response) {
    if (url.startsWith('file:')) return;
    await mkdir(this.dir, { recursive: true });
    const path = this._path(url);
    const tmp = `${path}.tmp${process.pid}`;
    await writeFile(tmp, new Uint8Array(await response.arrayBuffer()));
    await rename(tmp, path);
  }

  /** @param {string} url */
  async delete(url) {
    const path = this._path(url);
    if (!existsSync(path)) return false;
    await rm(path, { force: true });
    return true;
  }
}

/**
 * Decode-variant winners in a JSON file (`<cache dir>/web-tuning.json`).
 * @param {string} [path]
 * @returns {import('../runtime/tuning.js').TuningStore}
 */
export function fileTuningStore(path = join(cacheDir(), 'web-tuning.json')) {
  const read = () => {
    try { return JSON.parse(readFileSync(path, 'utf8')); } catch { return {}; }
  };
  return {
    get: (key) => read()[key],
    set: async (key, value) => {
      try {
        await mkdir(join(path, '..'), { recursive: true });
        const tmp = `${path}.tmp${process.pid}`;
        await writeFile(tmp, JSON.stringify({ ...read(), [key]: value }, null, 1));
        await rename(tmp, path);
      } catch { /* a read-only cache only costs the timing again next load */ }
    },
  };
}
