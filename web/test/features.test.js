/// <reference types="node" />
// A plan's variant_features may name WGSL language features (FORMAT.md): the runtime checks them
// against navigator.gpu.wgslLanguageFeatures where the implementation reports them, and assumes them
// where it cannot tell (Node with a device passed in). No GPU needed (tests/test_tuning.py has the
// Python twin).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { usableVariants, variantLacks } from '../src/runtime/package.js';

const i8 = 'packed_4x8_integer_dot_product';
const plan = /** @type {any} */ ({
  decode_variants: { q8gemv32sg: [], q8gemv32: [], gemv32sg: [], gemv32: [] },
  variant_features: { q8gemv32sg: [i8, 'subgroups'], q8gemv32: [i8], gemv32sg: ['subgroups'] },
  variant_limits: {},
});

/** @param {Set<string> | undefined} wgsl @param {() => void} fn */
function withNavigator(wgsl, fn) {
  const had = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: wgsl ? { gpu: { wgslLanguageFeatures: wgsl } } : undefined,
    configurable: true, writable: true });
  try { fn(); } finally {
    if (had) Object.defineProperty(globalThis, 'navigator', had); else delete (/** @type {any} */ (globalThis)).navigator;
  }
}

test('int8 variants run where the WGSL language feature is reported or cannot be known', () => {
  withNavigator(undefined, () => {
    assert.deepEqual(usableVariants(plan, 'decode', ['subgroups'], {}), ['q8gemv32sg', 'q8gemv32', 'gemv32sg', 'gemv32']);
  });
  withNavigator(new Set([i8, 'pointer_composite_access']), () => {
    assert.deepEqual(usableVariants(plan, 'decode', [], {}), ['q8gemv32', 'gemv32']);
  });
});

test('an implementation that reports WGSL language features without it gets the float variants', () => {
  withNavigator(new Set(['pointer_composite_access']), () => {
    assert.deepEqual(usableVariants(plan, 'decode', ['subgroups'], {}), ['gemv32sg', 'gemv32']);
    assert.deepEqual(variantLacks(plan, 'q8gemv32sg', [], {}), [i8, 'subgroups']);
  });
});
