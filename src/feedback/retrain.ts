// The retraining pipeline: logged decisions with outcomes → a training set → a candidate model
// trained and calibrated by TRAIN's pipeline (src/train/trainer.ts, the same code as
// `tiny-dancer train`) → the candidate and the serving model evaluated on the same held-out
// slice of the MOST RECENT outcomes → the promotion gate's verdict. No I/O beyond the database
// read: writing files, the registry and the control plane are the command's business
// (src/cli/commands/retrain.ts), so this part is testable on its own.
import { FEATURE_COUNT, FEATURE_NAMES } from '../engine/features.js';
import { parseModel, type LoadedModel } from '../engine/model.js';
import { TinyDancerError } from '../errors.js';
import { DatasetBuilder } from '../train/data.js';
import { trainModel, type TrainOptions } from '../train/trainer.js';
import type pg from 'pg';
import { loadFeedbackSet, packFeatures, splitByRecency, type FeedbackExample } from './dataset.js';
import { evaluateModel, type ModelEvaluation } from './evaluate.js';
import { evaluateGates, type GateOptions, type GateVerdict } from './gate.js';
import { DEFAULT_LABEL_OPTIONS, type LabelOptions } from './label.js';

/** Not enough data to retrain (exit 1 in the CLI, with this message). */
export class NotEnoughDataError extends TinyDancerError {}

export interface RetrainOptions {
  pool: Pick<pg.Pool, 'query'>;
  schema?: string;
  /** Outcomes received in the last windowMs. */
  windowMs: number;
  /** Fewest labelled examples (with features) to train on. */
  minCount: number;
  /** Share of requests, the most recent, held out for the comparison. */
  holdout: number;
  /** Quality-loss budget of the lightweight-share gate. Default 0.02. */
  budget?: number;
  /** Conformal α of the candidate; default the serving model's, else 0.1. */
  alpha?: number;
  label?: LabelOptions;
  gate?: Partial<GateOptions>;
  /** Passed to TRAIN's trainModel (seed, hidden, epochs...). */
  train?: Partial<TrainOptions>;
  /** The model serving now, the baseline of the gate (absent: first model). */
  serving?: LoadedModel;
  /** Evaluate these model bytes instead of training one (e.g. a model trained elsewhere). */
  candidateBytes?: Uint8Array;
  now?: Date;
  progress?: (message: string) => void;
}

export interface RetrainData {
  from: string;
  to: string;
  /** Outcomes joined to decisions in the window. */
  joined: number;
  examples: number;
  skipped: { no_label: number; no_features: number; bad_features: number };
  train: number;
  holdout: number;
  /** The held-out slice: outcomes received from this time on (by request). */
  holdoutFrom: string | null;
  trainPositiveShare: number;
  holdoutPositiveShare: number;
}

export interface RetrainResult {
  candidate: {
    version: string;
    bytes: Uint8Array;
    model: LoadedModel;
    trained: boolean;
    calibration: { alpha: number; qhat: number; n: number } | null;
    training?: { seconds: number; samples: number; train: number; val: number; cal: number; epochs: number[]; notes: string[] };
  };
  serving: { version: string } | null;
  alpha: number;
  data: RetrainData;
  evaluation: { candidate: ModelEvaluation; serving: ModelEvaluation | null };
  verdict: GateVerdict;
}

function positiveShare(ex: readonly FeedbackExample[]): number {
  let p = 0;
  for (const e of ex) p += e.label;
  return ex.length === 0 ? 0 : p / ex.length;
}

function labels(ex: readonly FeedbackExample[]): Uint8Array {
  return Uint8Array.from(ex, (e) => e.label);
}

