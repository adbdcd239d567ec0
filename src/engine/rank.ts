// The ranking of a request's candidates: confidence descending, ties by input order (explicit
// tiebreak, independent of any sort's stability), as candidate indices into a reused Int32Array.
//
// WHY not Array#sort / TypedArray#sort: a comparator sort over objects costs ~5× a numeric sort,
// and TypedArray#sort copies its input into temporary work arrays on every call (garbage per
// request). A comparison sort of n = 100 random scores also spends most of its time in
// mispredicted branches. So the common case is a bucket sort: scores are probabilities in
// [0, 1], so bucket b = ⌊(1 − score)·B⌋ (B ≥ 2n buckets) orders them descending; indices are
// scattered into their buckets in increasing order, so equal scores keep input order; a short
// insertion sort (moving only past strictly smaller scores, hence stable) finishes each bucket.
// That is a few predictable passes over n and B. When scores crowd into few buckets (an
// untrained or saturated model: many equal or nearly equal scores), insertion sort would turn
// quadratic, so a bucket of more than MAX_BUCKET entries switches to an in-place quicksort of
// float64 keys (bits(1.0f) − bits(score))·M + i — monotonic in the score for float32 values in
// [0, 1], the index recoverable as key mod M and ending every key, so keys are distinct.

const MAX_BUCKET = 32;

export class Ranker {
  #order = new Int32Array(0);
  #counts = new Int32Array(0);
  #keys = new Float64Array(0);
  #bits = new Uint32Array(1);
  #f32 = new Float32Array(this.#bits.buffer);
  /** Explicit stack of the quicksort (pairs of bounds): 2·log2(n) levels with slack. */
  #stack = new Int32Array(128);

  /** Candidate indices of scores[0..n) in rank order; a view valid until the next call. */
  rank(scores: ArrayLike<number>, n: number): Int32Array {
    if (this.#order.length < n) {
      this.#order = new Int32Array(n);
      this.#keys = new Float64Array(n);
    }
    let B = 64;
    while (B < 2 * n) B *= 2;
    if (this.#counts.length < B + 1) this.#counts = new Int32Array(B + 1);
    const counts = this.#counts;
    const order = this.#order;
    counts.fill(0, 0, B + 1);
    let crowded = false;
    for (let i = 0; i < n; i++) {
      const b = bucket(scores[i]!, B);
      if (++counts[b + 1]! > MAX_BUCKET) crowded = true;
    }
    if (crowded) {
      this.#sortByKeys(scores, n);
      return order;
    }
    for (let b = 1; b <= B; b++) counts[b] = counts[b]! + counts[b - 1]!;
    // counts[b] is now where bucket b starts; scatter in index order
    for (let i = 0; i < n; i++) order[counts[bucket(scores[i]!, B)]!++] = i;
    // stable insertion sort inside each run of one bucket (the runs are short)
    for (let k = 1; k < n; k++) {
      const i = order[k]!;
      const s = scores[i]!;
      let j = k - 1;
      while (j >= 0 && scores[order[j]!]! < s) {
        order[j + 1] = order[j]!;
        j--;
      }
      order[j + 1] = i;
    }
    return order;
  }

  #sortByKeys(scores: ArrayLike<number>, n: number): void {
    const M = n <= 1024 ? 1024 : 2 ** Math.ceil(Math.log2(n));
    const a = this.#keys;
    const bits = this.#bits, f32 = this.#f32;
    for (let i = 0; i < n; i++) {
      f32[0] = scores[i]!;
      a[i] = (0x3f800000 - bits[0]!) * M + i;
    }
    quicksort(a, n, this.#stack);
    const order = this.#order;
    for (let r = 0; r < n; r++) order[r] = a[r]! % M;
  }
}

/** ⌊(1 − score)·B⌋ clamped to [0, B): descending score, ascending bucket. */
function bucket(score: number, B: number): number {
  const b = ((1 - score) * B) | 0;
  return b < 0 ? 0 : b >= B ? B - 1 : b;
}

/** a[0..n) ascending in place, n distinct keys: median of three, smaller side first, insertion sort below 16. */
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
