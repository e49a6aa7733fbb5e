// Conformance runner: execute the cases of a fixture's expected.json on a loaded Model and compare
// (the twin of webllm/runtime/conformance.py; the same operations with the same meaning):
//
// | op             | meaning                                                                          |
// | reset          | empty the KV cache                                                               |
// | sampling       | setSampling({temperature, top_p, seed}) (the step counter restarts at 0)         |
// | prefill        | append `ids` (in chunks of the package's prefill_chunk)                          |
// | decode         | `steps` decode steps, each on the token the GPU sampled last                     |
// | truncate       | keep the first `past` tokens of the cache                                        |
// | generate       | prefill `prompt`, generate up to `max_tokens` ids (stopping at `stop`) = `expect` |
// | next_token     | the token the last step sampled must be `expect`                                 |
// | logits         | the last step's logits within tolerance[profile] of `expect` (max abs error /    |
// |                | max abs expect)                                                                  |
// | past           | the tokens in the cache must be `expect`                                         |
// | expect_error   | the nested op `do` must fail with a context-window error                         |

import { ContextWindowError, WebLLMError } from './errors.js';

/**
 * @typedef {{op: string, [key: string]: any}} Op
 * @typedef {{name: string, profiles?: string[], ops: Op[]}} Case
 * @typedef {{package: string, tolerance: Record<string, number>, cases: Case[]}} Expected
 * @typedef {{name: string, ok: boolean, detail: string}} CaseResult
 */

/**
 * Run one operation; null if it matched, else what differed.
 * @param {import('./model.js').Model} model @param {Op} op @param {number} tol @param {number[]} errs
 * @returns {Promise<string | null>}
 */
async function runOp(model, op, tol, errs) {
  switch (op.op) {
    case 'reset':
      model.reset();
      break;
    case 'sampling':
      model.setSampling({ temperature: op.temperature ?? 0, top_p: op.top_p ?? 1, seed: op.seed ?? 0 });
      break;
    case 'prefill':
      await model.prefill(op.ids);
      break;
    case 'decode':
      for (let i = 0; i < op.steps; i++) model.decode();
      break;
    case 'truncate':
      model.truncate(op.past);
      break;
    case 'generate': {
      const got = [];
      for await (const t of model.generate(op.prompt, op.max_tokens, op.stop ?? [])) got.push(t);
      if (JSON.stringify(got) !== JSON.stringify(op.expect)) return `generate gave [${got}], expected [${op.expect}]`;
      break;
    }
    case 'next_token': {
      const got = await model.nextToken();
      if (got !== op.expect) return `next token ${got}, expected ${op.expect}`;
      break;
    }
    case 'logits': {
      const got = await model.logits();
      /** @type {number[]} */
      const ref = op.expect;
      let err = 0, scale = 0;
      for (let i = 0; i < ref.length; i++) {
        err = Math.max(err, Math.abs(got[i] - ref[i]));
        scale = Math.max(scale, Math.abs(ref[i]));
      }
      const rel = got.length === ref.length ? err / scale : Infinity;
      errs.push(rel);
      if (!(rel <= tol)) return `logits error ${rel.toPrecision(3)} > tolerance ${tol.toPrecision(3)}`;
      break;
    }
    case 'past':
      if (model.past !== op.expect) return `past ${model.past}, expected ${op.expect}`;
      break;
    case 'expect_error':
      try {
        await runOp(model, op.do, tol, errs);
      } catch (e) {
        if (!(e instanceof ContextWindowError) && !(e instanceof WebLLMError && /context window/.test(e.message))) {
          return `${op.do.op} failed with an unexpected error: ${/** @type {Error} */ (e).message}`;
        }
        return null;
      }
      return `${op.do.op} should have failed (context window full)`;
    default:
      return `unknown op "${op.op}"`;
  }
  return null;
}

/**
 * Run one case's operations in order, stopping at the first that differs.
 * @param {import('./model.js').Model} model @param {Case} c @param {Record<string, number>} tolerance
 * @returns {Promise<CaseResult>}
 */
export async function runCase(model, c, tolerance) {
  const tol = Number(tolerance[model.profile]);
  /** @type {number[]} */
  const errs = [];
  for (let i = 0; i < c.ops.length; i++) {
    let problem;
    try {
      problem = await runOp(model, c.ops[i], tol, errs);
    } catch (e) {
      problem = `${/** @type {Error} */ (e).name}: ${/** @type {Error} */ (e).message}`;
    }
    if (problem) return { name: c.name, ok: false, detail: `op ${i} (${c.ops[i].op}): ${problem}` };
  }
  const worst = errs.length ? `; max logits error ${Math.max(...errs).toPrecision(2)}` : '';
  return { name: c.name, ok: true, detail: `${c.ops.length} ops${worst}` };
}

/**
 * Run every case of the fixture that applies to the model's profile; leaves the model reset.
 * @param {import('./model.js').Model} model @param {Expected} expected
 * @returns {Promise<CaseResult[]>}
 */
export async function runConformance(model, expected) {
  const out = [];
  for (const c of expected.cases) {
    if ((c.profiles ?? [model.profile]).includes(model.profile)) out.push(await runCase(model, c, expected.tolerance));
  }
  model.reset();
  return out;
}
