// The quality report of a model: every scorer (the model's compression steps, the baselines and,
// for synthetic data, the Bayes-optimal oracle) on the same held-out candidates; conformal
// coverage; the served thresholds evaluated out of sample with the exact serving rule; written
// as JSON (machine-readable, stable keys), Markdown (for people) and a PNG cost/quality chart.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { DEFAULT_FEATURE_CONFIG, FEATURE_NAMES, weightedScore } from '../engine/features.js';
import type { LoadedModel } from '../engine/model.js';
import { coverageStats, routingOutcome, type CoverageStats, type RoutingOutcome } from './calibrate.js';
import type { Part } from './data.js';
import { fitLogistic, predictLogistic } from './logistic.js';
import { auc, brier, costQualityCurve, ece, logLoss, mean, shareAtBudget, thinCurve } from './metrics.js';
import { PALETTE, lineChart, type ChartSeries } from './png.js';
import { Rng } from './rng.js';

export const BUDGETS: readonly number[] = [0.01, 0.02, 0.05];
/** The curve is kept (and drawn) up to this quality loss. */
const CURVE_MAX_LOSS = 0.1;

export interface BudgetPoint {
  budget: number;
  share: number;
  /** Loss actually incurred at the budget-optimal threshold (≤ budget). */
  loss: number;
  threshold: number | null;
}

export interface ScorerResult {
  name: string;
  kind: 'model' | 'baseline' | 'oracle';
  /** False for scores that are not probabilities (cosine, weighted sum): no Brier/ECE/log loss. */
  probabilistic: boolean;
  auc: number | null;
  brier: number | null;
  ece: number | null;
  logLoss: number | null;
  shareAt: BudgetPoint[];
  curve: { share: number; loss: number }[];
}

export interface CompressionStep {
  name: string;
  /** Stored weight matrices (W, U or factors, fc_w): entries and non-zeros. */
  weights: number;
  nonZeros: number;
  sparsity: number;
  /** The same for W (or W1, W2) and for U (or U1, U2) alone. */
  w: { weights: number; nonZeros: number };
  u: { weights: number; nonZeros: number };
  dtypes: string;
  fileBytes: number;
  auc: number | null;
  brier: number | null;
  shareAt: BudgetPoint[];
  /** AUC points lost against the first (float dense) step. */
  aucDropPoints: number | null;
}

export interface QualityReport {
  format: 'tiny-dancer/quality-report';
  formatVersion: 1;
  title: string;
  definitions: Record<string, string>;
  model: {
    version: string;
    inputDim: number;
    hiddenDim: number;
    features: string[];
    wKind: string;
    uKind: string;
    fileBytes: number;
    tensors: { name: string; dtype: string; shape: number[]; nonZeros: number; sparsity: number; bytes: number }[];
    calibration: { alpha: number; qhat: number; n: number } | null;
    thresholds: { confidence: number | null; maxUncertainty: number | null };
  };
  data: Record<string, unknown>;
  evaluatedOn: { part: string; candidates: number; baseRate: number };
  scorers: ScorerResult[];
  compression: CompressionStep[];
  conformal: (CoverageStats & { alpha: number; qhat: number; calibrationN: number; coverageGap: number }) | null;
  routing: (RoutingOutcome & { confidence: number; maxUncertainty: number; source: string }) | null;
  training: Record<string, unknown> | null;
  notes: string[];
}

export function scorerResult(name: string, kind: ScorerResult['kind'], scores: ArrayLike<number>, labels: ArrayLike<number>, probabilistic: boolean): ScorerResult {
  const curve = costQualityCurve(scores, labels);
  const a = auc(scores, labels);
  return {
    name,
    kind,
    probabilistic,
    auc: Number.isNaN(a) ? null : a,
    brier: probabilistic ? brier(scores, labels) : null,
    ece: probabilistic ? ece(scores, labels) : null,
    logLoss: probabilistic ? logLoss(scores, labels) : null,
    shareAt: BUDGETS.map((b) => {
      const s = shareAtBudget(curve, b);
      return { budget: b, share: s.share, loss: s.loss, threshold: Number.isFinite(s.threshold) ? s.threshold : null };
    }),
    curve: thinCurve(curve, CURVE_MAX_LOSS),
  };
}

