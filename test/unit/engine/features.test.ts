import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ConfigError } from '../../../src/errors.js';
import {
  DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, FEATURE_NAMES, cosineBatch, decisionFeatures, extractFeatures, metadataOverlap,
  resolveFeatureConfig, weightedScore, weightedScores,
} from '../../../src/engine/features.js';
import { validateRequest } from '../../../src/engine/validate.js';
import { generateTraffic } from '../../../src/train/synthetic.js';

function naiveCos(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i]! * b[i]!; na += a[i]! * a[i]!; nb += b[i]! * b[i]!; }
  return na === 0 || nb === 0 ? 0 : d / Math.sqrt(na * nb);
}

describe('cosineBatch', () => {
  it('matches a naive float64 cosine for any dim (incl. non-multiples of 4)', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 37 }), fc.integer({ min: 1, max: 6 }), fc.integer(),
      (dim, n, seed) => {
        let s = seed >>> 0;
        const rnd = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
        const q = Float32Array.from({ length: dim }, rnd);
        const e = Float32Array.from({ length: n * dim }, rnd);
        const out = new Float32Array(n);
        cosineBatch(q, e, n, dim, out);
        for (let i = 0; i < n; i++) expect(out[i]).toBeCloseTo(naiveCos(q, e.subarray(i * dim, (i + 1) * dim)), 5);
      },
    ), { numRuns: 200 });
  });

  it('zero vectors give 0 (not NaN); parallel and opposite give ±1 exactly within range', () => {
    const out = new Float32Array(4);
    cosineBatch(new Float32Array([1, 2, 3]), new Float32Array([0, 0, 0, 2, 4, 6, -1, -2, -3, 3, 0, 0]), 4, 3, out);
    expect(out[0]).toBe(0);
    expect(out[1]).toBeCloseTo(1, 6);
    expect(out[1]).toBeLessThanOrEqual(1);
    expect(out[2]).toBeCloseTo(-1, 6);
    expect(out[2]).toBeGreaterThanOrEqual(-1);
    cosineBatch(new Float32Array(3), new Float32Array([1, 2, 3]), 1, 3, out);
    expect(out[0]).toBe(0);
  });
});