export async function retrainCandidate(opts: RetrainOptions): Promise<RetrainResult> {
  const say = opts.progress ?? (() => {});
  const budget = opts.budget ?? 0.02;
  const alpha = opts.alpha ?? opts.serving?.calibration?.alpha ?? 0.1;
  const set = await loadFeedbackSet(opts.pool, {
    ...(opts.schema === undefined ? {} : { schema: opts.schema }),
    windowMs: opts.windowMs,
    ...(opts.now === undefined ? {} : { to: opts.now }),
    label: opts.label ?? DEFAULT_LABEL_OPTIONS,
  });
  const sk = set.skipped;
  say(
    `${set.joined} outcomes joined to decisions since ${set.from.toISOString()}: ${set.examples.length} labelled with features` +
      ` (skipped: ${sk.no_label} without a lightweight label, ${sk.no_features} without features, ${sk.bad_features} with bad features)`,
  );
  if (set.examples.length < opts.minCount) {
    throw new NotEnoughDataError(
      `not enough outcomes to retrain: ${set.examples.length} labelled examples with features since ${set.from.toISOString()}, --min-count is ${opts.minCount}`,
    );
  }
  const split = splitByRecency(set.examples, opts.holdout);
  const holdoutFrom = split.holdout.reduce<Date | null>((m, e) => (m === null || e.received_at < m ? e.received_at : m), null);

  let candidate: RetrainResult['candidate'];
  if (opts.candidateBytes) {
    const model = parseModel(opts.candidateBytes, 'candidate');
    candidate = { version: model.version, bytes: opts.candidateBytes, model, trained: false, calibration: model.calibration ?? null };
    say(`candidate ${model.version} given, not trained`);
  } else {
    // TRAIN's dataset, one line per request so its own split keeps a request's candidates together.
    const builder = new DatasetBuilder({ featureNames: [...FEATURE_NAMES] });
    const lineOf = new Map<string, number>();
    for (const e of split.train) {
      let line = lineOf.get(e.request_id);
      if (line === undefined) lineOf.set(e.request_id, (line = lineOf.size + 1));
      builder.add({ features: Array.from(e.features), label: e.label }, line);
    }
    const ds = builder.build();
    say(`training on ${ds.n} examples from ${lineOf.size} requests (α = ${alpha})`);
    // No test part: the held-out comparison below is the test, on the most recent outcomes.
    // A large calibration part: q̂ sets the coverage the gate and the monitor hold the model to,
    // and its sampling error shrinks with the calibration set (sd ≈ sqrt(α(1 − α)/n)).
    const result = trainModel(ds, { alpha, testFraction: 0, calFraction: 0.3, ...(opts.train ?? {}) });
    candidate = {
      version: result.model.version,
      bytes: result.bytes,
      model: result.model,
      trained: true,
      calibration: result.calibration,
      training: {
        seconds: result.seconds,
        samples: ds.n,
        train: result.split.train.length,
        val: result.split.val.length,
        cal: result.split.cal.length,
        epochs: result.phases.map((p) => p.epochsRun),
        notes: result.notes,
      },
    };
    say(`trained ${candidate.version} in ${result.seconds.toFixed(1)} s (q̂ = ${result.calibration.qhat.toFixed(4)} over ${result.calibration.n})`);
  }
  if (candidate.model.inputDim !== FEATURE_COUNT) {
    throw new TinyDancerError(`candidate ${candidate.version} takes ${candidate.model.inputDim} inputs; the router's features are ${FEATURE_COUNT}`);
  }

  const x = packFeatures(split.holdout);
  const y = labels(split.holdout);
  const candEval = evaluateModel(candidate.model, x, y, budget);
  const servEval = opts.serving ? evaluateModel(opts.serving, x, y, budget) : null;
  const verdict = evaluateGates(candEval, servEval ?? undefined, alpha, opts.gate ?? {});
  return {
    candidate,
    serving: opts.serving ? { version: opts.serving.version } : null,
    alpha,
    data: {
      from: set.from.toISOString(),
      to: set.to.toISOString(),
      joined: set.joined,
      examples: set.examples.length,
      skipped: set.skipped,
      train: split.train.length,
      holdout: split.holdout.length,
      holdoutFrom: holdoutFrom?.toISOString() ?? null,
      trainPositiveShare: positiveShare(split.train),
      holdoutPositiveShare: positiveShare(split.holdout),
    },
    evaluation: { candidate: candEval, serving: servEval },
    verdict,
  };
}

/** The JSON report retrain writes (and stores as the candidate's registry metrics). */
export function retrainReport(r: RetrainResult): Record<string, unknown> {
  const { bytes: _b, model: _m, ...candidate } = r.candidate;
  return {
    kind: 'retrain',
    candidate,
    serving: r.serving,
    alpha: r.alpha,
    data: r.data,
    evaluation: r.evaluation,
    gates: r.verdict,
  };
}
