// Build the browser bundles into web/dist/ (git-ignored): the chat page (index.html, app.js,
// style.css), the engine's Web Worker (worker.js), the offline service worker (sw.js) and a test
// harness (test/). Everything the page needs is bundled here: nothing is loaded from a CDN.
//   node build.mjs            (npm run build)
import { build } from "esbuild";
import { copyFile, mkdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");
await rm(out, { recursive: true, force: true });
await mkdir(join(out, "test"), { recursive: true });

const common = { bundle: true, minify: true, sourcemap: false, target: "es2022", logLevel: "warning", legalComments: "none", keepNames: true };
await build({ ...common, entryPoints: { app: "page/app.js", worker: "src/engine/worker.js" }, format: "esm", outdir: out });
await build({ ...common, entryPoints: { sw: "page/sw.js" }, format: "iife", outdir: out });
await build({ ...common, entryPoints: { harness: "test/harness.js" }, format: "esm", outdir: join(out, "test") });
for (const f of ["index.html", "style.css"]) await copyFile(join(here, "page", f), join(out, f));
await copyFile(join(here, "test", "harness.html"), join(out, "test", "index.html"));

let total = 0;
for (const f of ["index.html", "style.css", "app.js", "worker.js", "sw.js"]) total += (await stat(join(out, f))).size;
console.log(`web/dist: page + worker + service worker ${(total / 1024).toFixed(0)} KiB`);