/** "Always heavyweight": nothing routed lightweight, at any budget. */
export function alwaysHeavyweight(): ScorerResult {
  return {
    name: 'always heavyweight', kind: 'baseline', probabilistic: false, auc: 0.5, brier: null, ece: null, logLoss: null,
    shareAt: BUDGETS.map((b) => ({ budget: b, share: 0, loss: 0, threshold: null })), curve: [{ share: 0, loss: 0 }],
  };
}

export interface BaselineInput {
  test: Part;
  featureNames: readonly string[];
  D: number;
  /** Where logistic regression is fitted; null → 2-fold cross-fitting on the test part itself. */
  train: Part | null;
  /** LR targets for `train` (hard or distillation mix); default its labels. */
  trainTarget?: Float64Array;
  seed: number;
}

/** The baselines, all on the same candidates: always heavyweight, random, cosine, seed weighted sum, logistic regression. */
export function baselines(b: BaselineInput): { results: ScorerResult[]; notes: string[] } {
  const { test, D } = b;
  const labels = test.label;
  const out: ScorerResult[] = [alwaysHeavyweight()];
  const notes: string[] = [];
  const rng = new Rng(b.seed ^ 0x5eed);
  const random = new Float64Array(test.n);
  for (let i = 0; i < test.n; i++) random[i] = rng.next();
  out.push(scorerResult('random', 'baseline', random, labels, false));
  const simIdx = b.featureNames.indexOf('similarity');
  if (simIdx >= 0) {
    const cos = new Float64Array(test.n);
    for (let i = 0; i < test.n; i++) cos[i] = test.rawRows[i * D + simIdx]!;
    out.push(scorerResult('cosine similarity', 'baseline', cos, labels, false));
  }
  const routable = D === FEATURE_NAMES.length && b.featureNames.every((f, i) => f === FEATURE_NAMES[i]);
  if (routable) {
    const ws = new Float64Array(test.n);
    for (let i = 0; i < test.n; i++) ws[i] = weightedScore(test.rawRows, DEFAULT_FEATURE_CONFIG.weights, i * D);
    out.push(scorerResult('seed weighted sum', 'baseline', ws, labels, false));
  } else notes.push('seed weighted sum baseline skipped: the features are not the engine\'s five');
  const lr = new Float64Array(test.n);
  if (b.train) {
    const m = fitLogistic(b.train.normRows, b.trainTarget ?? b.train.label, b.train.n, D);
    predictLogistic(m, test.normRows, test.n, D, lr);
  } else {
    // Cross-fitting: each half is scored by a model fitted on the other half.
    const idx = Int32Array.from({ length: test.n }, (_, i) => i);
    rng.shuffle(idx);
    const half = Math.floor(test.n / 2);
    for (const [fitPart, scorePart] of [[idx.subarray(0, half), idx.subarray(half)], [idx.subarray(half), idx.subarray(0, half)]] as const) {
      const x = new Float64Array(fitPart.length * D);
      const y = new Float64Array(fitPart.length);
      fitPart.forEach((i, k) => {
        x.set(test.normRows.subarray(i * D, (i + 1) * D), k * D);
        y[k] = labels[i]!;
      });
      const m = fitLogistic(x, y, fitPart.length, D);
      const xs = new Float64Array(scorePart.length * D);
      scorePart.forEach((i, k) => xs.set(test.normRows.subarray(i * D, (i + 1) * D), k * D));
      const ps = new Float64Array(scorePart.length);
      predictLogistic(m, xs, scorePart.length, D, ps);
      scorePart.forEach((i, k) => (lr[i] = ps[k]!));
    }
    notes.push('logistic regression was 2-fold cross-fitted on the evaluation data (no training split given)');
  }
  out.push(scorerResult('logistic regression', 'baseline', lr, labels, true));
  return { results: out, notes };
}

