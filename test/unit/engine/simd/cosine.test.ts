import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cosineBatchSimd, firstNonFinite, simdAvailable, stagingEmbeddings, setSimdEnabled } from '../../../../src/engine/simd/cosine.js';
import { buildCosineModule } from '../../../../src/engine/simd/cosine-module.js';
import { sleb, uleb } from '../../../../src/engine/simd/wasm-encoder.js';
import { cosineBatch, cosineBatchScalar } from '../../../../src/engine/features.js';

/** The straightforward definition, in float64: dot / (|q| |e|), 0 when a norm is 0. */
function reference(q: Float32Array, e: Float32Array, n: number, dim: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let dot = 0, qq = 0, ee = 0;
    for (let j = 0; j < dim; j++) {
      const a = q[j]!, b = e[i * dim + j]!;
      dot += a * b; qq += a * a; ee += b * b;
    }
    out.push(qq === 0 || ee === 0 ? 0 : dot / Math.sqrt(qq) / Math.sqrt(ee));
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const DIMS = [1, 2, 3, 4, 5, 7, 15, 16, 17, 31, 33, 63, 64, 65, 384, 4096];

/** A request-shaped case: dim, n, query and packed embeddings, values scaled by `scale`. */
const caseArb = fc
  .record({
    dim: fc.oneof(fc.constantFrom(...DIMS), fc.integer({ min: 1, max: 300 })),
    n: fc.integer({ min: 1, max: 6 }),
    scale: fc.constantFrom(1, 1e-3, 1e3, 1e-21, 1e-30, 1e16, 1e18),
    seed: fc.integer(),
    zeroRows: fc.array(fc.nat(5), { maxLength: 2 }),
  })
  .map(({ dim, n, scale, seed, zeroRows }) => {
    // A cheap deterministic generator per case: fast-check shrinks the seed, not 4096 floats.
    let s = seed >>> 0 || 1;
    const rnd = (): number => {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      return s / 0x100000000 - 0.5;
    };
    const query = Float32Array.from({ length: dim }, () => rnd() * scale);
    const embeddings = Float32Array.from({ length: n * dim }, () => rnd() * scale);
    for (const r of zeroRows) if (r < n) embeddings.fill(0, r * dim, (r + 1) * dim);
    return { dim, n, query, embeddings };
  });

describe('WebAssembly SIMD cosine kernel', () => {
  it('compiles on this Node (SIMD is part of the wasm standard since Node 16.4)', () => {
    expect(simdAvailable()).toBe(true);
    expect(buildCosineModule()[0]).toBe(0); // "\0asm"
  });

  it('matches the float64 reference within 1e-5 for any dim (incl. 1, 3, 5, 384, 4096), scale and zero rows', () => {
    fc.assert(
      fc.property(caseArb, ({ dim, n, query, embeddings }) => {
        const out = new Float32Array(n);
        cosineBatchSimd(query, embeddings, n, dim, out);
        expect(maxAbsDiff(out, reference(query, embeddings, n, dim))).toBeLessThanOrEqual(1e-5);
      }),
      { numRuns: 300 },
    );
  });

  it('gives 0, not NaN, for a zero query or zero candidate', () => {
    const dim = 384;
    const q = new Float32Array(dim).fill(0.5);
    const e = new Float32Array(3 * dim).fill(0.25);
    e.fill(0, dim, 2 * dim);
    const out = new Float32Array(3);
    cosineBatchSimd(q, e, 3, dim, out);
    expect([...out]).toEqual([1, 0, 1]);
    cosineBatchSimd(new Float32Array(dim), e, 3, dim, out);
    expect([...out]).toEqual([0, 0, 0]);
  });

  it('handles the extremes of float32 (max, min subnormal) exactly through its float64 fallback', () => {
    const dim = 5;
    const big = 3.4028234663852886e38;
    const tiny = 1.401298464324817e-45;
    const q = Float32Array.from([big, -big, big, 0, big]);
    const e = Float32Array.from([big, big, big, big, 0, tiny, tiny, 0, tiny, tiny]);
    const out = new Float32Array(2);
    cosineBatchSimd(q, e, 2, dim, out);
    expect(maxAbsDiff(out, reference(q, e, 2, dim))).toBeLessThanOrEqual(1e-6);
    expect(Number.isNaN(out[0]!) || Number.isNaN(out[1]!)).toBe(false);
  });

  it('agrees with the scalar loop, and cosineBatch takes the SIMD path only when enabled', () => {
    fc.assert(
      fc.property(caseArb, ({ dim, n, query, embeddings }) => {
        const a = new Float32Array(n);
        const b = new Float32Array(n);
        cosineBatch(query, embeddings, n, dim, a);
        cosineBatchScalar(query, embeddings, n, dim, b);
        expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(2e-5);
      }),
      { numRuns: 100 },
    );
    setSimdEnabled(false);
    try {
      expect(simdAvailable()).toBe(false);
      const q = Float32Array.from([1, 2, 3]);
      const out = new Float32Array(1);
      cosineBatch(q, Float32Array.from([2, 4, 6]), 1, 3, out);
      expect(out[0]).toBeCloseTo(1, 6);
    } finally {
      setSimdEnabled(true);
    }
  });

  it('reads staged embeddings in place, and survives memory growth between calls', () => {
    const dim = 384;
    const n = 50;
    const q = Float32Array.from({ length: dim }, (_, j) => Math.sin(j));
    const src = Float32Array.from({ length: n * dim }, (_, j) => Math.cos(j * 0.37));
    const staged = stagingEmbeddings(n, dim);
    staged.set(src);
    const a = new Float32Array(n);
    cosineBatchSimd(q, staged, n, dim, a);
    expect(maxAbsDiff(a, reference(q, src, n, dim))).toBeLessThanOrEqual(1e-5);
    // grow far past the current size (4096 × 1000, the docs/contracts.md §1 maximum), then a small call again
    const bigN = 1000, bigDim = 4096;
    const bigE = new Float32Array(bigN * bigDim).fill(1);
    const bigOut = new Float32Array(bigN);
    cosineBatchSimd(new Float32Array(bigDim).fill(2), bigE, bigN, bigDim, bigOut);
    expect(bigOut.every((v) => Math.abs(v - 1) < 1e-6)).toBe(true);
    const b = new Float32Array(n);
    cosineBatchSimd(q, src, n, dim, b);
    expect(maxAbsDiff(b, a)).toBe(0);
  });

  it('ignores extra length in query/embeddings views beyond dim and n*dim', () => {
    const q = Float32Array.from([1, 0, 0, 99]);
    const e = Float32Array.from([0, 1, 0, 1, 0, 0, 77, 77]);
    const out = new Float32Array(2);
    cosineBatchSimd(q, e, 2, 3, out);
    expect([...out]).toEqual([0, 1]);
  });
});

describe('firstNonFinite (SIMD scan)', () => {
  it('finds the first NaN / ±Infinity at any position, in wasm memory or not, and -1 when there is none', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.array(fc.record({ at: fc.nat(), v: fc.constantFrom(Number.NaN, Infinity, -Infinity) }), { maxLength: 3 }),
        fc.boolean(),
        (len, bad, staged) => {
          const plain = Float32Array.from({ length: len }, (_, j) => Math.sin(j) * 1e30);
          let want = -1;
          for (const b of bad) {
            if (len === 0) break;
            const at = b.at % len;
            plain[at] = b.v;
            want = want < 0 ? at : Math.min(want, at);
          }
          let view: Float32Array = plain;
          if (staged && len > 0) {
            view = stagingEmbeddings(1, len);
            view.set(plain);
          }
          expect(firstNonFinite(view)).toBe(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('scans arrays larger than its scratch chunk', () => {
    const big = new Float32Array(600_000).fill(1);
    expect(firstNonFinite(big)).toBe(-1);
    big[555_555] = -Infinity;
    expect(firstNonFinite(big)).toBe(555_555);
  });
});

describe('wasm encoder LEB128', () => {
  it('encodes unsigned and signed integers as the spec examples', () => {
    expect(uleb(0)).toEqual([0]);
    expect(uleb(127)).toEqual([0x7f]);
    expect(uleb(128)).toEqual([0x80, 0x01]);
    expect(uleb(624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(sleb(-1)).toEqual([0x7f]);
    expect(sleb(63)).toEqual([0x3f]);
    expect(sleb(64)).toEqual([0xc0, 0x00]);
    expect(sleb(-64)).toEqual([0x40]);
    expect(sleb(-123456)).toEqual([0xc0, 0xbb, 0x78]);
  });

  it('round-trips through a decoder for any 32-bit value', () => {
    const decodeU = (b: number[]): number => b.reduce((acc, byte, i) => acc + (byte & 0x7f) * 2 ** (7 * i), 0);
    const decodeS = (b: number[]): number => {
      let r = 0n;
      b.forEach((byte, i) => { r |= BigInt(byte & 0x7f) << BigInt(7 * i); });
      const bits = BigInt(7 * b.length);
      if ((b[b.length - 1]! & 0x40) !== 0) r -= 1n << bits;
      return Number(r);
    };
    fc.assert(fc.property(fc.nat({ max: 0xffffffff }), (v) => decodeU(uleb(v)) === v));
    fc.assert(fc.property(fc.integer({ min: -0x80000000, max: 0x7fffffff }), (v) => decodeS(sleb(v)) === v));
  });
});
