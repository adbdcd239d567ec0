// The deferred finite check (validateRequest's `deferFiniteCheck` + completeFiniteCheck): the
// Router and the pool skip the separate scan of Float32Array embeddings and let the SIMD
// similarity pass prove them finite. These properties pin that the shortcut never lets a
// non-finite value through and reports exactly what the eager check reports.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, extractFeatures } from '../../../src/engine/features.js';
import { Router } from '../../../src/engine/router.js';
import { simdAvailable } from '../../../src/engine/simd/cosine.js';
import { StagedArrays } from '../../../src/engine/simd/staging.js';
import { validateRequest } from '../../../src/engine/validate.js';
import { InvalidInputError } from '../../../src/errors.js';

/** Finite float32 values across the whole range, so the kernel's float64 fallback is exercised. */
const finite = fc.oneof(
  fc.float({ min: -1, max: 1, noNaN: true }),
  fc.float({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 1e-30, -1e-30, 1e30, -3e38, 3e38, 1.4e-45),
);
const bad = fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);

const shape = fc.record({ dim: fc.integer({ min: 1, max: 40 }), n: fc.integer({ min: 1, max: 12 }) });

function request(dim: number, query: number[], embeddings: number[][]): Record<string, unknown> {
  return {
    request_id: 'r',
    query_embedding: Float32Array.from(query),
    candidates: embeddings.map((e, i) => ({ id: `c${i}`, embedding: Float32Array.from(e.slice(0, dim)) })),
  };
}

/** The error message of a call, or null when it does not throw. */
function outcome(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidInputError);
    return (e as Error).message;
  }
}

/** Validation with the deferred check, finished by feature extraction as the Router does it. */
function deferred(req: unknown): string | null {
  const staged = new StagedArrays();
  return outcome(() => {
    const v = validateRequest(req, staged);
    extractFeatures(v, DEFAULT_FEATURE_CONFIG, new Float32Array(v.n * FEATURE_COUNT), 0);
  });
}

const requests = shape.chain(({ dim, n }) =>
  fc.record({
    dim: fc.constant(dim),
    query: fc.oneof(fc.array(finite, { minLength: dim, maxLength: dim }), fc.constant(new Array<number>(dim).fill(0))),
    embeddings: fc.array(fc.array(finite, { minLength: dim, maxLength: dim }), { minLength: n, maxLength: n }),
    at: fc.record({ i: fc.nat(n - 1), j: fc.nat(dim - 1) }),
    value: bad,
  }),
);

describe('deferred finite check', () => {
  it('runs on this engine (the property below would otherwise test the eager path only)', () => {
    expect(simdAvailable()).toBe(true);
    const v = validateRequest(request(3, [1, 0, 0], [[1, 0, 0]]), new StagedArrays());
    expect(v.finitePending).toBe(true);
  });

  it('reports a non-finite embedding value exactly as the eager check does, wherever it is', () => {
    fc.assert(
      fc.property(requests, ({ dim, query, embeddings, at, value }) => {
        embeddings[at.i]![at.j] = value;
        const req = request(dim, query, embeddings);
        const eager = outcome(() => validateRequest(req));
        expect(eager).not.toBeNull(); // the eager check sees it…
        expect(deferred(req)).toBe(eager); // …and so does the deferred one, with the same words
      }),
      { numRuns: 400 },
    );
  });

  it('accepts every finite request, including all-zero, tiny and huge vectors', () => {
    fc.assert(
      fc.property(requests, ({ dim, query, embeddings }) => {
        expect(deferred(request(dim, query, embeddings))).toBeNull();
      }),
      { numRuns: 300 },
    );
  });

  it('the Router refuses NaN in the last value of the last candidate of a 100 × 384 request', () => {
    const dim = 384;
    const vec = (k: number): Float32Array => Float32Array.from({ length: dim }, (_, j) => Math.sin(k * 31 + j));
    const req = { request_id: 'big', query_embedding: vec(0), candidates: Array.from({ length: 100 }, (_, i) => ({ id: `m${i}`, embedding: vec(i + 1) })) };
    (req.candidates[99]!.embedding)[dim - 1] = Number.NaN;
    expect(() => new Router().route(req)).toThrow(/^candidates\[99\] \(id "m99"\): embedding\[383\] is NaN, not a finite number$/);
  });
});
