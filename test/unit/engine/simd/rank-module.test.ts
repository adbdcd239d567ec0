import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { buildRankModule } from '../../../../src/engine/simd/rank-module.js';
import { Rng } from '../../../../src/train/rng.js';

interface Instance { exports: { memory: { buffer: ArrayBuffer }; rank_count: (k: number, n: number, o: number, c: number) => void } }
const wasm = (globalThis as unknown as { WebAssembly: { Instance: new (m: object, i: object) => Instance; Module: new (b: Uint8Array) => object } }).WebAssembly;

/** Keys ascending, ties by index ascending. */
function reference(keys: readonly number[]): number[] {
  return keys.map((_, i) => i).sort((a, b) => keys[a]! - keys[b]! || a - b);
}

describe('rank_count (WebAssembly SIMD)', () => {
  const inst = new wasm.Instance(new wasm.Module(buildRankModule()), {});
  const mem = new Int32Array(inst.exports.memory.buffer);
  // keys at 0 (room for 1024 with padding), counters at 4096 B, order at 8192 B
  const rank = (keys: readonly number[]): number[] => {
    const n = keys.length;
    mem.set(keys, 0);
    for (let i = n; i < ((n + 15) & ~15); i++) mem[i] = 0x7fffffff;
    mem.fill(-7, 1024, 1024 + n); // stale counters: the kernel must clear them
    inst.exports.rank_count(0, n, 8192, 4096);
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
