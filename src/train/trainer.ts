// The training pipeline behind `tiny-dancer train`: split → normalise → train (dense, then
// optional IHT sparsification and retraining on the fixed support) → optional INT8 → conformal
// and threshold calibration on the served model → model file + quality report.
//
// WHY each step sits where it does:
// - The split is by input line (a request's candidates stay together) and seeded; the
//   normalisation is fitted on the training part only and rounded to float32, exactly what the
//   file stores, so the float64 trainer and the float32 file see the same inputs.
// - Early stopping watches the validation loss of the training objective (hard labels, or the
//   same label/teacher mix where a sample has a soft label — a user who weights the teacher
//   has said how much to trust it) and restores the best weights of each phase.
// - Compression follows the FastGRNN paper's three phases: dense training; IHT, where after every
//   Adam step W and U (or their low-rank factors) are projected onto their top-k entries, the
//   target sparsity ramped in over the first half of the phase so the network can re-route
//   around pruned weights; and retraining with the support frozen (masked Adam). INT8 is the
//   last step and needs no training: symmetric per-tensor, q = round(w / s), s = max|w| / 127.
// - Calibration happens LAST, on the model exactly as the engine loads it (quantised weights,
//   float32 file, the engine's own kernel), so q̂ and the thresholds describe what will serve.
// - Everything random draws from one seed through forked streams: same seed and data → the
//   same bytes. The file carries no timestamps or paths; its version is a hash of its content.
import { createHash } from 'node:crypto';
import { InvalidInputError } from '../errors.js';
import { FEATURE_COUNT, FEATURE_NAMES } from '../engine/features.js';
import { encodeModel, forward, parseModel, scoreBatch, type LoadedModel, type ModelParams } from '../engine/model.js';
import { Adam } from './adam.js';
import { DEFAULT_RISK_DELTA, chooseThreshold, conformal, type ThresholdChoice, type ThresholdMode } from './calibrate.js';
import { fitNormalisation, makePart, splitDataset, type Dataset, type Normalisation, type Part, type SplitIndices } from './data.js';
import {
  GrnnWork, SPARSE_NAMES, batchLossGrad, cloneParams, copyParams, countWeights, initParams, paramEntries, zeroParams,
  type GrnnParams, type GrnnShape, type ParamName, type SeqView,
} from './grnn.js';
import { Rng } from './rng.js';
import { hardThreshold } from './sparsity.js';

export interface TrainOptions {
  hidden: number;
  /** 0 = full W. */
  rankW: number;
  /** 0 = full U. */
  rankU: number;
  /** Maximum epochs of each training phase (dense; retraining after IHT). */
  epochs: number;
  /** Epochs of the IHT phase (0 → max(4, epochs / 4)). */
  ihtEpochs: number;
  /** 'shadow' (default): dense shadow weights, projected for every pass; 'project': plain projected gradient. */
  ihtMode?: 'shadow' | 'project';
  lr: number;
  /** Multiplied into the learning rate after every epoch. */
  lrDecay: number;
  batchSize: number;
  seed: number;
  /** Epochs without validation improvement before a phase stops. */
  patience: number;
  /** Target fraction of zeros in W and U (or their factors); 0 = dense. */
  sparsity: number;
  quantize: boolean;
  alpha: number;
  threshold: ThresholdMode;
  /** Fixed max_uncertainty; undefined → 1 (see calibrate.ts). */
  maxUncertainty?: number;
  valFraction: number;
  calFraction: number;
  testFraction: number;
  /** λ in target = (1 − λ)·label + λ·soft_label for samples with a soft label. */
  distillWeight: number;
  /** Model version; default derived from the content. */
  version?: string;
}

export const DEFAULT_TRAIN_OPTIONS: Readonly<TrainOptions> = Object.freeze({
  hidden: 16,
  rankW: 0,
  rankU: 0,
  epochs: 40,
  ihtEpochs: 0,
  lr: 0.01,
  lrDecay: 0.95,
  batchSize: 128,
  seed: 42,
  patience: 5,
  sparsity: 0,
  quantize: false,
  alpha: 0.1,
  threshold: Object.freeze({ maxQualityLoss: 0.02 }),
  valFraction: 0.15,
  calFraction: 0.15,
  testFraction: 0.15,
  distillWeight: 0.5,
});