export function compressionStep(name: string, model: LoadedModel, result: ScorerResult, first: ScorerResult | null): CompressionStep {
  let weights = 0, nonZeros = 0;
  const w = { weights: 0, nonZeros: 0 }, u = { weights: 0, nonZeros: 0 };
  const dtypes = new Set<string>();
  for (const t of model.tensors) {
    if (!['W', 'W1', 'W2', 'U', 'U1', 'U2', 'fc_w'].includes(t.name)) continue;
    weights += t.params;
    nonZeros += t.nonZeros;
    dtypes.add(t.dtype);
    const family = t.name.startsWith('W') ? w : t.name.startsWith('U') ? u : null;
    if (family) {
      family.weights += t.params;
      family.nonZeros += t.nonZeros;
    }
  }
  return {
    name, weights, nonZeros, sparsity: weights ? 1 - nonZeros / weights : 0, w, u, dtypes: [...dtypes].join('+'),
    fileBytes: model.fileBytes, auc: result.auc, brier: result.brier, shareAt: result.shareAt,
    aucDropPoints: first && first.auc !== null && result.auc !== null ? (first.auc - result.auc) * 100 : null,
  };
}

export function modelSection(model: LoadedModel): QualityReport['model'] {
  return {
    version: model.version,
    inputDim: model.inputDim,
    hiddenDim: model.hiddenDim,
    features: model.features,
    wKind: model.wKind,
    uKind: model.uKind,
    fileBytes: model.fileBytes,
    tensors: model.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, nonZeros: t.nonZeros, sparsity: t.sparsity, bytes: t.bytes })),
    calibration: model.calibration ?? null,
    thresholds: { confidence: model.thresholds?.confidence ?? null, maxUncertainty: model.thresholds?.maxUncertainty ?? null },
  };
}

export const DEFINITIONS: Record<string, string> = {
  label: '1 = the lightweight model suffices for the candidate, 0 = the heavyweight model was needed',
  share: 'candidates routed lightweight / all candidates',
  quality_loss: 'candidates routed lightweight whose label is 0 / all candidates (quality is lost only where lightweight was chosen but heavyweight was needed)',
  share_at_budget: 'largest share over score thresholds whose quality loss is <= the budget, on the evaluated data (an upper envelope: the threshold is chosen on the data it is scored on)',
  routing: 'the stored thresholds applied with the exact serving rule (confidence >= threshold AND uncertainty <= max AND conformal set == {lightweight}) to data not used for calibration',
  coverage: 'fraction of candidates whose label is in the conformal prediction set; split conformal guarantees >= 1 - alpha on exchangeable data',
  ece: 'expected calibration error, 10 equal-width probability bins',
};

/** Conformal and routing sections for a calibrated model on held-out scores. */
export function servedSections(model: LoadedModel, scores: ArrayLike<number>, labels: ArrayLike<number>): Pick<QualityReport, 'conformal' | 'routing'> {
  const cal = model.calibration;
  const conformal = cal
    ? { ...coverageStats(scores, labels, cal.qhat), alpha: cal.alpha, qhat: cal.qhat, calibrationN: cal.n, coverageGap: 0 }
    : null;
  if (conformal) conformal.coverageGap = conformal.coverage - (1 - conformal.alpha);
  const confidence = model.thresholds?.confidence;
  const maxU = model.thresholds?.maxUncertainty;
  let routing: QualityReport['routing'] = null;
  if (cal && confidence !== undefined) {
    const mu = maxU ?? 0.15;
    routing = { ...routingOutcome(scores, labels, cal.qhat, confidence, mu), confidence, maxUncertainty: mu, source: 'model metadata' };
  }
  return { conformal, routing };
}

// ---------------------------------------------------------------------------------------------
// Rendering

const pct = (v: number | null | undefined, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '—' : `${(v * 100).toFixed(d)} %`);
const num = (v: number | null | undefined, d = 4) => (v === null || v === undefined || Number.isNaN(v) ? '—' : v.toFixed(d));

