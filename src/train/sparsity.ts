// Sparsity by iterative hard thresholding (IHT), as in the FastGRNN paper: after a gradient
// step, every sparsified matrix is projected onto its k largest-magnitude entries.
//
// The number kept is exact and documented: a matrix of n entries at target sparsity s keeps
// k = n − ⌈s·n⌉ entries (at least 1), i.e. at least a fraction s of its entries are zero.
// Ties in magnitude are broken by position (lower index kept) so the projection, and hence
// training, is deterministic.

/** Entries kept for a matrix of n entries at sparsity s ∈ [0, 1). */
export function keepCount(n: number, sparsity: number): number {
  if (!(sparsity >= 0 && sparsity < 1)) throw new RangeError(`sparsity must be in [0, 1), got ${sparsity}`);
  const zeros = Math.ceil(sparsity * n - 1e-9);
  return Math.max(1, Math.min(n, n - zeros));
}

/** Mask (1 = kept) of the k largest |values|; ties go to the lower index. */
export function topKMask(values: Float64Array, k: number): Uint8Array {
  const n = values.length;
  const mask = new Uint8Array(n);
  if (k >= n) {
    mask.fill(1);
    return mask;
  }
  if (k <= 0) return mask;
  // The k-th largest magnitude by a native numeric sort (no comparator callback: this runs after
  // every optimizer step of the IHT phase), then everything above it plus the first ties.
  const mags = new Float64Array(n);
  for (let i = 0; i < n; i++) mags[i] = Math.abs(values[i]!);
  mags.sort();
  const kth = mags[n - k]!;
  let kept = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(values[i]!) > kth) {
      mask[i] = 1;
      kept++;
    }
  }
  for (let i = 0; i < n && kept < k; i++) {
    if (mask[i] === 0 && Math.abs(values[i]!) === kth) {
      mask[i] = 1;
      kept++;
    }
  }
  return mask;
}

/** Zeroes every entry outside `mask`. */
export function applyMask(values: Float64Array, mask: Uint8Array): void {
  for (let i = 0; i < values.length; i++) if (mask[i] === 0) values[i] = 0;
}

/** In-place IHT projection onto the top-k support at sparsity s; returns the support mask. */
export function hardThreshold(values: Float64Array, sparsity: number): Uint8Array {
  const mask = topKMask(values, keepCount(values.length, sparsity));
  applyMask(values, mask);
  return mask;
}

/** Fraction of exact zeros. */
export function sparsityOf(values: ArrayLike<number>): number {
  if (values.length === 0) return 0;
  let z = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) z++;
  return z / values.length;
}
