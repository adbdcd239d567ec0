import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Ranker } from '../../../src/engine/rank.js';

/** The definition: confidence descending, ties by input order. */
function reference(scores: Float32Array): number[] {
  return Array.from(scores, (_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
}

describe('Ranker', () => {
  const ranker = new Ranker();
  const check = (scores: Float32Array): void => {
    const bits = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
    expect(Array.from(ranker.rank(bits, scores.length).subarray(0, scores.length))).toEqual(reference(scores));
  };

  it('ranks like the comparator sort: spread, tied, bunched and saturated scores, every size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.constantFrom('spread', 'ties', 'crowded', 'extremes'),
        fc.integer(),
        (n, kind, seed) => {
          let s = seed >>> 0 || 1;
          const r = (): number => {
            s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
            return s / 0x100000000;
          };
          const scores = Float32Array.from({ length: n }, () => {
            if (kind === 'spread') return r();
            if (kind === 'ties') return Math.floor(r() * 5) / 4;
            if (kind === 'crowded') return r() < 0.5 ? r() * 1e-4 : 0.5 + r() * 1e-3; // distinct, bunched
            return r() < 0.5 ? (r() < 0.5 ? 0 : 1) : r();
          });
          check(scores);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('ranks scores above 1 (outside the counting kernel\'s keys) like the comparator sort', () => {
    for (const n of [5, 100, 600]) {
      const scores = Float32Array.from({ length: n }, (_, i) => (i % 7 === 3 ? 1 + i / n : Math.abs(Math.cos(i))));
      check(scores);
    }
  });

  it('reuses its buffers across sizes without mixing requests', () => {
    for (const n of [100, 3, 1000, 1, 100]) check(Float32Array.from({ length: n }, (_, i) => Math.abs(Math.sin(i * 1.7))));
  });
});
