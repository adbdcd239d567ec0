// Packed candidate embeddings (docs/contracts.md §7): `candidate_embeddings` and the Router's
// staging view route exactly as per-candidate embeddings, and are validated as strictly.
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { Router } from '../../../src/engine/router.js';
import { RouterPool } from '../../../src/engine/pool/pool.js';
import { validateRequest } from '../../../src/engine/validate.js';
import { setSimdEnabled } from '../../../src/engine/simd/cosine.js';
import type { PackedRoutingRequest, RoutingRequest } from '../../../src/wire/types.js';
import { Rng } from '../../../src/train/rng.js';

const NOW = 1_700_000_000;

function ordinary(n: number, dim: number, seed = 7): RoutingRequest {
  const rng = new Rng(seed);
  const vec = (): Float32Array => Float32Array.from({ length: dim }, () => rng.next() * 2 - 1);
  return {
    request_id: `r-${n}-${dim}`,
    query_embedding: vec(),
    metadata: { tier: 'free' },
    candidates: Array.from({ length: n }, (_, i) => ({
      id: `cand-${i}`,
      embedding: vec(),
      created_at: NOW - Math.floor(rng.next() * 86_400),
      access_count: Math.floor(rng.next() * 1000),
      success_rate: rng.next(),
      metadata: (i % 3 === 0 ? { tier: 'free' } : {}) as Record<string, string>,
    })),
  };
}

/** The same request with its embeddings packed (into `into` when given). */
function packed(req: RoutingRequest, into?: Float32Array): PackedRoutingRequest {
  const dim = req.query_embedding.length;
  const all = into ?? new Float32Array(req.candidates.length * dim);
  req.candidates.forEach((c, i) => all.set(c.embedding as Float32Array, i * dim));
  return {
    request_id: req.request_id,
    query_embedding: req.query_embedding,
    metadata: req.metadata!,
    candidates: req.candidates.map(({ embedding: _e, ...rest }) => rest),
    candidate_embeddings: all,
  };
}

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidInputError);
    return (e as Error).message;
  }
  throw new Error('expected InvalidInputError');
}

afterEach(() => setSimdEnabled(true));

describe('validateRequest with candidate_embeddings', () => {
  it('packs the same typed arrays as per-candidate embeddings', () => {
    const req = ordinary(5, 7);
    const a = validateRequest(req);
    const b = validateRequest(packed(req));
    expect(Array.from(b.embeddings)).toEqual(Array.from(a.embeddings));
    expect(b.ids).toEqual(a.ids);
    expect(Array.from(b.createdAt)).toEqual(Array.from(a.createdAt));
    expect(b.candidateMetadata).toEqual(a.candidateMetadata);
  });

  it('copies the caller\'s array (the validated request does not alias it)', () => {
    const p = packed(ordinary(2, 3));
    const v = validateRequest(p);
    p.candidate_embeddings[0] = 42;
    expect(v.embeddings[0]).not.toBe(42);
  });

  it('refuses a wrong type or length, embeddings in both places, and detached views', () => {
    const p = packed(ordinary(3, 4));
    expect(message(() => validateRequest({ ...p, candidate_embeddings: Array.from(p.candidate_embeddings) })))
      .toBe('candidate_embeddings: must be a Float32Array of candidates × dimension values, got an array');
    expect(message(() => validateRequest({ ...p, candidate_embeddings: new Float64Array(12) })))
      .toBe('candidate_embeddings: must be a Float32Array of candidates × dimension values, got a Float64Array');
    expect(message(() => validateRequest({ ...p, candidate_embeddings: p.candidate_embeddings.subarray(0, 11) })))
      .toBe("candidate_embeddings: has 11 values, must have 12 (3 candidates × 4, the query's dimension)");
    const both = { ...p, candidates: p.candidates.map((c, i) => (i === 1 ? { ...c, embedding: [1, 2, 3, 4] } : c)) };
    expect(message(() => validateRequest(both))).toBe('candidates[1] (id "cand-1"): embedding must be absent when the request carries candidate_embeddings');
    const gone = new Float32Array(12);
    structuredClone(gone.buffer, { transfer: [gone.buffer] });
    expect(message(() => validateRequest({ ...p, candidate_embeddings: gone }))).toMatch(/^candidate_embeddings: is a detached view/);
  });

  it.each([true, false])('names the candidate and value of a non-finite entry (SIMD %s)', (simd) => {
    setSimdEnabled(simd);
    const p = packed(ordinary(4, 6));
    p.candidate_embeddings[2 * 6 + 5] = Number.NaN;
    const want = 'candidates[2] (id "cand-2"): embedding[5] is NaN, not a finite number';
    expect(message(() => validateRequest(p))).toBe(want);
    expect(message(() => new Router({ features: { nowSeconds: NOW } }).route(p))).toBe(want);
    p.candidate_embeddings[2 * 6 + 5] = 0;
    p.candidate_embeddings[3 * 6] = -Infinity;
    expect(message(() => new Router({ features: { nowSeconds: NOW } }).route(p))).toBe('candidates[3] (id "cand-3"): embedding[0] is -Infinity, not a finite number');
  });
});

