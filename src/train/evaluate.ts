// Builds quality reports: after training (on the held-out test part of the same split the
// baselines use) and for `tiny-dancer eval` (a model, or several, on a labelled file).
import { InvalidInputError } from '../errors.js';
import type { LoadedModel } from '../engine/model.js';
import { fitNormalisation, makePart, type Dataset, type Part } from './data.js';
import { type QualityReport, DEFINITIONS, baselines, compressionStep, modelSection, scorerResult, servedSections, type ScorerResult } from './report.js';
import { engineScores, trainingTargets, type TrainResult } from './trainer.js';
import { mean } from './metrics.js';

function oracleResult(part: Part): ScorerResult | null {
  const p = part.pTrue;
  if (!p) return null;
  for (let i = 0; i < part.n; i++) if (Number.isNaN(p[i]!)) return null;
  return scorerResult('oracle (Bayes)', 'oracle', p, part.label, true);
}

function labelStats(ds: Dataset): { baseRate: number } {
  return { baseRate: mean(ds.label) };
}

/** The report `train` writes: test part when there is one, else the calibration part (said so). */
export function trainingReport(res: TrainResult, title = 'tiny-dancer model quality report'): QualityReport {
  const { dataset: ds, parts, split, options: o } = res;
  const useTest = parts.test.n > 0;
  const part = useTest ? parts.test : parts.cal;
  const idx = useTest ? split.test : split.cal;
  const notes = [...res.notes];
  if (!useTest) notes.push('no test split (--test-fraction 0): metrics are on the calibration part, which also chose the thresholds — optimistic');
  const scorers: ScorerResult[] = [];
  const modelResults: ScorerResult[] = [];
  for (const v of res.variants) {
    const r = scorerResult(v.name, 'model', engineScores(v.model, ds, idx), part.label, true);
    modelResults.push(r);
  }
  scorers.push(...modelResults);
  const target = trainingTargets(parts.train, o.distillWeight);
  const base = baselines({ test: part, featureNames: ds.featureNames, D: ds.D, train: parts.train, trainTarget: target, seed: o.seed });
  scorers.push(...base.results);
  notes.push(...base.notes);
  const oracle = oracleResult(part);
  if (oracle) scorers.push(oracle);
  const compression = res.variants.map((v, i) => compressionStep(v.name, v.model, modelResults[i]!, modelResults[0]!));
  const served = engineScores(res.model, ds, idx);
  return {
    format: 'tiny-dancer/quality-report',
    formatVersion: 1,
    title,
    definitions: DEFINITIONS,
    model: modelSection(res.model),
    data: {
      source: ds.source,
      samples: ds.n,
      lines: ds.lines,
      inputDim: ds.D,
      features: ds.featureNames,
      maxSteps: ds.maxT,
      ...labelStats(ds),
      split: { train: split.train.length, val: split.val.length, cal: split.cal.length, test: split.test.length, unit: 'input line (a request and all its candidates)' },
    },
    evaluatedOn: { part: useTest ? 'test split' : 'calibration split', candidates: part.n, baseRate: mean(part.label) },
    scorers,
    compression,
    ...servedSections(res.model, served, part.label),
    training: {
      options: { ...o, threshold: o.threshold },
      phases: res.phases,
      seconds: res.seconds,
      normalisation: { mean: Array.from(res.norm.mean), std: Array.from(res.norm.std) },
      threshold: res.threshold,
    },
    notes,
  };
}

export interface EvalModel {
  name: string;
  model: LoadedModel;
}

/**
 * The report `eval` writes: the model, any comparison models (e.g. the float model a compressed
 * one came from) and the baselines, all on every sample of `ds` (held out from training by the
 * caller). Conformal and routing sections use the model's own calibration and thresholds.
 * Logistic regression is cross-fitted unless a training set is given.
 */
export function evaluationReport(main: EvalModel, compare: EvalModel[], ds: Dataset, opts: { seed: number; train?: Dataset; title?: string }): QualityReport {
  for (const m of [main, ...compare]) {
    if (m.model.inputDim !== ds.D) throw new InvalidInputError(`${m.name}: model input_dim ${m.model.inputDim}, the data has ${ds.D} features per step`);
  }
  const all = Int32Array.from({ length: ds.n }, (_, i) => i);
  const trainDs = opts.train;
  const trainAll = trainDs ? Int32Array.from({ length: trainDs.n }, (_, i) => i) : null;
  const norm = fitNormalisation(trainDs ?? ds, trainAll ?? all);
  const part = makePart(ds, all, norm);
  const trainPart = trainDs && trainAll ? makePart(trainDs, trainAll, norm) : null;
  const mainScores = engineScores(main.model, ds, all);
  const mainResult = scorerResult(main.name, 'model', mainScores, part.label, true);
  const compareResults = compare.map((m) => scorerResult(m.name, 'model', engineScores(m.model, ds, all), part.label, true));
  const base = baselines({ test: part, featureNames: ds.featureNames, D: ds.D, train: trainPart, seed: opts.seed });
  const scorers = [mainResult, ...compareResults, ...base.results];
  const oracle = oracleResult(part);
  if (oracle) scorers.push(oracle);
  const notes = [...base.notes];
  if (!main.model.calibration) notes.push(`${main.name} carries no conformal calibration: no coverage or routing section`);
  const steps = [...compare.map((m, i) => ({ m, r: compareResults[i]! })), { m: main, r: mainResult }];
  return {
    format: 'tiny-dancer/quality-report',
    formatVersion: 1,
    title: opts.title ?? 'tiny-dancer evaluation report',
    definitions: DEFINITIONS,
    model: modelSection(main.model),
    data: { source: ds.source, samples: ds.n, lines: ds.lines, inputDim: ds.D, features: ds.featureNames, maxSteps: ds.maxT, ...labelStats(ds) },
    evaluatedOn: { part: 'all of the evaluation data', candidates: ds.n, baseRate: mean(ds.label) },
    scorers,
    compression: compare.length > 0 ? steps.map(({ m, r }) => compressionStep(m.name, m.model, r, steps[0]!.r)) : [],
    ...servedSections(main.model, mainScores, part.label),
    training: null,
    notes,
  };
}