export interface EpochInfo {
  phase: 'dense' | 'iht' | 'retrain';
  epoch: number;
  maxEpochs: number;
  trainLoss: number;
  valLoss: number;
  bestValLoss: number;
  lr: number;
  /** Current sparsity target (IHT phase). */
  sparsity?: number;
}

export interface TrainHooks {
  /** After every epoch. */
  epoch?(info: EpochInfo): void;
  /** Every few batches: samples processed in the current phase, and the phase's maximum. */
  progress?(phase: EpochInfo['phase'], done: number, total: number): void;
}

export interface PhaseSummary {
  phase: EpochInfo['phase'];
  epochsRun: number;
  bestEpoch: number;
  bestValLoss: number;
  seconds: number;
}

/** One model the pipeline produced, as the engine loads it. */
export interface Variant {
  /** 'float dense', 'float sparse', 'int8 …' */
  name: string;
  bytes: Uint8Array;
  model: LoadedModel;
  nonZeros: number;
  params: number;
}

export interface TrainResult {
  /** The final model file (calibrated). */
  bytes: Uint8Array;
  model: LoadedModel;
  /** Compression steps in order (the last one is `model` before calibration metadata). */
  variants: Variant[];
  phases: PhaseSummary[];
  calibration: { alpha: number; qhat: number; n: number };
  threshold: ThresholdChoice;
  dataset: Dataset;
  split: SplitIndices;
  norm: Normalisation;
  parts: { train: Part; val: Part; cal: Part; test: Part };
  options: TrainOptions;
  seconds: number;
  /** Notes worth showing the user (e.g. U untrained because every sample has one step). */
  notes: string[];
}

function checkOptions(o: TrainOptions): void {
  const bad = (m: string) => {
    throw new InvalidInputError(m);
  };
  if (!Number.isInteger(o.hidden) || o.hidden < 1 || o.hidden > 1024) bad(`--hidden must be 1..1024, got ${o.hidden}`);
  if (!Number.isInteger(o.rankW) || o.rankW < 0) bad(`--rank-w must be a whole number >= 0, got ${o.rankW}`);
  if (!Number.isInteger(o.rankU) || o.rankU < 0) bad(`--rank-u must be a whole number >= 0, got ${o.rankU}`);
  if (o.rankU > o.hidden) bad(`--rank-u ${o.rankU} exceeds --hidden ${o.hidden}`);
  if (!(o.sparsity >= 0 && o.sparsity < 1)) bad(`--sparsity must be in [0, 1), got ${o.sparsity}`);
  if (!(o.alpha > 0 && o.alpha < 1)) bad(`--alpha must be in (0, 1), got ${o.alpha}`);
  if (o.valFraction <= 0 || o.calFraction <= 0 || o.testFraction < 0 || o.valFraction + o.calFraction + o.testFraction >= 0.9) {
    bad('--val-fraction and --cal-fraction must be > 0, --test-fraction >= 0, and together < 0.9');
  }
  if (!(o.distillWeight >= 0 && o.distillWeight <= 1)) bad(`--distill-weight must be in [0, 1], got ${o.distillWeight}`);
}

/** label, or (1 − w)·label + w·soft_label where the sample has a soft label. */
export function trainingTargets(p: Part, distillWeight: number): Float64Array {
  const t = Float64Array.from(p.label);
  if (p.soft) {
    for (let i = 0; i < p.n; i++) {
      const s = p.soft[i]!;
      if (!Number.isNaN(s)) t[i] = (1 - distillWeight) * p.label[i]! + distillWeight * s;
    }
  }
  return t;
}

function view(p: Part): SeqView {
  return { x: p.x, start: p.start, steps: p.steps };
}

