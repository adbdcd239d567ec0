// Quality metrics of a scorer against binary labels "the lightweight model suffices" (1) or not
// (0): ranking (AUC), probability quality (Brier, log loss, expected calibration error) and the
// routing trade-off (the cost/quality curve).
//
// DEFINITIONS (the report and the model card use exactly these):
// - share routed lightweight = (# candidates routed lightweight) / N.
// - quality loss = (# candidates routed lightweight whose label is 0) / N — quality is lost only
//   where the lightweight model was chosen but the heavyweight one was needed; candidates sent
//   to the heavyweight model lose nothing (they only cost more). Both are fractions of ALL N
//   candidates, so "5 % quality loss" means 5 of every 100 candidates got a worse answer.
// - cost/quality curve of a score s: route lightweight when s ≥ t, for every threshold t; the
//   share at a budget B is the largest share whose quality loss is ≤ B (the budget-optimal
//   threshold chosen on the data evaluated — an upper envelope; the shipped model's own
//   thresholds are evaluated out of sample separately).

/** Area under the ROC curve (Mann–Whitney U with average ranks for ties). NaN with one class only. */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0;
  let rankSumPos = 0;
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!]! >= 0.5) {
        pos++;
        rankSumPos += avgRank;
      }
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return NaN;
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
}

export function brier(p: ArrayLike<number>, labels: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    const d = p[i]! - labels[i]!;
    s += d * d;
  }
  return s / p.length;
}

export function logLoss(p: ArrayLike<number>, labels: ArrayLike<number>): number {
  let s = 0;
  const eps = 1e-12;
  for (let i = 0; i < p.length; i++) {
    const q = Math.min(1 - eps, Math.max(eps, p[i]!));
    s -= labels[i]! >= 0.5 ? Math.log(q) : Math.log(1 - q);
  }
  return s / p.length;
}

/** Expected calibration error over `bins` equal-width probability bins: Σ_b (n_b/N)·|mean p − mean y|. */
export function ece(p: ArrayLike<number>, labels: ArrayLike<number>, bins = 10): number {
  const cnt = new Float64Array(bins), sp = new Float64Array(bins), sy = new Float64Array(bins);
  for (let i = 0; i < p.length; i++) {
    const b = Math.min(bins - 1, Math.max(0, Math.floor(p[i]! * bins)));
    cnt[b]!++;
    sp[b] = sp[b]! + p[i]!;
    sy[b] = sy[b]! + labels[i]!;
  }
  let e = 0;
  for (let b = 0; b < bins; b++) if (cnt[b]! > 0) e += Math.abs(sp[b]! - sy[b]!) / p.length;
  return e;
}

export interface CurvePoint {
  /** Route lightweight when score ≥ threshold. */
  threshold: number;
  share: number;
  loss: number;
}

/**
 * The cost/quality curve: one point per distinct score, from routing nothing lightweight
 * (threshold +∞: share 0, loss 0) to routing everything. Monotone in both coordinates.
 */
export function costQualityCurve(scores: ArrayLike<number>, labels: ArrayLike<number>): CurvePoint[] {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const pts: CurvePoint[] = [{ threshold: Infinity, share: 0, loss: 0 }];
  let light = 0, bad = 0;
  let i = 0;
  while (i < n) {
    const s = scores[order[i]!]!;
    while (i < n && scores[order[i]!] === s) {
      light++;
      if (labels[order[i]!]! < 0.5) bad++;
      i++;
    }
    pts.push({ threshold: s, share: light / n, loss: bad / n });
  }
  return pts;
}

/** Largest share whose loss is ≤ budget on a curve (0 when no threshold fits). */
export function shareAtBudget(curve: readonly CurvePoint[], budget: number): { share: number; threshold: number; loss: number } {
  let best = curve[0]!;
  for (const pt of curve) if (pt.loss <= budget + 1e-12 && pt.share > best.share) best = pt;
  return { share: best.share, threshold: best.threshold, loss: best.loss };
}

/** Points of the curve with loss ≤ maxLoss, thinned to about `maxPoints` for plots and JSON. */
export function thinCurve(curve: readonly CurvePoint[], maxLoss: number, maxPoints = 150): { share: number; loss: number }[] {
  const inRange = curve.filter((c) => c.loss <= maxLoss);
  const step = Math.max(1, Math.ceil(inRange.length / maxPoints));
  const out: { share: number; loss: number }[] = [];
  // 6 decimals: far below what the plot or a reader can see, and keeps report.json small.
  const r = (v: number) => Math.round(v * 1e6) / 1e6;
  for (let i = 0; i < inRange.length; i += step) out.push({ share: r(inRange[i]!.share), loss: r(inRange[i]!.loss) });
  const last = inRange[inRange.length - 1];
  if (last && out[out.length - 1]?.share !== r(last.share)) out.push({ share: r(last.share), loss: r(last.loss) });
  return out;
}

export function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return values.length === 0 ? NaN : s / values.length;
}