export function reportMarkdown(r: QualityReport, chartFile?: string): string {
  const L: string[] = [];
  L.push(`# ${r.title}`, '');
  const served = r.scorers.find((s) => s.kind === 'model' && s.name === r.compression[r.compression.length - 1]?.name) ?? r.scorers.find((s) => s.kind === 'model');
  const bestBaseline = r.scorers.filter((s) => s.kind === 'baseline').sort((a, b) => (b.shareAt[1]?.share ?? 0) - (a.shareAt[1]?.share ?? 0))[0];
  if (served) {
    L.push(`Model \`${r.model.version}\` on ${r.evaluatedOn.candidates} held-out candidates (${r.evaluatedOn.part}; base rate ${pct(r.evaluatedOn.baseRate)}):`, '');
    L.push(`- **${pct(served.shareAt[1]?.share)} routed lightweight at ≤ 2 % quality loss** (best baseline, ${bestBaseline?.name ?? '—'}: ${pct(bestBaseline?.shareAt[1]?.share)}); AUC ${num(served.auc)}.`);
    if (r.routing) L.push(`- With its stored thresholds (confidence ≥ ${num(r.routing.confidence)}, uncertainty ≤ ${num(r.routing.maxUncertainty)}, conformal set = {lightweight}): ${pct(r.routing.share)} routed lightweight at ${pct(r.routing.loss, 2)} quality loss.`);
    if (r.conformal) L.push(`- Conformal coverage ${pct(r.conformal.coverage, 2)} at α = ${r.conformal.alpha} (target ≥ ${pct(1 - r.conformal.alpha, 0)}; q̂ = ${num(r.conformal.qhat)} from ${r.conformal.calibrationN} calibration candidates).`);
    L.push('');
  }
  if (chartFile) L.push(`![cost/quality curve](${chartFile})`, '');
  L.push('## Scorers (same candidates)', '');
  L.push('| scorer | kind | AUC | Brier | ECE | log loss | share @ 1 % | share @ 2 % | share @ 5 % |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const s of r.scorers) {
    L.push(`| ${s.name} | ${s.kind} | ${num(s.auc)} | ${num(s.brier)} | ${num(s.ece)} | ${num(s.logLoss)} | ${s.shareAt.map((b) => pct(b.share)).join(' | ')} |`);
  }
  L.push('', 'Share @ B: the largest share routed lightweight with quality loss ≤ B (see Definitions).', '');
  if (r.compression.length > 0) {
    L.push('## Compression steps', '');
    L.push('| step | W non-zero | U non-zero | dtypes | file bytes (uncalibrated) | AUC | Δ AUC (points) | Brier | share @ 1 % | share @ 2 % | share @ 5 % |', '| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const c of r.compression) {
      L.push(`| ${c.name} | ${c.w.nonZeros} / ${c.w.weights} | ${c.u.nonZeros} / ${c.u.weights} | ${c.dtypes} | ${c.fileBytes} | ${num(c.auc)} | ${c.aucDropPoints === null ? '—' : c.aucDropPoints.toFixed(2)} | ${num(c.brier)} | ${c.shareAt.map((b) => pct(b.share)).join(' | ')} |`);
    }
    L.push('', 'Δ AUC: points lost against the first row. U non-zero 0 means U was not trained (one-step data: U·h_0 = 0).');
    L.push('');
  }
  if (r.conformal) {
    const c = r.conformal;
    L.push('## Conformal prediction (held out)', '');
    L.push(`α = ${c.alpha}, q̂ = ${num(c.qhat, 6)}, calibration n = ${c.calibrationN}. Coverage ${pct(c.coverage, 2)} (gap to 1 − α: ${(c.coverageGap * 100).toFixed(2)} points); among label 1: ${pct(c.coverageLight, 2)}, among label 0: ${pct(c.coverageHeavy, 2)}.`);
    L.push(`Sets: {lightweight} ${pct(c.sets.lightweight)}, {heavyweight} ${pct(c.sets.heavyweight)}, both ${pct(c.sets.both)}, empty ${pct(c.sets.empty)}.`, '');
  }
  if (r.routing) {
    const t = r.routing;
    L.push('## Routing with the stored thresholds (held out, exact serving rule)', '');
    L.push(`confidence ≥ ${t.confidence}, uncertainty ≤ ${t.maxUncertainty}: share ${pct(t.share, 2)}, quality loss ${pct(t.loss, 2)}. Reasons: lightweight ${t.reasons.model_light}, heavyweight by model ${t.reasons.model_heavy}, below threshold ${t.reasons.below_threshold}, uncertain ${t.reasons.uncertain}.`, '');
  }
  L.push('## Model', '');
  L.push(`\`${r.model.version}\`: ${r.model.inputDim} → ${r.model.hiddenDim} FastGRNN, W ${r.model.wKind}, U ${r.model.uKind}, ${r.model.fileBytes} bytes. Features: ${r.model.features.join(', ')}.`, '');
  L.push('| tensor | dtype | shape | non-zeros | sparsity | bytes |', '| --- | --- | --- | ---: | ---: | ---: |');
  for (const t of r.model.tensors) L.push(`| ${t.name} | ${t.dtype} | [${t.shape.join(', ')}] | ${t.nonZeros} | ${pct(t.sparsity)} | ${t.bytes} |`);
  L.push('');
  L.push('## Data', '', '```json', JSON.stringify(r.data, null, 2), '```', '');
  if (r.training) L.push('## Training', '', '```json', JSON.stringify(r.training, null, 2), '```', '');
  if (r.notes.length) L.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  L.push('## Definitions', '', ...Object.entries(r.definitions).map(([k, v]) => `- **${k}**: ${v}`), '');
  return L.join('\n');
}

