// `tiny-dancer train`: JSON lines (or synthetic traffic) in → a calibrated FastGRNN model file
// and, with --report, a quality report (JSON, Markdown, PNG). Progress on stderr, summary on
// stdout. The pipeline itself lives in src/train/; this file only parses options and prints.
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from '../../errors.js';
import { intArg, numberArg, parseCommandArgs } from '../args.js';
import { Progress } from '../progress.js';
import type { TrainOptions } from '../../train/trainer.js';

export const summary = 'train, prune, quantize and calibrate a FastGRNN model; write it and a quality report';
export const usage = `usage: tiny-dancer train (--data FILE | --synthetic N) --out MODEL.safetensors [options]

Input: JSON lines, each one of
  {"features": [x1, ..., xD], "label": 0|1}            one step
  {"features": [[...], [...], ...], "label": 0|1}      a sequence of steps
  a RoutingRequest whose candidates carry "label": 0|1  (features extracted by the engine;
                                                          optional top-level "now": Unix seconds)
Any sample may carry "soft_label" (a teacher's probability): it is then trained toward
(1 - w)*label + w*soft_label, w = --distill-weight (distillation). label 1 = the lightweight
model suffices. --synthetic N generates N labelled synthetic requests instead (see models/README.md).

Defaults do the whole job: infer the input dimension, split off validation, calibration and
test lines (seeded), normalise (stored in the file), train with early stopping, calibrate
(split conformal at --alpha, and the confidence threshold for --max-quality-loss 0.02), write.

Model and training
  --hidden H                 hidden units (default 16)
  --rank-w R / --rank-u R    low-rank W = W1*W2 / U = U1*U2, trained factored (default: full)
  --epochs N                 max epochs per training phase (default 40)
  --lr X / --lr-decay X      Adam step size (0.01), multiplied by lr-decay after each epoch (0.95)
  --batch-size N             (128)
  --patience N               epochs without validation improvement before stopping (5)
  --seed N                   seed of the split, initialisation and shuffling (42)
  --distill-weight W         weight of soft_label in the target (0.5)
Compression
  --sparsity S               IHT to this fraction of zeros in W and U: dense training, IHT,
                             then retraining on the fixed support (default 0: dense)
  --iht-epochs N             epochs of the IHT phase (default max(4, epochs/4))
  --quantize                 store W, U (or factors) and fc_w as INT8 (symmetric, per tensor)
Calibration
  --alpha A                  conformal miscoverage (default 0.1)
  --max-quality-loss E       choose the confidence threshold so that quality loss <= E with
                             probability 1 - delta (default 0.02)
  --risk-delta D             (default 0.1)
  --target-lightweight-share S   or: the highest threshold routing >= S lightweight
  --max-uncertainty U        fix max_uncertainty (default: 1, the conformal set is the guard)
Data
  --val-fraction F / --cal-fraction F / --test-fraction F    (0.15 each; test may be 0)
  --now SECONDS              clock for recency of request lines without "now" (default: now)
  --feature-names a,b,...    names of the features of feature lines (default: the engine's
                             five when D = 5, else f0..f{D-1})
  --synthetic N              N synthetic requests instead of --data
  --synthetic-seed N / --dim N   generator seed (1) and embedding dimension (384)
Output
  --out PATH                 model file (required)
  --report PATH              also write PATH(.json), .md and .png
  --version V                model version (default: derived from the content)

Exit status: 0 ok, 2 bad arguments or bad input (the line is named), 1 other failures.`;

export const OPTIONS = {
  data: { type: 'string' },
  synthetic: { type: 'string' },
  'synthetic-seed': { type: 'string' },
  dim: { type: 'string' },
  out: { type: 'string' },
  report: { type: 'string' },
  hidden: { type: 'string' },
  'rank-w': { type: 'string' },
  'rank-u': { type: 'string' },
  epochs: { type: 'string' },
  'iht-epochs': { type: 'string' },
  lr: { type: 'string' },
  'lr-decay': { type: 'string' },
  'batch-size': { type: 'string' },
  seed: { type: 'string' },
  patience: { type: 'string' },
  sparsity: { type: 'string' },
  quantize: { type: 'boolean' },
  alpha: { type: 'string' },
  'max-quality-loss': { type: 'string' },
  'risk-delta': { type: 'string' },
  'target-lightweight-share': { type: 'string' },
  'max-uncertainty': { type: 'string' },
  'val-fraction': { type: 'string' },
  'cal-fraction': { type: 'string' },
  'test-fraction': { type: 'string' },
  'distill-weight': { type: 'string' },
  now: { type: 'string' },
  'feature-names': { type: 'string' },
  version: { type: 'string' },
} as const;

