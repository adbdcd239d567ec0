// Calibration of a trained model for serving: the split-conformal q̂ (with the engine's own
// `calibrate`, so training and serving use one definition) and the routing thresholds.
//
// THRESHOLDS, like RouteLLM's calibrate_threshold but against the EXACT serving rule: the
// engine routes a candidate lightweight iff
//     confidence ≥ confidence_threshold  AND  uncertainty ≤ max_uncertainty  AND  set == {lightweight}
// with set and uncertainty from q̂ (src/engine/conformal.ts, src/engine/decide.ts). We score the
// calibration set with the model as the engine loads it, run that very `decide` for every
// candidate threshold, and pick:
//   - `--max-quality-loss ε` (the default, ε = 0.02): the LOWEST confidence threshold t whose
//     calibration quality loss passes an upper-confidence-bound test at level δ (default 0.1):
//     with k(t) the number of calibration candidates routed lightweight whose label is 0,
//         P(Binomial(n, ε) ≤ k(t)) ≤ δ
//     — the exact binomial test of "risk ≤ ε" behind risk-controlling prediction sets (Bates,
//     Angelopoulos et al., "Distribution-free, risk-controlling prediction sets", 2021). The
//     quality loss is non-increasing in t, so scanning t downward and stopping at the first
//     failure keeps the guarantee: with probability ≥ 1 − δ over the calibration data, the
//     expected quality loss of the chosen threshold on new data from the same distribution is
//     ≤ ε. The price is a margin of about z·√(ε/n) (≈ 0.1 point with 30 000 points at ε = 2 %).
//     It assumes exchangeable candidates; candidates of one request are correlated, so use many
//     requests (the margin then still holds in practice; the report measures it out of sample).
//   - `--target-lightweight-share s`: the HIGHEST threshold whose calibration share is ≥ s.
// `max_uncertainty`: fixed when given; otherwise written as 1, so the uncertainty limit never
// binds and the rule reads "confidence ≥ t AND the conformal set is exactly {lightweight}" — one
// knob (the confidence threshold) moves the operating point, and the conformal set remains the
// guard against candidates the calibration data cannot vouch for.
import { calibrate as conformalCalibrate, predictionSet, uncertaintyFromSet, SET_EMPTY, SET_FULL, SET_HEAVY, SET_LIGHT, type Calibration } from '../engine/conformal.js';
import { decide } from '../engine/decide.js';

export type ThresholdMode = { maxQualityLoss: number; delta?: number } | { targetShare: number };

export interface ThresholdChoice {
  confidence: number;
  maxUncertainty: number;
  mode: 'max_quality_loss' | 'target_lightweight_share';
  /** ε or s. */
  target: number;
  /** On the calibration set, with the exact rule. */
  calibrationShare: number;
  calibrationLoss: number;
  /** For max_quality_loss: the largest number of bad lightweight routes allowed on the calibration set. */
  maxBad?: number;
  /** True when no threshold meets the target (then nothing is routed lightweight by the model's defaults). */
  infeasible: boolean;
}

/** δ of the quality-loss bound when none is given. */
export const DEFAULT_RISK_DELTA = 0.1;

/**
 * The largest k with P(Binomial(n, eps) ≤ k) ≤ delta (−1 when even k = 0 fails): a calibration
 * set with at most k bad lightweight routes rejects "risk > eps" at level delta. Summed in log
 * space: n·log(1 − eps) underflows double precision for large n.
 */
export function maxBadCount(n: number, eps: number, delta: number): number {
  if (!(eps > 0 && eps < 1)) throw new RangeError(`quality-loss budget must be in (0, 1), got ${eps}`);
  if (!(delta > 0 && delta < 1)) throw new RangeError(`risk delta must be in (0, 1), got ${delta}`);
  const le = Math.log(eps), l1e = Math.log1p(-eps), ld = Math.log(delta);
  let lpmf = n * l1e; // log P(X = 0)
  let lcdf = lpmf;
  let k = -1;
  for (let j = 0; j <= n; j++) {
    if (lcdf > ld) break;
    k = j;
    if (j === n) break;
    lpmf += Math.log(n - j) - Math.log(j + 1) + le - l1e;
    const hi = Math.max(lcdf, lpmf);
    lcdf = hi + Math.log(Math.exp(lcdf - hi) + Math.exp(lpmf - hi));
  }
  return k;
}

export function conformal(scores: ArrayLike<number>, labels: ArrayLike<number>, alpha: number): Calibration {
  return conformalCalibrate(scores, labels, alpha);
}

/** 1 where the serving rule routes the candidate lightweight. */
export function simulateRouting(scores: ArrayLike<number>, qhat: number, confidence: number, maxUncertainty: number): Uint8Array {
  const out = new Uint8Array(scores.length);
  const th = { confidence, maxUncertainty };
  for (let i = 0; i < scores.length; i++) {
    const p = scores[i]!;
    const set = predictionSet(p, qhat);
    const u = uncertaintyFromSet(p, qhat, set);
    out[i] = decide(p, u, set, th).use_lightweight ? 1 : 0;
  }
  return out;
}

