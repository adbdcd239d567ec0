// Evaluates a model on labelled feature rows with the metrics the promotion gate compares:
// AUC, conformal coverage at the model's own α and q̂, and the share routed lightweight at a
// quality-loss budget (TRAIN's definitions, src/train/metrics.ts), plus Brier and ECE.
// Both the candidate and the serving model are scored here on the same rows, with the engine's
// own scorer, so the comparison measures the models and nothing else.
import { scoreBatch, type LoadedModel } from '../engine/model.js';
import { auc, brier, costQualityCurve, ece, shareAtBudget } from '../train/metrics.js';
import type { EvalMetrics } from './gate.js';
import { conformalCovers } from './monitor.js';

export interface ModelEvaluation extends EvalMetrics {
  version: string;
  alpha: number | null;
  qhat: number | null;
  /** Quality-loss budget the share was measured at. */
  budget: number;
  /** Score threshold that achieves the share on these rows. */
  shareThreshold: number;
  positives: number;
}

export function scoreRows(model: LoadedModel, features: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n > 0) scoreBatch(model, features, n, out);
  return out;
}

export function evaluateModel(model: LoadedModel, features: Float32Array, labels: Uint8Array, budget: number): ModelEvaluation {
  const n = labels.length;
  const scores = scoreRows(model, features, n);
  const cal = model.calibration;
  let covered = 0;
  let positives = 0;
  for (let i = 0; i < n; i++) {
    positives += labels[i]!;
    if (cal && conformalCovers(scores[i]!, labels[i]! as 0 | 1, cal.qhat)) covered++;
  }
  const at = shareAtBudget(costQualityCurve(scores, labels), budget);
  return {
    version: model.version,
    n,
    positives,
    auc: auc(scores, labels),
    coverage: cal && n > 0 ? covered / n : Number.NaN,
    lightweightShare: at.share,
    shareThreshold: at.threshold,
    budget,
    brier: n > 0 ? brier(scores, labels) : Number.NaN,
    ece: n > 0 ? ece(scores, labels) : Number.NaN,
    alpha: cal?.alpha ?? null,
    qhat: cal?.qhat ?? null,
  };
}
