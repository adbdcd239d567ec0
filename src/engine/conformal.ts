// Split conformal prediction for the binary "does the lightweight model suffice?" question.
//
// WHY: a raw score of 0.9 says nothing about how often 0.9 is wrong. Split conformal turns a
// held-out calibration set into a guarantee: with nonconformity s(x, y) = 1 − p̂(y|x)
// (p̂(lightweight|x) = score, p̂(heavyweight|x) = 1 − score) and q̂ the ⌈(n+1)(1−α)⌉-th
// smallest calibration nonconformity, the prediction set {y : 1 − p̂(y|x) ≤ q̂} contains the
// true label with probability ≥ 1 − α (for exchangeable data). The router only trusts a
// lightweight decision when that set is exactly {lightweight}.
//
// Uncertainty in [0, 1] from the set (pinned here, documented in `model inspect`):
//   - full set {light, heavy}: 1 (the data cannot tell the two apart at level α);
//   - empty set: 1 (the point looks unlike the calibration data for either label — treated as
//     maximally uncertain, never as confident);
//   - singleton {y}: u = p̂(y′|x) / (1 − q̂), y′ the excluded label. The excluded label was
//     excluded because 1 − p̂(y′|x) > q̂, i.e. p̂(y′|x) < 1 − q̂, so u ∈ [0, 1): 0 when the
//     excluded label has no probability at all, approaching 1 as it approaches inclusion —
//     continuous with the full-set value 1 at that boundary.
// Without calibration the same formulas run with q̂ = 0.5 (HEURISTIC_QHAT): the set is then
// {argmax} (both labels at exactly 0.5) and the singleton formula reduces to
// u = 2·min(p, 1 − p) = 1 − |2p − 1|, the documented heuristic.

export interface Calibration {
  alpha: number;
  qhat: number;
  n: number;
}

/** Prediction sets as bit masks: cheap to compute per candidate, no allocation. */
export const SET_EMPTY = 0;
export const SET_HEAVY = 1;
export const SET_LIGHT = 2;
export const SET_FULL = 3;
export type PredictionSetMask = 0 | 1 | 2 | 3;

/** q̂ used when a model carries no calibration: uncertainty = 1 − |2p − 1|. */
export const HEURISTIC_QHAT = 0.5;

/**
 * Split conformal calibration. `scores` are p̂(lightweight|x) on held-out data, `labels` 1 (or
 * true) when the lightweight model sufficed, 0 (false) otherwise. q̂ is the k-th smallest
 * nonconformity with k = ⌈(n+1)(1−α)⌉ (the ⌈(n+1)(1−α)⌉/n empirical quantile); when k > n
 * (too few points for level α) q̂ = 1 and every set is full.
 */
export function calibrate(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>, alpha: number): Calibration {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError(`calibrate: ${n} scores but ${labels.length} labels`);
  if (n < 1) throw new RangeError('calibrate: need at least one calibration point');
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`calibrate: alpha must be in (0, 1), got ${alpha}`);
  const s = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const p = scores[i]!;
    if (!(p >= 0 && p <= 1)) throw new RangeError(`calibrate: score ${i} is ${p}, not in [0, 1]`);
    const y = labels[i];
    const light = y === true || y === 1;
    if (!light && y !== false && y !== 0) throw new RangeError(`calibrate: label ${i} is ${String(y)}, not 0/1`);
    s[i] = light ? 1 - p : p;
  }
  s.sort();
  // The epsilon keeps e.g. (99+1)·0.9 = 90.000000000000014 from rounding up to 91.
  const k = Math.ceil((n + 1) * (1 - alpha) - 1e-9);
  const qhat = k > n ? 1 : s[Math.max(k, 1) - 1]!;
  return { alpha, qhat, n };
}

/** {y : 1 − p̂(y|x) ≤ q̂} as a mask: light iff 1 − p ≤ q̂, heavy iff p ≤ q̂. */
export function predictionSet(p: number, qhat: number): PredictionSetMask {
  return (((1 - p <= qhat) ? SET_LIGHT : 0) | ((p <= qhat) ? SET_HEAVY : 0)) as PredictionSetMask;
}

/** Uncertainty in [0, 1] of a prediction set (see the file comment for the definition). */
export function uncertaintyFromSet(p: number, qhat: number, set: PredictionSetMask): number {
  if (set === SET_LIGHT) return Math.min(1, (1 - p) / (1 - qhat)); // excluded: heavy, p̂ = 1 − p
  if (set === SET_HEAVY) return Math.min(1, p / (1 - qhat)); // excluded: light, p̂ = p
  return 1; // full or empty
}

/** Convenience: the set and its uncertainty for score p under q̂. */
export function conformalUncertainty(p: number, qhat: number): { set: PredictionSetMask; uncertainty: number } {
  const set = predictionSet(p, qhat);
  return { set, uncertainty: uncertaintyFromSet(p, qhat, set) };
}

export function setLabels(set: PredictionSetMask): ('lightweight' | 'heavyweight')[] {
  const out: ('lightweight' | 'heavyweight')[] = [];
  if (set & SET_LIGHT) out.push('lightweight');
  if (set & SET_HEAVY) out.push('heavyweight');
  return out;
}