export interface RoutingOutcome {
  share: number;
  loss: number;
  /** Candidates per reason of the serving rule. */
  reasons: Record<'model_light' | 'model_heavy' | 'below_threshold' | 'uncertain', number>;
}

export function routingOutcome(scores: ArrayLike<number>, labels: ArrayLike<number>, qhat: number, confidence: number, maxUncertainty: number): RoutingOutcome {
  const n = scores.length;
  const th = { confidence, maxUncertainty };
  let light = 0, bad = 0;
  const reasons = { model_light: 0, model_heavy: 0, below_threshold: 0, uncertain: 0 };
  for (let i = 0; i < n; i++) {
    const p = scores[i]!;
    const set = predictionSet(p, qhat);
    const d = decide(p, uncertaintyFromSet(p, qhat, set), set, th);
    if (d.use_lightweight) {
      light++;
      reasons.model_light++;
      if (labels[i]! < 0.5) bad++;
    } else if (d.reason === 'model') reasons.model_heavy++;
    else if (d.reason === 'below_threshold') reasons.below_threshold++;
    else reasons.uncertain++;
  }
  return { share: n ? light / n : 0, loss: n ? bad / n : 0, reasons };
}

/**
 * Chooses the confidence threshold (see the file comment). Candidate thresholds are the distinct
 * calibration scores; with a fixed max_uncertainty the rule is "p ≥ t AND g(p)" where g (set and
 * uncertainty) does not depend on t, so one sorted sweep evaluates all of them exactly.
 */
export function chooseThreshold(scores: ArrayLike<number>, labels: ArrayLike<number>, qhat: number, mode: ThresholdMode, maxUncertainty?: number): ThresholdChoice {
  const n = scores.length;
  const maxU = maxUncertainty ?? 1;
  // g_i: would the rule route i lightweight at threshold 0?
  const eligible = simulateRouting(scores, qhat, 0, maxU);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const isLoss = 'maxQualityLoss' in mode;
  const target = isLoss ? mode.maxQualityLoss : mode.targetShare;
  const maxBad = isLoss ? maxBadCount(n, mode.maxQualityLoss, mode.delta ?? DEFAULT_RISK_DELTA) : n;
  let light = 0, bad = 0;
  let chosen = { t: 1, share: 0, loss: 0, found: false };
  let i = 0;
  while (i < n) {
    const t = scores[order[i]!]!;
    let anyEligible = false;
    while (i < n && scores[order[i]!] === t) {
      const k = order[i]!;
      if (eligible[k]) {
        anyEligible = true;
        light++;
        if (labels[k]! < 0.5) bad++;
      }
      i++;
    }
    // Only scores the rule could route lightweight are distinct thresholds: between two of them
    // the decisions are the same, and the higher one is the meaningful number to store.
    if (!anyEligible) continue;
    const share = light / n, loss = bad / n;
    if (isLoss) {
      if (bad <= maxBad) chosen = { t, share, loss, found: true };
      else break; // the loss only grows as t decreases
    } else if (share >= target) {
      chosen = { t, share, loss, found: true };
      break;
    }
  }
  return {
    confidence: chosen.found ? chosen.t : 1,
    maxUncertainty: maxU,
    mode: isLoss ? 'max_quality_loss' : 'target_lightweight_share',
    target,
    calibrationShare: chosen.share,
    calibrationLoss: chosen.loss,
    ...(isLoss ? { maxBad } : {}),
    infeasible: !chosen.found,
  };
}

export interface CoverageStats {
  /** Fraction of candidates whose label is in the conformal set. */
  coverage: number;
  /** Fractions of set shapes. */
  sets: { lightweight: number; heavyweight: number; both: number; empty: number };
  /** Coverage among label-1 and label-0 candidates. */
  coverageLight: number;
  coverageHeavy: number;
}

export function coverageStats(scores: ArrayLike<number>, labels: ArrayLike<number>, qhat: number): CoverageStats {
  const n = scores.length;
  let cov = 0, l = 0, h = 0, f = 0, e = 0, nl = 0, cl = 0, nh = 0, ch = 0;
  for (let i = 0; i < n; i++) {
    const set = predictionSet(scores[i]!, qhat);
    const light = labels[i]! >= 0.5;
    const covered = light ? (set & SET_LIGHT) !== 0 : (set & SET_HEAVY) !== 0;
    if (covered) cov++;
    if (light) {
      nl++;
      if (covered) cl++;
    } else {
      nh++;
      if (covered) ch++;
    }
    if (set === SET_LIGHT) l++;
    else if (set === SET_HEAVY) h++;
    else if (set === SET_FULL) f++;
    else if (set === SET_EMPTY) e++;
  }
  return {
    coverage: n ? cov / n : NaN,
    sets: { lightweight: l / n, heavyweight: h / n, both: f / n, empty: e / n },
    coverageLight: nl ? cl / nl : NaN,
    coverageHeavy: nh ? ch / nh : NaN,
  };
}