/** Raw features of some samples as the engine takes them. */
export function engineScores(model: LoadedModel, ds: Dataset, idx: Int32Array): Float64Array {
  const D = ds.D;
  const n = idx.length;
  const out = new Float64Array(n);
  let oneStep = true;
  for (const i of idx) if (ds.steps[i] !== 1) oneStep = false;
  if (oneStep) {
    const x = new Float32Array(n * D);
    for (let k = 0; k < n; k++) {
      const o = ds.start[idx[k]!]!;
      for (let j = 0; j < D; j++) x[k * D + j] = ds.x[o + j]!;
    }
    const s = new Float32Array(n);
    scoreBatch(model, x, n, s);
    out.set(s);
    return out;
  }
  for (let k = 0; k < n; k++) {
    const i = idx[k]!;
    const T = ds.steps[i]!;
    const seq = ds.x.subarray(ds.start[i]!, ds.start[i]! + T * D);
    // Float32 like the serving path's scores.
    out[k] = Math.fround(forward(model, seq, T));
  }
  return out;
}

export function toModelParams(p: GrnnParams, norm: Normalisation, names: string[], version: string): ModelParams {
  const s = p.shape;
  const mp: ModelParams = {
    inputDim: s.inputDim,
    hiddenDim: s.hiddenDim,
    features: names,
    version,
    bz: p.b_z,
    bh: p.b_h,
    zeta: p.zeta[0]!,
    nu: p.nu[0]!,
    fcW: p.fc_w,
    fcB: p.fc_b[0]!,
    normMean: norm.mean,
    normStd: norm.std,
  };
  if (p.W) mp.W = p.W;
  else {
    mp.W1 = p.W1!;
    mp.W2 = p.W2!;
    mp.rankW = s.rankW;
  }
  if (p.U) mp.U = p.U;
  else {
    mp.U1 = p.U1!;
    mp.U2 = p.U2!;
    mp.rankU = s.rankU;
  }
  return mp;
}

function quantizeList(p: GrnnParams): ('W' | 'W1' | 'W2' | 'U' | 'U1' | 'U2' | 'fc_w')[] {
  const out: ('W' | 'W1' | 'W2' | 'U' | 'U1' | 'U2' | 'fc_w')[] = [];
  for (const name of ['W', 'W1', 'W2', 'U', 'U1', 'U2'] as const) if (p[name]) out.push(name);
  out.push('fc_w');
  return out;
}

/** Version from the content: a hash of the file as encoded with a placeholder version. */
function contentVersion(bytes: Uint8Array, hidden: number): string {
  return `fastgrnn-h${hidden}-${createHash('sha256').update(bytes).digest('hex').slice(0, 12)}`;
}

interface PhaseCtx {
  opts: TrainOptions;
  params: GrnnParams;
  grad: GrnnParams;
  work: GrnnWork;
  train: Part;
  val: Part;
  valTarget: Float64Array;
  target: Float64Array;
  rng: Rng;
  hooks: TrainHooks;
  /** Tensors the optimizer updates (U is left out when it cannot learn: one-step data). */
  trainable: Set<ParamName>;
  /** Tensors IHT sparsifies (the trainable ones among W, U and their factors). */
  sparse: ParamName[];
}

function valLoss(ctx: PhaseCtx): number {
  return batchLossGrad(ctx.params, ctx.work, view(ctx.val), ctx.valTarget, null, 0, ctx.val.n, null);
}

/**
 * Runs one phase. `masks` (per sparse tensor) freeze pruned entries; `iht` projects after every
 * step toward a ramped target. With `earlyStop`, the best-validation weights are restored.
 */
