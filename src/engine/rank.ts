// The ranking of a request's candidates: confidence descending, ties by input order (explicit
// tiebreak, independent of any sort's stability), as candidate indices in a reused Int32Array.
//
// WHY it looks like this: a comparator sort over objects costs ~5× a numeric sort, and
// TypedArray#sort copies its input into temporary work arrays on every call (garbage per
// request). So each candidate becomes one float64 key, (bits(1.0f) − bits(score))·M + i: for
// float32 scores in [0, 1] the bit pattern is monotonic in the value, so ascending keys are
// confidence descending, then index ascending; M (a power of two ≥ n) keeps i recoverable, and
// keys < 2^30·M stay exact integers in float64. The keys are distinct, and sorted in place by a
// quicksort (median of three, the smaller side first so its explicit stack stays logarithmic)
// with insertion sort for short runs. Not a bucket sort on the score values: it degrades when
// scores bunch, as a trained model's do near 0 and 1; not an LSD radix sort: its four passes
// over 256 counters outweigh the comparisons at these sizes. Indices come back as
// key − ⌊key/M⌋·M, exact, where key % M would be a floating-point modulo call.
//
// Up to COUNT_RANK_MAX candidates, where WebAssembly SIMD is there, the ranking is counted
// instead (simd/rank-module.ts): the same order from the same keys (bits(1.0f) − bits(score)),
// without a branch that depends on the scores.
import { buildRankModule } from './simd/rank-module.js';
import { instantiate, type WasmMemory } from './simd/runtime.js';

/** bits(1.0f). */
const ONE = 0x3f800000;

/** Largest request ranked by counting; its n² comparisons cost more than sorting beyond. */
export const COUNT_RANK_MAX = 512;
/** Byte offsets in the counting kernel's memory: keys (padded to 16), counters, order. */
const KEYS_AT = 0, COUNTS_AT = 4 * COUNT_RANK_MAX, ORDER_AT = 8 * COUNT_RANK_MAX;

interface CountKernel {
  fn: (pKeys: number, n: number, pOrder: number, pCounts: number) => void;
  keys: Int32Array;
  order: Int32Array;
}

let rankModuleBytes: Uint8Array | undefined;

function loadCountKernel(): CountKernel | null {
  const instance = instantiate((rankModuleBytes ??= buildRankModule()));
  if (!instance) return null;
  const buffer = (instance.exports.memory as WasmMemory).buffer; // one page: never grown
  return {
    fn: instance.exports.rank_count as CountKernel['fn'],
    keys: new Int32Array(buffer, KEYS_AT, COUNT_RANK_MAX),
    order: new Int32Array(buffer, ORDER_AT, COUNT_RANK_MAX),
  };
}

export class Ranker {
  /** Its own instance of the counting kernel (undefined: not loaded yet; null: no SIMD here). */
  #count: CountKernel | null | undefined;
  #keys = new Float64Array(0);
  #order = new Int32Array(0);
  /** Explicit stack of the quicksort (pairs of bounds). */
  #stack = new Int32Array(128);

  /**
   * Candidate indices of the n scores whose float32 bit patterns are `bits[0..n)`, in rank order
   * (entries [0, n) of the returned array, which the next call reuses).
   */
  rank(bits: Uint32Array, n: number): Int32Array {
    if (n <= COUNT_RANK_MAX) {
      const k = this.#count === undefined ? (this.#count = loadCountKernel()) : this.#count;
      if (k !== null && rankByCount(k, bits, n)) return k.order;
    }
    if (this.#keys.length < n) {
      this.#keys = new Float64Array(n);
      this.#order = new Int32Array(n);
    }
    let M = 1024;
    while (M < n) M *= 2;
    const a = this.#keys;
    for (let i = 0; i < n; i++) a[i] = (ONE - bits[i]!) * M + i;
    quicksort(a, n, this.#stack);
    const order = this.#order;
    const invM = 1 / M;
    for (let r = 0; r < n; r++) {
      const key = a[r]!;
      order[r] = key - Math.floor(key * invM) * M;
    }
    return order;
  }
}

/**
 * The counting kernel's ranking into k.order; false (nothing ranked) when a score lies outside
 * [0, 1] or is NaN, whose keys the comparison sort orders as before.
 */
function rankByCount(k: CountKernel, bits: Uint32Array, n: number): boolean {
  const keys = k.keys;
  for (let i = 0; i < n; i++) {
    const b = bits[i]!;
    if (b > ONE) return false;
    keys[i] = ONE - b;
  }
  const padded = (n + 15) & ~15;
  for (let i = n; i < padded; i++) keys[i] = 0x7fffffff;
  k.fn(KEYS_AT, n, ORDER_AT, COUNTS_AT);
  return true;
}

/** a[0..n) ascending in place (distinct keys). */
function quicksort(a: Float64Array, n: number, stack: Int32Array): void {
  let sp = 0;
  let lo = 0;
  let hi = n - 1;
  for (;;) {
    if (hi - lo < 16) {
      for (let i = lo + 1; i <= hi; i++) {
        const x = a[i]!;
        let j = i - 1;
        while (j >= lo && a[j]! > x) {
          a[j + 1] = a[j]!;
          j--;
        }
        a[j + 1] = x;
      }
      if (sp === 0) return;
      hi = stack[--sp]!;
      lo = stack[--sp]!;
      continue;
    }
    const mid = (lo + hi) >> 1;
    if (a[mid]! < a[lo]!) { const t = a[mid]!; a[mid] = a[lo]!; a[lo] = t; }
    if (a[hi]! < a[lo]!) { const t = a[hi]!; a[hi] = a[lo]!; a[lo] = t; }
    if (a[hi]! < a[mid]!) { const t = a[hi]!; a[hi] = a[mid]!; a[mid] = t; }
    const pivot = a[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!; a[i] = a[j]!; a[j] = t;
        i++;
        j--;
      }
    }
    // [lo, j] and [i, hi] remain: push the larger, go on with the smaller
    if (j - lo < hi - i) {
      stack[sp++] = i; stack[sp++] = hi;
      hi = j;
    } else {
      stack[sp++] = lo; stack[sp++] = j;
      lo = i;
    }
  }
}