describe('Router with packed embeddings', () => {
  it.each([true, false])('routes exactly as per-candidate embeddings, packed or in the staging view (SIMD %s)', (simd) => {
    setSimdEnabled(simd);
    const router = new Router({ features: { nowSeconds: NOW } });
    for (const [n, dim] of [[1, 1], [10, 384], [100, 384], [37, 5]] as const) {
      const req = ordinary(n, dim, n + dim);
      const strip = (r: ReturnType<Router['route']>) => r.decisions.map((d) => ({ ...d, inference_time_us: 0 }));
      const want = strip(router.route(req));
      expect(strip(router.route(packed(req)))).toEqual(want);
      const view = router.stagingEmbeddings(n, dim);
      expect(view.length).toBe(n * dim);
      expect(router.stagingEmbeddings(n, dim)).toBe(view);
      expect(strip(router.route(packed(req, view)))).toEqual(want);
    }
  });

  it('checks the staging view\'s values like any other', () => {
    const router = new Router({ features: { nowSeconds: NOW } });
    const req = ordinary(3, 8);
    const view = router.stagingEmbeddings(3, 8);
    const p = packed(req, view);
    view[8 + 2] = Infinity;
    expect(message(() => router.route(p))).toBe('candidates[1] (id "cand-1"): embedding[2] is Infinity, not a finite number');
  });

  it('stagingEmbeddings refuses sizes outside the request limits', () => {
    const router = new Router();
    expect(message(() => router.stagingEmbeddings(0, 384))).toMatch(/n must be an integer in 1\.\.1000/);
    expect(message(() => router.stagingEmbeddings(1001, 384))).toMatch(/n must be an integer/);
    expect(message(() => router.stagingEmbeddings(10, 4097))).toMatch(/dim must be an integer in 1\.\.4096/);
    expect(message(() => router.stagingEmbeddings(10, 1.5))).toMatch(/dim must be an integer/);
  });
});

describe('RouterPool with packed embeddings', () => {
  it('routes exactly as per-candidate embeddings and rejects bad packed input', async () => {
    const pool = await RouterPool.create({ workers: 1, features: { nowSeconds: NOW } });
    try {
      const req = ordinary(50, 384, 3);
      const strip = (r: Awaited<ReturnType<RouterPool['route']>>) => r.decisions.map((d) => ({ ...d, inference_time_us: 0 }));
      const want = strip(await pool.route(req));
      expect(strip(await pool.route(packed(req)))).toEqual(want);
      const bad = packed(req);
      bad.candidate_embeddings[7] = Number.NaN;
      await expect(pool.route(bad)).rejects.toThrow('candidates[0] (id "cand-0"): embedding[7] is NaN, not a finite number');
      await expect(pool.route({ ...bad, candidate_embeddings: bad.candidate_embeddings.subarray(1) })).rejects.toThrow(InvalidInputError);
      expect(strip(await pool.route(req))).toEqual(want);
    } finally {
      await pool.close();
    }
  });
});
