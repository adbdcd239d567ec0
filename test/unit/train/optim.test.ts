import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Adam } from '../../../src/train/adam.js';
import { applyMask, hardThreshold, keepCount, sparsityOf, topKMask } from '../../../src/train/sparsity.js';
import { quantizeI8 } from '../../../src/engine/model.js';

describe('Adam', () => {
  it('takes the bias-corrected first steps exactly', () => {
    const p = Float64Array.of(1, -2);
    const g = Float64Array.of(0.5, -4);
    const adam = new Adam([2], { beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    adam.step([p], [g], 0.1);
    // Step 1: m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps) = ±lr.
    expect(p[0]).toBeCloseTo(1 - 0.1 * 0.5 / (0.5 + 1e-8), 12);
    expect(p[1]).toBeCloseTo(-2 + 0.1 * 4 / (4 + 1e-8), 12);
    // Step 2 with a different gradient, against the textbook formulas.
    const g2 = Float64Array.of(-1, 2);
    const before = Float64Array.from(p);
    adam.step([p], [g2], 0.1);
    for (let i = 0; i < 2; i++) {
      const m = 0.9 * (0.1 * g[i]!) + 0.1 * g2[i]!;
      const v = 0.999 * (0.001 * g[i]! ** 2) + 0.001 * g2[i]! ** 2;
      const mh = m / (1 - 0.9 ** 2), vh = v / (1 - 0.999 ** 2);
      expect(p[i]).toBeCloseTo(before[i]! - (0.1 * mh) / (Math.sqrt(vh) + 1e-8), 12);
    }
    expect(adam.steps).toBe(2);
  });

  it('minimises a quadratic and keeps masked entries at zero', () => {
    const target = Float64Array.of(3, -1, 2, 0.5);
    const p = new Float64Array(4);
    const g = new Float64Array(4);
    const mask = Uint8Array.of(1, 1, 0, 1);
    const adam = new Adam([4]);
    for (let t = 0; t < 3000; t++) {
      for (let i = 0; i < 4; i++) g[i] = 2 * (p[i]! - target[i]!);
      adam.step([p], [g], 0.05 * 0.999 ** t, [mask]);
    }
    expect(p[0]).toBeCloseTo(3, 3);
    expect(p[1]).toBeCloseTo(-1, 3);
    expect(p[2]).toBe(0);
    expect(p[3]).toBeCloseTo(0.5, 3);
  });

  it('refuses a non-finite gradient instead of writing NaN weights', () => {
    const adam = new Adam([1]);
    expect(() => adam.step([new Float64Array(1)], [Float64Array.of(NaN)], 0.1)).toThrow(/non-finite gradient/);
  });
});

describe('iterative hard thresholding', () => {
  it('keeps exactly n − ⌈s·n⌉ entries', () => {
    expect(keepCount(160, 0.9)).toBe(16);
    expect(keepCount(1024, 0.9)).toBe(102); // 922 zeros: sparsity 0.9004 ≥ 0.9
    expect(keepCount(10, 0)).toBe(10);
    expect(keepCount(5, 0.99)).toBe(1); // never an all-zero matrix
    expect(() => keepCount(10, 1)).toThrow(RangeError);
  });

  it('keeps the k largest magnitudes, ties to the lower index, and reaches the target sparsity', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -20, max: 20 }), { minLength: 1, maxLength: 300 }),
        fc.double({ min: 0, max: 0.99, noNaN: true }),
        (ints, s) => {
          const v = Float64Array.from(ints, (x) => x / 4); // many ties on purpose
          const original = Float64Array.from(v);
          const k = keepCount(v.length, s);
          const mask = hardThreshold(v, s);
          let kept = 0;
          for (let i = 0; i < v.length; i++) kept += mask[i]!;
          expect(kept).toBe(k);
          // Every kept magnitude ≥ every dropped one; among equal magnitudes, kept ones come first.
          let minKept = Infinity, maxDropped = -Infinity;
          for (let i = 0; i < v.length; i++) {
            if (mask[i]) minKept = Math.min(minKept, Math.abs(original[i]!));
            else maxDropped = Math.max(maxDropped, Math.abs(original[i]!));
          }
          expect(minKept).toBeGreaterThanOrEqual(maxDropped);
          for (let i = 0; i < v.length; i++) {
            for (let j = i + 1; j < v.length; j++) {
              if (Math.abs(original[i]!) === Math.abs(original[j]!) && !mask[i] && mask[j]) throw new Error(`tie broken toward higher index ${j} over ${i}`);
            }
            expect(v[i]).toBe(mask[i] ? original[i] : 0);
          }
          expect(sparsityOf(v)).toBeGreaterThanOrEqual(1 - k / v.length - 1e-12);
          if (v.length * (1 - s) >= 1) expect(sparsityOf(v)).toBeGreaterThanOrEqual(s - 1e-9);
        },
      ),
    );
  });

  it('applyMask zeroes exactly the masked-out entries', () => {
    const v = Float64Array.of(1, 2, 3, 4);
    applyMask(v, Uint8Array.of(0, 1, 0, 1));
    expect(Array.from(v)).toEqual([0, 2, 0, 4]);
    expect(Array.from(topKMask(Float64Array.of(-5, 1, 5, -1), 2))).toEqual([1, 0, 1, 0]);
  });
});

describe('INT8 symmetric quantisation (the model file path)', () => {
  it('dequantises within half a step of every weight, keeps zeros, and uses the full range', () => {
    fc.assert(
      // Weight-sized values (subnormal magnitudes would make the float32 scale underflow to 0).
      fc.property(fc.array(fc.double({ min: -50, max: 50, noNaN: true }).map((x) => (Math.abs(x) < 1e-6 ? 0 : x)), { minLength: 1, maxLength: 200 }), (values) => {
        const { q, scale } = quantizeI8(values);
        let maxAbs = 0;
        for (const x of values) maxAbs = Math.max(maxAbs, Math.abs(x));
        if (maxAbs === 0) return;
        let maxQ = 0;
        for (let i = 0; i < values.length; i++) {
          const err = Math.abs(q[i]! * scale - values[i]!);
          expect(err).toBeLessThanOrEqual(scale / 2 + maxAbs * 1e-6);
          if (values[i] === 0) expect(q[i]).toBe(0);
          maxQ = Math.max(maxQ, Math.abs(q[i]!));
        }
        expect(maxQ).toBe(127);
      }),
    );
  });
});