describe('feature signals', () => {
  const now = 1_700_000_000;
  const base = {
    request_id: 'r', query_embedding: [1, 0],
    candidates: [
      { id: 'fresh', embedding: [1, 0], created_at: now, access_count: 0, success_rate: 1 },
      { id: 'old', embedding: [0, 1], created_at: now - 1000, access_count: 10_000, success_rate: 0.25 },
      { id: 'future', embedding: [-1, 0], created_at: now + 5000, access_count: 1e9 },
      { id: 'absent', embedding: [1, 1] },
    ],
  };

  it('extracts the five signals in FEATURE_NAMES order', () => {
    expect(FEATURE_NAMES).toEqual(['similarity', 'recency', 'frequency', 'success_rate', 'metadata_overlap']);
    const v = validateRequest(base);
    const out = new Float32Array(v.n * 5);
    extractFeatures(v, DEFAULT_FEATURE_CONFIG, out, now);
    const row = (i: number) => Array.from(out.subarray(i * 5, i * 5 + 5));
    expect(row(0)[0]).toBeCloseTo(1, 6);
    expect(row(0)[1]).toBe(1); // age 0
    expect(row(0)[2]).toBe(0); // log1p(0) = 0
    expect(row(0)[3]).toBe(1);
    expect(row(1)[0]).toBeCloseTo(0, 6);
    expect(row(1)[1]).toBeCloseTo(Math.exp(-0.001 * 1000), 6);
    expect(row(1)[2]).toBeCloseTo(1, 6); // saturation 10 000
    expect(row(1)[3]).toBe(0.25);
    expect(row(2)[0]).toBeCloseTo(-1, 6);
    expect(row(2)[1]).toBe(1); // future-dated → age clamped to 0
    expect(row(2)[2]).toBe(1); // clamped to 1
    expect(row(3)[0]).toBeCloseTo(Math.SQRT1_2, 6);
    expect(row(3)[1]).toBe(0); // created_at absent = 0 (1970): decayed to 0
    expect(row(3)[3]).toBe(0);
    for (let i = 0; i < 4; i++) expect(row(i)[4]).toBe(0); // no request metadata
  });

  it('honours decay, nowSeconds and frequency saturation from the config', () => {
    const v = validateRequest(base);
    const out = new Float32Array(v.n * 5);
    extractFeatures(v, resolveFeatureConfig({ recencyDecay: 0.01, nowSeconds: now + 100, frequencySaturation: 100 }), out, 0);
    expect(out[1]).toBeCloseTo(Math.exp(-1), 6);
    expect(out[5 + 1]).toBeCloseTo(Math.exp(-0.01 * 1100), 6);
    expect(out[5 + 2]).toBe(1);
  });

  it('frequency is monotone, in [0, 1], per candidate', () => {
    let prev = -1;
    for (const count of [0, 1, 2, 10, 100, 1000, 9999, 10_000, 1e7]) {
      const v = validateRequest({ request_id: 'r', query_embedding: [1], candidates: [{ id: 'a', embedding: [1], access_count: count }] });
      const out = new Float32Array(5);
      extractFeatures(v, DEFAULT_FEATURE_CONFIG, out, 0);
      expect(out[2]).toBeGreaterThanOrEqual(prev);
      expect(out[2]).toBeGreaterThanOrEqual(0);
      expect(out[2]).toBeLessThanOrEqual(1);
      expect(out[2]).toBeCloseTo(Math.min(1, Math.log1p(count) / Math.log1p(10_000)), 6);
      prev = out[2]!;
    }
  });

  it('metadata overlap: fraction of request pairs matched exactly; 0 without request metadata', () => {
    expect(metadataOverlap({}, { a: '1' })).toBe(0);
    expect(metadataOverlap({ a: '1', b: '2' }, { a: '1', b: 'x', c: '3' })).toBe(0.5);
    expect(metadataOverlap({ a: '1', b: '2' }, { a: '1', b: '2', z: 'extra' })).toBe(1);
    expect(metadataOverlap({ a: '1' }, {})).toBe(0);
    expect(metadataOverlap({ toString: 'x' }, {})).toBe(0); // no prototype leakage
    const v = validateRequest({
      request_id: 'r', query_embedding: [1], metadata: { lang: 'en', tier: 'free' },
      candidates: [{ id: 'a', embedding: [1], metadata: { lang: 'en' } }, { id: 'b', embedding: [1], metadata: { lang: 'en', tier: 'free' } }],
    });
    const out = new Float32Array(10);
    extractFeatures(v, DEFAULT_FEATURE_CONFIG, out, 0);
    expect(out[4]).toBe(0.5);
    expect(out[9]).toBe(1);
  });

  it('rows do not clobber similarities of later candidates (in-place layout)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), (n) => {
      const cands = Array.from({ length: n }, (_, i) => ({ id: `c${i}`, embedding: [Math.cos(i), Math.sin(i)] }));
      const v = validateRequest({ request_id: 'r', query_embedding: [1, 0], candidates: cands });
      const out = new Float32Array(n * 5).fill(NaN);
      extractFeatures(v, DEFAULT_FEATURE_CONFIG, out, 0);
      for (let i = 0; i < n; i++) expect(out[i * 5]).toBeCloseTo(Math.cos(i), 5);
    }));
  });

  it('weighted sum baseline uses the configured weights', () => {
    const row = [0.5, 1, 0, 1, 0.5];
    expect(weightedScore(row, DEFAULT_FEATURE_CONFIG.weights)).toBeCloseTo(0.4 * 0.5 + 0.2 + 0.15 + 0.1 * 0.5, 12);
    const out = new Float64Array(2);
    weightedScores(Float32Array.from([...row, 1, 1, 1, 1, 1]), 2, [1, 0, 0, 0, 0], out);
    expect(Array.from(out)).toEqual([0.5, 1]);
  });

  it('resolveFeatureConfig rejects nonsense', () => {
    expect(() => resolveFeatureConfig({ weights: [1, 2] as never })).toThrow(ConfigError);
    expect(() => resolveFeatureConfig({ recencyDecay: -1 })).toThrow(ConfigError);
    expect(() => resolveFeatureConfig({ frequencySaturation: 0 })).toThrow(ConfigError);
    expect(() => resolveFeatureConfig({ nowSeconds: NaN })).toThrow(ConfigError);
    expect(resolveFeatureConfig().weights).toEqual([0.4, 0.2, 0.15, 0.15, 0.1]);
    expect(resolveFeatureConfig().recencyDecay).toBe(0.001);
  });
});

describe('decisionFeatures', () => {
  it("gives each candidate exactly the engine's feature row at the decision time", () => {
    const [r] = [...generateTraffic({ requests: 1, seed: 3, dim: 16, minCandidates: 6, maxCandidates: 6 })];
    const v = validateRequest(r);
    const at = new Date(r!.now * 1000 + 1500);
    const lookup = decisionFeatures(v, at);
    const expected = new Float32Array(v.n * FEATURE_COUNT);
    extractFeatures(v, DEFAULT_FEATURE_CONFIG, expected, at.getTime() / 1000);
    for (let i = 0; i < v.n; i++) {
      expect(Array.from(lookup(v.ids[i]!)!)).toEqual(Array.from(expected.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT)));
    }
    expect(lookup('no-such-candidate')).toBeUndefined();
  });
});
