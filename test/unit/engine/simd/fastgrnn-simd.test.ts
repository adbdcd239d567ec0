import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { defaultModelPath, encodeModel, forward, loadModelFile, parseModel, type ModelParams } from '../../../../src/engine/model.js';
import { MAX_UNROLLED_WEIGHTS, cellSimdAvailable, scoreRowsSimd, setCellSimdEnabled } from '../../../../src/engine/simd/fastgrnn-simd.js';
import { StagedArrays } from '../../../../src/engine/simd/staging.js';
import { validateRequest } from '../../../../src/engine/validate.js';
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, extractFeatures } from '../../../../src/engine/features.js';

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

interface Shape { D: number; H: number; rw?: number; lowRank: boolean; norm: boolean; i8: boolean; sparse: boolean }

function params(seed: number, s: Shape): ModelParams {
  const r = rng(seed);
  const w = (len: number, scale: number): number[] => Array.from({ length: len }, () => (s.sparse && r() < 0.5 ? 0 : (r() * 2 - 1) * scale));
  const p: ModelParams = {
    inputDim: s.D, hiddenDim: s.H, features: Array.from({ length: s.D }, (_, i) => `f${i}`), version: `t${seed}`,
    U: w(s.H * s.H, 0.5), bz: w(s.H, 1), bh: w(s.H, 1), zeta: r() * 4 - 2, nu: r() * 4 - 2, fcW: w(s.H, 2), fcB: r() * 2 - 1,
  };
  if (s.lowRank) {
    const rw = s.rw ?? 1;
    Object.assign(p, { W1: w(s.H * rw, 1), W2: w(rw * s.D, 1), rankW: rw });
  } else p.W = w(s.H * s.D, 1.5);
  if (s.norm) {
    p.normMean = w(s.D, 1);
    p.normStd = Array.from({ length: s.D }, () => 0.5 + r());
  }
  if (s.i8) p.quantize = s.lowRank ? ['W1', 'W2', 'fc_w'] : ['W', 'fc_w'];
  return p;
}

const shapeArb: fc.Arbitrary<Shape> = fc.record({
  D: fc.integer({ min: 1, max: 9 }),
  H: fc.integer({ min: 1, max: 40 }),
  rw: fc.integer({ min: 1, max: 3 }),
  lowRank: fc.boolean(),
  norm: fc.boolean(),
  i8: fc.boolean(),
  sparse: fc.boolean(),
});