function runPhase(
  ctx: PhaseCtx,
  phase: EpochInfo['phase'],
  maxEpochs: number,
  lr0: number,
  opt: { earlyStop: boolean; masks?: Map<ParamName, Uint8Array>; iht?: number },
): PhaseSummary {
  const t0 = performance.now();
  const { params, grad, work, train, target, opts, hooks } = ctx;
  const entries = paramEntries(params).filter(([name]) => ctx.trainable.has(name));
  const gradList = entries.map(([name]) => grad[name]!);
  // IHT keeps a dense "shadow" of each sparsified tensor: the forward and backward passes use
  // its projection P_k(shadow) while Adam updates the shadow itself. Plain projected gradient
  // (θ ← P_k(θ − η∇)) zeroes a pruned weight for good — one Adam step (~η) never outgrows the
  // kept magnitudes — so its support freezes as soon as the ramp reaches it; with the shadow a
  // weight whose gradient keeps pushing can grow back into the support.
  const shadow = new Map<ParamName, Float64Array>();
  if (opt.iht !== undefined && (opts.ihtMode ?? 'shadow') === 'shadow') for (const name of ctx.sparse) shadow.set(name, Float64Array.from(params[name]!));
  const project = (s: number) => {
    for (const [name, sh] of shadow) {
      const t = params[name]!;
      t.set(sh);
      hardThreshold(t, s);
    }
  };
  const paramList = entries.map(([name, t]) => shadow.get(name) ?? t);
  const maskList = entries.map(([name]) => opt.masks?.get(name) ?? null);
  const adam = new Adam(paramList.map((t) => t.length));
  const idx = Int32Array.from({ length: train.n }, (_, i) => i);
  const B = Math.max(1, Math.min(opts.batchSize, train.n));
  let best = valLoss(ctx);
  const bestParams = cloneParams(params);
  let bestEpoch = 0;
  let sinceBest = 0;
  let epochsRun = 0;
  let lr = lr0;
  const total = maxEpochs * train.n;
  // IHT target schedule, per step: cubic ramp from 0 to the target over the first 60 % of the
  // phase (Zhu & Gupta, 2017: prune fast while there is a lot of redundancy, slowly near the
  // end), then the full target — so the network re-routes around pruned weights gradually.
  const batchesPerEpoch = Math.ceil(train.n / B);
  const rampSteps = Math.max(1, Math.round(0.6 * maxEpochs * batchesPerEpoch));
  let step = 0;
  let sparsityNow: number | undefined;
  for (let e = 1; e <= maxEpochs; e++) {
    epochsRun = e;
    ctx.rng.shuffle(idx);
    let sum = 0;
    let batches = 0;
    for (let from = 0; from < train.n; from += B) {
      const to = Math.min(train.n, from + B);
      if (opt.iht !== undefined) {
        const f = Math.min(1, (step + 1) / rampSteps);
        sparsityNow = opt.iht * (1 - (1 - f) ** 3);
        if (shadow.size > 0) project(sparsityNow);
      }
      sum += batchLossGrad(params, work, view(train), target, idx, from, to, grad);
      batches++;
      adam.step(paramList, gradList, lr, maskList);
      step++;
      if (opt.iht !== undefined && shadow.size === 0) for (const name of ctx.sparse) hardThreshold(params[name]!, sparsityNow!);
      if (hooks.progress && (batches & 15) === 0) hooks.progress(phase, (e - 1) * train.n + to, total);
    }
    if (sparsityNow !== undefined && shadow.size > 0) project(sparsityNow);
    const vl = valLoss(ctx);
    const improved = vl < best - 1e-7;
    if (improved || !opt.earlyStop) {
      if (improved) {
        best = vl;
        bestEpoch = e;
      }
      copyParams(params, bestParams);
      sinceBest = improved ? 0 : sinceBest + 1;
    } else sinceBest++;
    hooks.epoch?.({ phase, epoch: e, maxEpochs, trainLoss: sum / batches, valLoss: vl, bestValLoss: best, lr, ...(sparsityNow !== undefined ? { sparsity: sparsityNow } : {}) });
    lr *= opts.lrDecay;
    if (opt.earlyStop && sinceBest >= opts.patience) break;
  }
  if (opt.earlyStop) copyParams(bestParams, params);
  hooks.progress?.(phase, total, total);
  if (!opt.earlyStop) {
    // No early stopping (IHT): the phase's result is its last epoch.
    best = valLoss(ctx);
    bestEpoch = epochsRun;
  }
  return { phase, epochsRun, bestEpoch, bestValLoss: best, seconds: (performance.now() - t0) / 1000 };
}

