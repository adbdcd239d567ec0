import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildRankModule } from '../../../../src/engine/simd/rank-module.js';
import { instantiate, type WasmMemory } from '../../../../src/engine/simd/runtime.js';
import { Rng } from '../../../../src/train/rng.js';


/** Keys ascending, ties by index ascending. */
function reference(keys: readonly number[]): number[] {
  return keys.map((_, i) => i).sort((a, b) => keys[a]! - keys[b]! || a - b);
}

describe('rank_count (WebAssembly SIMD)', () => {
  const inst = instantiate(buildRankModule());
  if (!inst) throw new Error('the rank module did not compile: no WebAssembly SIMD here');
  const rankCount = inst.exports.rank_count as (pKeys: number, n: number, pOrder: number, pCounts: number) => void;
  const mem = new Int32Array((inst.exports.memory as WasmMemory).buffer);
  // keys at 0 (room for 1024 with padding), counters at 4096 B, order at 8192 B
  const rank = (keys: readonly number[]): number[] => {
    const n = keys.length;
    mem.set(keys, 0);
    for (let i = n; i < ((n + 15) & ~15); i++) mem[i] = 0x7fffffff;
    mem.fill(-7, 1024, 1024 + n); // stale counters: the kernel must clear them
    rankCount(0, n, 8192, 4096);
    return Array.from(mem.subarray(2048, 2048 + n));
  };

  it('orders keys ascending, ties by index, for every size and mix of ties', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 1, max: 0x3f800000 }),
        fc.integer(),
        (n, spread, seed) => {
          const rng = new Rng(seed);
          // a small spread gives many ties, a large one almost none
          const keys = Array.from({ length: n }, () => Math.floor(rng.next() * Math.min(spread, 0x3f800000 + 1)));
          expect(rank(keys)).toEqual(reference(keys));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('ranks all-equal keys in index order and the extremes of the key range', () => {
    expect(rank(new Array<number>(100).fill(12345))).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const keys = [0x3f800000, 0, 0x3f800000, 1, 0, 0x3f7fffff];
    expect(rank(keys)).toEqual([1, 4, 3, 5, 0, 2]);
  });
});