const pct = (v: number | null | undefined, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '—' : `${(v * 100).toFixed(d)} %`);

export async function run(argv: string[]): Promise<number> {
  const { values: v } = parseCommandArgs(argv, OPTIONS);
  if (!v.out) throw new UsageError('train needs --out MODEL.safetensors');
  if ((v.data === undefined) === (v.synthetic === undefined)) throw new UsageError('train needs exactly one of --data FILE or --synthetic N');
  if (v['max-quality-loss'] !== undefined && v['target-lightweight-share'] !== undefined) {
    throw new UsageError('give --max-quality-loss or --target-lightweight-share, not both');
  }
  const { DEFAULT_TRAIN_OPTIONS: D } = await import('../../train/trainer.js');
  const opts: Partial<TrainOptions> = {
    hidden: intArg('hidden', v.hidden, D.hidden, 1, 1024),
    rankW: intArg('rank-w', v['rank-w'], 0, 0, 4096),
    rankU: intArg('rank-u', v['rank-u'], 0, 0, 4096),
    epochs: intArg('epochs', v.epochs, D.epochs, 1, 100_000),
    ihtEpochs: intArg('iht-epochs', v['iht-epochs'], 0, 0, 100_000),
    lr: numberArg('lr', v.lr, D.lr, 1e-9, 10),
    lrDecay: numberArg('lr-decay', v['lr-decay'], D.lrDecay, 0.01, 1),
    batchSize: intArg('batch-size', v['batch-size'], D.batchSize, 1, 1_000_000),
    seed: intArg('seed', v.seed, D.seed, 0, 2 ** 32 - 1),
    patience: intArg('patience', v.patience, D.patience, 1, 100_000),
    sparsity: numberArg('sparsity', v.sparsity, 0, 0, 0.999),
    quantize: v.quantize === true,
    alpha: numberArg('alpha', v.alpha, D.alpha, 1e-6, 0.999999),
    valFraction: numberArg('val-fraction', v['val-fraction'], D.valFraction, 0.001, 0.9),
    calFraction: numberArg('cal-fraction', v['cal-fraction'], D.calFraction, 0.001, 0.9),
    testFraction: numberArg('test-fraction', v['test-fraction'], D.testFraction, 0, 0.9),
    distillWeight: numberArg('distill-weight', v['distill-weight'], D.distillWeight, 0, 1),
  };
  if (v['target-lightweight-share'] !== undefined) {
    opts.threshold = { targetShare: numberArg('target-lightweight-share', v['target-lightweight-share'], 0.7, 0, 1) };
  } else {
    opts.threshold = {
      maxQualityLoss: numberArg('max-quality-loss', v['max-quality-loss'], 0.02, 1e-6, 0.999999),
      delta: numberArg('risk-delta', v['risk-delta'], 0.1, 1e-6, 0.999999),
    };
  }
  if (v['max-uncertainty'] !== undefined) opts.maxUncertainty = numberArg('max-uncertainty', v['max-uncertainty'], 1, 0, 1);
  if (v.version !== undefined) {
    if (v.version.trim() === '') throw new UsageError('--version must not be empty');
    opts.version = v.version;
  }
  const featureNames = v['feature-names']?.split(',').map((s) => s.trim());
  if (featureNames && featureNames.some((s) => s === '')) throw new UsageError('--feature-names must be a comma-separated list of non-empty names');

  const { loadData } = await import('../../train/source.js');
  const { trainModel } = await import('../../train/trainer.js');
  const { trainingReport } = await import('../../train/evaluate.js');
  const { writeReport } = await import('../../train/report.js');

  // Load.
  const synthetic = v.synthetic === undefined ? undefined : intArg('synthetic', v.synthetic, 0, 1, 10_000_000);
  let total = synthetic;
  if (v.data !== undefined) {
    try {
      total = statSync(v.data).size;
    } catch {
      // loadData reports an unreadable file with its reason.
    }
  }
  const loadBar = new Progress({ unit: synthetic !== undefined ? 'requests' : 'lines', ...(total !== undefined ? { total } : {}) });
  const ds = await loadData(
    {
      ...(v.data !== undefined ? { path: v.data } : {}),
      ...(synthetic !== undefined ? { synthetic } : {}),
      syntheticSeed: intArg('synthetic-seed', v['synthetic-seed'], 1, 0, 2 ** 32 - 1),
      dim: intArg('dim', v.dim, 384, 1, 4096),
      ...(v.now !== undefined ? { now: numberArg('now', v.now, 0, 0) } : {}),
      ...(featureNames ? { featureNames } : {}),
    },
    (lines, pos) => loadBar.update({ done: lines, position: pos }),
  );
  loadBar.finish();
  process.stderr.write(`loaded ${ds.n} samples from ${ds.lines} lines (${ds.source}, ${ds.D} features${ds.maxT > 1 ? `, up to ${ds.maxT} steps` : ''})\n`);

  // Train, one progress bar per phase.
  let bar: Progress | null = null;
  let barPhase = '';
  let lastEpoch = '';
  const res = trainModel(ds, opts, {
    progress(phase, done, total) {
      if (phase !== barPhase) {
        bar?.finish();
        bar = new Progress({ unit: 'samples', total });
        barPhase = phase;
      }
      bar!.update({ done, note: `${phase}${lastEpoch}` });
    },
    epoch(e) {
      lastEpoch = ` epoch ${e.epoch}/${e.maxEpochs} train ${e.trainLoss.toFixed(4)} val ${e.valLoss.toFixed(4)}${e.sparsity !== undefined ? ` sparsity ${(e.sparsity * 100).toFixed(0)}%` : ''}`;
      if (!process.stderr.isTTY && (e.epoch % 5 === 0 || e.epoch === 1)) process.stderr.write(`${e.phase}${lastEpoch}\n`);
    },
  });
  (bar as Progress | null)?.finish();

  mkdirSync(dirname(v.out) || '.', { recursive: true });
  writeFileSync(v.out, res.bytes);
  const report = trainingReport(res);
  const written = v.report ? writeReport(v.report, report) : [];

  const m = res.model;
  const served = report.scorers.find((s) => s.name === res.variants[res.variants.length - 1]!.name);
  const lr = report.scorers.find((s) => s.name === 'logistic regression');
  const sparseTensors = m.tensors.filter((t) => ['W', 'W1', 'W2', 'U', 'U1', 'U2'].includes(t.name));
  const lines = [
    `trained ${m.version} -> ${v.out} (${m.fileBytes} bytes)`,
    `data        ${ds.n} samples from ${ds.lines} lines (${ds.source}), ${ds.D} features, base rate ${pct(report.data.baseRate as number)}`,
    `split       train ${res.split.train.length} / val ${res.split.val.length} / cal ${res.split.cal.length} / test ${res.split.test.length} (seed ${res.options.seed})`,
    `phases      ${res.phases.map((p) => `${p.phase} ${p.epochsRun} epochs (best ${p.bestEpoch}, val loss ${p.bestValLoss.toFixed(4)})`).join(' · ')}; ${res.seconds.toFixed(1)} s`,
    `weights     ${sparseTensors.map((t) => `${t.name} ${t.dtype} ${t.nonZeros}/${t.params} non-zero`).join(', ')}`,
    `conformal   alpha ${res.calibration.alpha}, qhat ${res.calibration.qhat.toFixed(4)} (n ${res.calibration.n})`,
    `thresholds  confidence >= ${res.threshold.confidence.toFixed(4)}, max_uncertainty ${res.threshold.maxUncertainty} (${res.threshold.mode} ${res.threshold.target}): calibration share ${pct(res.threshold.calibrationShare)}, loss ${pct(res.threshold.calibrationLoss, 2)}`,
    `${report.evaluatedOn.part.padEnd(11)} AUC ${served?.auc?.toFixed(4)} (logistic ${lr?.auc?.toFixed(4)}), share @ 2 % loss ${pct(served?.shareAt[1]?.share)} (logistic ${pct(lr?.shareAt[1]?.share)})` +
      (report.conformal ? `, coverage ${pct(report.conformal.coverage, 2)}` : '') +
      (report.routing ? `, stored thresholds: share ${pct(report.routing.share)} at loss ${pct(report.routing.loss, 2)}` : ''),
  ];
  if (res.variants.length > 1) {
    lines.push(`compression ${report.compression.map((c) => `${c.name}: AUC ${c.auc?.toFixed(4)}`).join(' -> ')}`);
  }
  for (const n of res.notes) lines.push(`note        ${n}`);
  if (written.length) lines.push(`report      ${written.join(', ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