/** Trains, compresses, calibrates and encodes a model from a dataset. Pure apart from the clock. */
export function trainModel(ds: Dataset, options: Partial<TrainOptions> = {}, hooks: TrainHooks = {}): TrainResult {
  const started = performance.now();
  const opts: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, ...options };
  checkOptions(opts);
  const notes: string[] = [];
  const root = new Rng(opts.seed);
  const split = splitDataset(ds, { val: opts.valFraction, cal: opts.calFraction, test: opts.testFraction }, root.fork(1));
  if (split.train.length < 10 || split.val.length < 1 || split.cal.length < 1) {
    throw new InvalidInputError(`too little data: ${ds.n} samples from ${ds.lines} lines give train/val/cal = ${split.train.length}/${split.val.length}/${split.cal.length}; need at least 10/1/1`);
  }
  const norm = fitNormalisation(ds, split.train);
  const parts = {
    train: makePart(ds, split.train, norm),
    val: makePart(ds, split.val, norm),
    cal: makePart(ds, split.cal, norm),
    test: makePart(ds, split.test, norm),
  };
  for (const [name, part] of Object.entries(parts)) {
    if (name === 'test' && part.n === 0) continue;
    let pos = 0;
    for (let i = 0; i < part.n; i++) pos += part.label[i]!;
    if (name === 'train' && (pos === 0 || pos === part.n)) {
      throw new InvalidInputError(`the training part has only label ${pos === 0 ? 0 : 1}; a classifier needs both`);
    }
  }
  // Training targets: hard labels, or the distillation mix where a teacher probability exists.
  const train = parts.train;
  const target = trainingTargets(train, opts.distillWeight);
  const valTarget = trainingTargets(parts.val, opts.distillWeight);
  let softCount = 0;
  if (train.soft) {
    for (let i = 0; i < train.n; i++) if (!Number.isNaN(train.soft[i]!)) softCount++;
    notes.push(`distillation: ${softCount} of ${train.n} training samples carry soft_label; target = ${1 - opts.distillWeight}·label + ${opts.distillWeight}·soft_label`);
  }
  let base = 0;
  for (let i = 0; i < train.n; i++) base += target[i]!;
  base = Math.min(0.999, Math.max(0.001, base / train.n));
  const recurrent = ds.maxT > 1;
  if (!recurrent) notes.push('every sample has one step: h_0 = 0 makes U·h vanish, so U receives no gradient and is stored as zeros');
  const shape: GrnnShape = { inputDim: ds.D, hiddenDim: opts.hidden, rankW: opts.rankW, rankU: opts.rankU };
  const params = initParams(shape, root.fork(2), { recurrent, outputBias: Math.log(base / (1 - base)) });
  const trainable = new Set<ParamName>(paramEntries(params).map(([name]) => name));
  if (!recurrent) for (const name of ['U', 'U1', 'U2'] as const) trainable.delete(name);
  const ctx: PhaseCtx = {
    opts, params, grad: zeroParams(shape), work: new GrnnWork(shape, ds.maxT), train, val: parts.val, valTarget, target, rng: root.fork(3), hooks,
    trainable, sparse: SPARSE_NAMES.filter((name) => params[name] !== null && trainable.has(name)),
  };

  const phases: PhaseSummary[] = [];
  phases.push(runPhase(ctx, 'dense', opts.epochs, opts.lr, { earlyStop: true }));
  const names = ds.featureNames;
  const variants: Variant[] = [];
  const addVariant = (name: string, p: GrnnParams, quantize: boolean) => {
    const mp = toModelParams(p, norm, names, 'unversioned');
    if (quantize) mp.quantize = quantizeList(p);
    const bytes = encodeModel(mp);
    const c = countWeights(p);
    variants.push({ name, bytes, model: parseModel(bytes, name), ...c });
  };
  addVariant('float dense', params, false);

  if (opts.sparsity > 0) {
    const ihtEpochs = opts.ihtEpochs > 0 ? opts.ihtEpochs : Math.max(4, Math.round(opts.epochs / 4));
    phases.push(runPhase(ctx, 'iht', ihtEpochs, opts.lr, { earlyStop: false, iht: opts.sparsity }));
    const masks = new Map<ParamName, Uint8Array>();
    for (const name of ctx.sparse) masks.set(name, hardThreshold(params[name]!, opts.sparsity));
    phases.push(runPhase(ctx, 'retrain', opts.epochs, opts.lr, { earlyStop: true, masks }));
    // Retraining keeps the support; entries that reached exactly 0 stay counted as pruned.
    for (const [name, mask] of masks) {
      const t = params[name]!;
      for (let i = 0; i < t.length; i++) if (!mask[i]) t[i] = 0;
    }
    addVariant(`float ${Math.round(opts.sparsity * 100)}% sparse`, params, false);
  }
  if (opts.quantize) addVariant(`int8${opts.sparsity > 0 ? ` ${Math.round(opts.sparsity * 100)}% sparse` : ''}`, params, true);
  const served = variants[variants.length - 1]!;

  // Calibration on the served model, as the engine scores it.
  const calScores = engineScores(served.model, ds, split.cal);
  const cal = conformal(calScores, parts.cal.label, opts.alpha);
  const threshold = chooseThreshold(calScores, parts.cal.label, cal.qhat, opts.threshold, opts.maxUncertainty);
  if (threshold.infeasible) {
    notes.push(`no confidence threshold meets ${threshold.mode} ${threshold.target} on the calibration set; the model's default threshold is 1 (nothing routed lightweight unless overridden)`);
  }

  const metadata: Record<string, string> = {
    description: 'FastGRNN router trained by tiny-dancer train',
    training: JSON.stringify({
      hidden: opts.hidden, rank_w: opts.rankW, rank_u: opts.rankU, epochs: opts.epochs, lr: opts.lr, lr_decay: opts.lrDecay,
      batch_size: opts.batchSize, seed: opts.seed, patience: opts.patience, sparsity: opts.sparsity, quantize: opts.quantize,
      distill_weight: softCount > 0 ? opts.distillWeight : 0, samples: ds.n, train: split.train.length, val: split.val.length,
      cal: split.cal.length, test: split.test.length,
    }),
    threshold_calibration: JSON.stringify({
      mode: threshold.mode, target: threshold.target, calibration_share: round6(threshold.calibrationShare),
      calibration_quality_loss: round6(threshold.calibrationLoss), rule: threshold.mode === 'max_quality_loss' ? `binomial upper bound at delta ${'delta' in opts.threshold ? opts.threshold.delta ?? DEFAULT_RISK_DELTA : DEFAULT_RISK_DELTA} on the exact serving rule` : 'calibration share on the exact serving rule',
    }),
    quality_loss: 'fraction of all candidates routed lightweight whose label says lightweight did not suffice',
  };
  const finalParams = toModelParams(params, norm, names, 'unversioned');
  if (opts.quantize) finalParams.quantize = quantizeList(params);
  finalParams.calibration = cal;
  finalParams.thresholds = { confidence: threshold.confidence, maxUncertainty: threshold.maxUncertainty };
  finalParams.metadata = metadata;
  const version = opts.version ?? contentVersion(encodeModel(finalParams), opts.hidden);
  finalParams.version = version;
  const bytes = encodeModel(finalParams);
  const model = parseModel(bytes, version);
  const routable = ds.D === FEATURE_COUNT && names.every((f, i) => f === FEATURE_NAMES[i]);
  if (!routable) {
    notes.push(`features [${names.join(', ')}] are not the router's [${FEATURE_NAMES.join(', ')}]: the model scores with \`model score\`, not \`route\`/\`serve\``);
  }
  return {
    bytes, model, variants, phases, calibration: cal, threshold, dataset: ds, split, norm, parts, options: opts,
    seconds: (performance.now() - started) / 1000, notes,
  };
}

function round6(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/** Sparsity summary of the stored weight matrices of a parsed model. */
export function storedSparsity(model: LoadedModel): { params: number; nonZeros: number } {
  let params = 0, nonZeros = 0;
  for (const t of model.tensors) {
    if (!['W', 'W1', 'W2', 'U', 'U1', 'U2'].includes(t.name)) continue;
    params += t.params;
    nonZeros += t.nonZeros;
  }
  return { params, nonZeros };
}
