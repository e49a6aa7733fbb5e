#!/usr/bin/env node
/// <reference types="node" />
// node web/src/node/dispatch_cost.js [options]: what a dispatch costs in a dependent chain by its grid
// alone, on Dawn: the twin of benchmarks/dispatch_cost.py (the same trivial kernel: thread 0 of each
// workgroup writes one word of a shared output, so Dawn puts a barrier between the dispatches as
// between a decode step's). Dawn quantizes timestamps by default, so the time is the wall clock's,
// taken differentially: the best pass of 2n dispatches less the best pass of n, over n. With --json,
// one JSON object on stdout; `python benchmarks/dispatch_cost.py --dawn` runs it beside the native one.

import { parseArgs } from 'node:util';
import { adapterName, requestDevice } from '../runtime/device.js';
import { dawnOptions, nodeGpu, releaseGpu } from './index.js';

const USAGE = `usage: node web/src/node/dispatch_cost.js [options]
  --threads 64,256           threads a workgroup
  --groups 1,132,768,1792    workgroups a dispatch
  --wg-bytes 0               bytes of workgroup memory a workgroup declares (and reads one word of)
  --chain N                  dispatches a pass (default 64; passes of N and 2N are timed)
  --seconds S                time spent on each configuration (default 0.4)
  --dawn OPTIONS             Dawn options, ';'-separated (default $WEBLLM_DAWN)
  --json                     print one JSON object`;

/** The kernel of benchmarks/dispatch_cost.py's `source`. @param {number} threads @param {number} wgBytes */
export function source(threads, wgBytes) {
  const decl = wgBytes ? `var<workgroup> wg: array<vec4<u32>, ${wgBytes / 16}>;\n` : '';
  const value = wgBytes ? 'wg[w.x % 4u].x' : 'l';
  return '@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n' + decl
    + `@compute @workgroup_size(${threads})\n`
    + 'fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(local_invocation_index) l: u32) {\n'
    + `    if (l == 0u) { o[w.x] = ${value}; }\n}\n`;
}

/** "1,132" -> [1, 132]. @param {string} name @param {string} text */
function ints(name, text) {
  const out = text.split(',').filter((s) => s.trim()).map(Number);
  if (!out.length || out.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new Error(`--${name} ${text}: non-negative integers, comma-separated`);
  }
  return out;
}

/** Seconds of one submitted pass of n dispatches of `groups` workgroups, waited for. */
async function onePass(/** @type {GPUDevice} */ device, /** @type {GPUComputePipeline} */ pipe,
  /** @type {GPUBindGroup} */ bg, /** @type {number} */ n, /** @type {number} */ groups) {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipe);
  pass.setBindGroup(0, bg);
  for (let i = 0; i < n; i++) pass.dispatchWorkgroups(groups);
  pass.end();
  const cb = enc.finish();
  const t = performance.now();
  device.queue.submit([cb]);
  await device.queue.onSubmittedWorkDone();
  return (performance.now() - t) / 1e3;
}

/**
 * Seconds a dispatch: (best pass of 2n - best pass of n) / n, the passes interleaved for `seconds`; where
 * noise swamps the difference (a busy software adapter), the 2n pass's own figure, which bounds it.
 */
export async function perDispatch(/** @type {GPUDevice} */ device, /** @type {GPUComputePipeline} */ pipe,
  /** @type {GPUBindGroup} */ bg, /** @type {number} */ n, /** @type {number} */ groups, /** @type {number} */ seconds) {
  let one = Infinity;
  let two = Infinity;
  const t0 = performance.now();
  for (let round = 0; round < 5 || performance.now() - t0 < seconds * 1e3; round++) {
    const a = await onePass(device, pipe, bg, n, groups);
    const b = await onePass(device, pipe, bg, 2 * n, groups);
    if (round >= 2) { // the first rounds wake the GPU up
      one = Math.min(one, a);
      two = Math.min(two, b);
    }
  }
  return two > one ? (two - one) / n : two / (2 * n);
}

async function main() {
  const { values } = parseArgs({
    options: {
      threads: { type: 'string', default: '64,256' },
      groups: { type: 'string', default: '1,132,768,1792' },
      'wg-bytes': { type: 'string', default: '0' },
      chain: { type: 'string', default: '64' },
      seconds: { type: 'string', default: '0.4' },
      dawn: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const threadsList = ints('threads', values.threads);
  const groupsList = ints('groups', values.groups);
  const bytesList = ints('wg-bytes', values['wg-bytes']);
  const chain = Number(values.chain);
  const seconds = Number(values.seconds);
  if (!Number.isInteger(chain) || chain < 1) throw new Error(`--chain ${values.chain}: a positive integer`);
  if (!(seconds >= 0)) throw new Error(`--seconds ${values.seconds}: a number of at least 0`);
  const { adapter, device } = await requestDevice({ gpu: nodeGpu(values.dawn !== undefined ? dawnOptions(values.dawn) : undefined) });
  const out = device.createBuffer({ size: 4 * Math.max(...groupsList, 1), usage: GPUBufferUsage.STORAGE });
  const results = [];
  for (const wgBytes of bytesList) {
    for (const threads of threadsList) {
      if (threads > device.limits.maxComputeInvocationsPerWorkgroup || threads > device.limits.maxComputeWorkgroupSizeX
        || wgBytes > device.limits.maxComputeWorkgroupStorageSize || wgBytes % 16) continue;
      const module = device.createShaderModule({ code: source(threads, wgBytes) });
      const pipe = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] });
      const line = [];
      for (const groups of groupsList) {
        if (groups < 1 || groups > device.limits.maxComputeWorkgroupsPerDimension) continue;
        const us = (await perDispatch(device, pipe, bg, chain, groups, seconds)) * 1e6;
        results.push({ threads, groups, wg_bytes: wgBytes, us });
        line.push(`${groups}: ${us.toFixed(2)}`);
      }
      if (!values.json) console.log(`${String(threads).padStart(5)} threads, ${String(wgBytes / 1024).padStart(3)} KiB   ${line.join('  ')}`);
    }
  }
  if (values.json) console.log(JSON.stringify({ host: 'dawn', adapter: adapterName(adapter), chain, clock: 'wall', results }));
  device.destroy();
  releaseGpu();
  return 0;
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(`dispatch_cost: ${e instanceof Error ? e.message : e}`);
  process.exitCode = 1;
});