describe('WebAssembly SIMD FastGRNN cell (T = 1)', () => {
  it('matches the float64 cell within 1e-6 for full, low-rank, normalised, I8 and sparse models, any n', () => {
    fc.assert(
      fc.property(shapeArb, fc.integer({ min: 1, max: 37 }), fc.integer(), (shape, n, seed) => {
        const model = parseModel(encodeModel(params(seed, shape)));
        const r = rng(seed ^ 0x5bd1e995);
        const x = Float32Array.from({ length: n * shape.D }, () => (r() * 2 - 1) * 3);
        const out = new Float32Array(n);
        expect(scoreRowsSimd(model.cell, x, n, out)).toBe(true);
        for (let i = 0; i < n; i++) {
          const want = forward(model, x.subarray(i * shape.D, (i + 1) * shape.D), 1);
          expect(Math.abs(out[i]! - want)).toBeLessThan(1e-6);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('scores the shipped default model within 1e-6 of the float64 cell over the whole feature range', () => {
    const model = loadModelFile(defaultModelPath());
    const r = rng(77);
    const n = 4096;
    // similarity in [−1, 1], the other features in [0, 1], and the corners of that box
    const x = Float32Array.from({ length: n * FEATURE_COUNT }, (_, k) => {
      const corner = (k / FEATURE_COUNT) < 32;
      const lo = k % FEATURE_COUNT === 0 ? -1 : 0;
      return corner ? (((k / FEATURE_COUNT) >> (k % FEATURE_COUNT)) & 1 ? 1 : lo) : lo + r() * (1 - lo);
    });
    const out = new Float32Array(n);
    expect(scoreRowsSimd(model.cell, x, n, out)).toBe(true);
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(out[i]! - forward(model, x.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT), 1)));
    expect(worst).toBeLessThan(1e-6);
  });

  it('saturates cleanly for huge logits (no NaN, 0 and 1 at the ends)', () => {
    const model = parseModel(encodeModel({ ...params(1, { D: 2, H: 3, lowRank: false, norm: false, i8: false, sparse: false }), fcW: [50, 50, 50], fcB: 0 }));
    const x = Float32Array.from([1e4, 1e4, -1e4, -1e4, 0, 0]);
    const out = new Float32Array(3);
    scoreRowsSimd(model.cell, x, 3, out);
    for (let i = 0; i < 3; i++) {
      expect(Number.isNaN(out[i]!)).toBe(false);
      expect(Math.abs(out[i]! - forward(model, x.subarray(2 * i, 2 * i + 2), 1))).toBeLessThan(2e-6);
    }
  });

  it('declines models too large to unroll, and can be switched off', () => {
    const D = 5;
    const H = Math.ceil((MAX_UNROLLED_WEIGHTS + 1) / D);
    const big = parseModel(encodeModel(params(2, { D, H, lowRank: true, rw: 1, norm: false, i8: false, sparse: false })));
    expect(cellSimdAvailable(big.cell)).toBe(false);
    expect(scoreRowsSimd(big.cell, new Float32Array(D), 1, new Float32Array(1))).toBe(false);
    const small = parseModel(encodeModel(params(3, { D, H: 8, lowRank: false, norm: false, i8: false, sparse: false })));
    setCellSimdEnabled(false);
    try {
      expect(scoreRowsSimd(small.cell, new Float32Array(D), 1, new Float32Array(1))).toBe(false);
    } finally {
      setCellSimdEnabled(true);
    }
    expect(scoreRowsSimd(small.cell, new Float32Array(D), 1, new Float32Array(1))).toBe(true);
  });
});

describe('StagedArrays', () => {
  it('validates into reused buffers with the same result as fresh arrays, request after request', () => {
    const staged = new StagedArrays();
    const r = rng(9);
    for (const [n, dim] of [[3, 7], [40, 384], [2, 5], [41, 384]] as const) {
      const req = {
        request_id: `r${n}`,
        query_embedding: Float32Array.from({ length: dim }, () => r()),
        candidates: Array.from({ length: n }, (_, i) => ({
          id: `c${i}`, embedding: Float32Array.from({ length: dim }, () => r()), created_at: 1000 + i, access_count: i,
          ...(i % 2 ? { success_rate: 0.5 } : {}),
        })),
      };
      const a = validateRequest(req);
      const b = validateRequest(req, staged);
      expect(Array.from(b.embeddings)).toEqual(Array.from(a.embeddings));
      expect(Array.from(b.query)).toEqual(Array.from(a.query));
      expect(Array.from(b.createdAt)).toEqual(Array.from(a.createdAt));
      expect(Array.from(b.accessCount)).toEqual(Array.from(a.accessCount));
      expect(Array.from(b.successRate)).toEqual(Array.from(a.successRate)); // absent → 0 even in a reused buffer
    }
  });

  it('still reports a NaN in a staged Float32Array embedding, naming the candidate, once the similarity pass ran', () => {
    const e = new Float32Array(4).fill(1);
    e[3] = Number.NaN;
    const req = { request_id: 'x', query_embedding: [1, 2, 3, 4], candidates: [{ id: 'ok', embedding: [1, 1, 1, 1] }, { id: 'bad', embedding: e }] };
    // The scan is deferred to the similarity kernel (validate.ts, completeFiniteCheck).
    const v = validateRequest(req, new StagedArrays());
    expect(v.finitePending).toBe(true);
    expect(() => extractFeatures(v, DEFAULT_FEATURE_CONFIG, new Float32Array(2 * FEATURE_COUNT), 0))
      .toThrow('candidates[1] (id "bad"): embedding[3] is NaN, not a finite number');
  });
});
