// Offline: the page, its bundles and every small file of the packages (manifests, plans, kernels,
// tokenizers) are served network-first and kept in Cache Storage, so the site works offline after
// the first load. Weight shards (*.bin) pass through: the runtime keeps them, verified by sha256, in
// its own cache.
const CACHE = "webllm-site-v1";
const sw = /** @type {any} */ (self);

sw.addEventListener("install", () => sw.skipWaiting());
sw.addEventListener("activate", (/** @type {any} */ ev) => ev.waitUntil(sw.clients.claim()));

sw.addEventListener("fetch", (/** @type {any} */ ev) => {
  const req = ev.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== location.origin || url.pathname.endsWith(".bin")) return;
  ev.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const res = await fetch(req);
      if (res.ok) await cache.put(req, res.clone());
      return res;
    } catch (e) {
      const hit = await cache.match(req, { ignoreSearch: true });
      if (hit) return hit;
      throw e;
    }
  })());
});
