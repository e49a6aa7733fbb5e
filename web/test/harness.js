// A page for tests and measurements (dist/test/index.html): the engine on the main thread (so a
// test can reach its model and device), the worker engine, and the runtime itself, on `window.webllm`.
import { createEngine } from "../src/engine/engine.js";
import { createWorkerEngine } from "../src/engine/worker_client.js";
import { runConformance } from "../src/runtime/conformance.js";
import { Model } from "../src/runtime/model.js";

/** @type {any} */ (window).webllm = {
  createEngine,
  createWorkerEngine,
  Model,
  runConformance,
  /** A worker running the engine bundle of the site (dist/worker.js). */
  newWorker: () => new Worker(new URL("../worker.js", import.meta.url), { type: "module" }),
};
document.body.dataset.state = "ready";