export function reportChart(r: QualityReport): Uint8Array {
  const series: ChartSeries[] = [];
  let k = 0;
  for (const s of r.scorers) {
    if (s.name === 'always heavyweight') continue;
    const color = PALETTE[k++ % PALETTE.length]!;
    const ser: ChartSeries = { name: s.name, points: s.curve.map((p) => ({ x: p.loss, y: p.share })), color, dashed: s.kind !== 'model' };
    if (s.kind === 'oracle') ser.color = [90, 90, 90];
    series.push(ser);
  }
  if (r.routing) {
    const served = series.find((s) => s.name === r.compression[r.compression.length - 1]?.name) ?? series[0];
    if (served) served.marker = { x: r.routing.loss, y: r.routing.share };
  }
  const maxShare = Math.max(0.1, ...r.scorers.flatMap((s) => s.curve.map((p) => p.share)));
  return lineChart(series, {
    title: 'SHARE ROUTED LIGHTWEIGHT VS QUALITY LOSS (HELD OUT)',
    xLabel: 'QUALITY LOSS (% OF ALL CANDIDATES)',
    yLabel: 'SHARE LIGHT',
    xMax: CURVE_MAX_LOSS,
    yMax: Math.min(1, Math.ceil(maxShare * 10) / 10),
    xTick: 0.01,
    yTick: 0.1,
    xFormat: (v) => `${Math.round(v * 100)}%`,
    yFormat: (v) => `${Math.round(v * 100)}%`,
    xRefs: BUDGETS,
    markerLabel: 'STORED THRESHOLDS',
  });
}

/** Writes `<base>.json`, `<base>.md` and `<base>.png` for a path like reports/x.json (or x). */
export function writeReport(path: string, r: QualityReport): string[] {
  const base = path.replace(/\.(json|md|png)$/i, '');
  mkdirSync(dirname(base) || '.', { recursive: true });
  const png = `${base}.png`;
  const pngName = png.split(/[\\/]/).pop()!;
  // Curves one point per line: readable diffs without a 10 000-line file.
  const json = JSON.stringify(r, null, 2).replace(/\{\s+"share": ([^,]+),\s+"loss": ([^\s}]+)\s+\}/g, '{ "share": $1, "loss": $2 }');
  writeFileSync(`${base}.json`, `${json}\n`);
  writeFileSync(`${base}.md`, reportMarkdown(r, pngName));
  writeFileSync(png, reportChart(r));
  return [`${base}.json`, `${base}.md`, png];
}

export function baseRate(labels: ArrayLike<number>): number {
  return mean(labels);
}
