// Training data: JSON lines in, packed float64 samples out, plus the seeded split and the
// normalisation fitted on the training part.
//
// A line is one of (blank lines are skipped; anything else that does not parse is an error that
// names the line, and the whole load fails — a trainer that silently drops rows trains on a
// different distribution than the user thinks):
//   {"features": [f1, …, fD], "label": 0|1}              one step
//   {"features": [[…], [...], …], "label": 0|1}          a sequence of steps (T ≥ 1)
//   a RoutingRequest (docs/contracts.md §1) whose candidates each carry "label": 0|1 — validated by the
//   engine's validateRequest and turned into one sample per candidate by extractFeatures, so the
//   model learns on exactly the features the router computes. An optional top-level "now"
//   (Unix seconds, when the request was routed) fixes the clock for recency; otherwise
//   `--now`, otherwise the current time.
// Every sample may carry "soft_label" (a teacher's probability in [0, 1]; distillation) and
// "p_true" (the known probability of label 1, only synthetic data has it: the report then shows
// the Bayes-optimal "oracle" scorer as a ceiling). `label` may also be true/false.
import { createReadStream, statSync } from 'node:fs';
import { InvalidInputError, errorMessage } from '../errors.js';
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, FEATURE_NAMES, extractFeatures, type FeatureConfig } from '../engine/features.js';
import { validateRequest } from '../engine/validate.js';
import { LineTooLongError, readLines } from '../triage/lines.js';
import type { Rng } from './rng.js';

export type DataSource = 'features' | 'requests';

export interface Dataset {
  D: number;
  featureNames: string[];
  source: DataSource;
  /** Samples. */
  n: number;
  /** Raw feature values (float32-rounded, as the engine sees them); sample i's steps at start[i]. */
  x: Float64Array;
  /** Value offset of sample i in x. */
  start: Int32Array;
  steps: Int32Array;
  label: Float64Array;
  /** Teacher probabilities, NaN where a sample has none; null when no sample has one. */
  soft: Float64Array | null;
  /** Known P(label = 1) (synthetic data), NaN where absent; null when no sample has one. */
  pTrue: Float64Array | null;
  /** 1-based input line of each sample: the unit of splitting (a request's candidates stay together). */
  line: Int32Array;
  maxT: number;
  /** Input lines that produced samples. */
  lines: number;
}

class Grow {
  data: Float64Array;
  length = 0;
  constructor(cap = 1024) {
    this.data = new Float64Array(cap);
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  take(): Float64Array {
    return this.data.slice(0, this.length);
  }
}

export interface ParseOptions {
  /** Clock (Unix seconds) for recency when a request line has no "now". */
  now?: number;
  featureConfig?: FeatureConfig;
  /** Names for feature-vector lines; default: FEATURE_NAMES when D = 5, else f0…f{D-1}. */
  featureNames?: string[];
}

function fail(line: number, what: string): never {
  throw new InvalidInputError(`line ${line}: ${what}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseLabel(line: number, where: string, v: unknown): 0 | 1 {
  if (v === 0 || v === false) return 0;
  if (v === 1 || v === true) return 1;
  return fail(line, `${where}label must be 0 or 1 (or true/false), got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
}

function parseProb(line: number, where: string, key: string, v: unknown): number {
  if (v === undefined || v === null) return NaN;
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(line, `${where}${key} must be a number in [0, 1], got ${JSON.stringify(v)}`);
  return v;
}

/** Incrementally builds a Dataset from parsed lines (exported for tests and the generator). */
export class DatasetBuilder {
  private readonly x = new Grow(4096);
  private readonly start: number[] = [];
  private readonly steps: number[] = [];
  private readonly label: number[] = [];
  private readonly soft: number[] = [];
  private readonly pTrue: number[] = [];
  private readonly lineOf: number[] = [];
  private D = 0;
  private source: DataSource | null = null;
  private maxT = 0;
  private anySoft = false;
  private anyTrue = false;
  private lineCount = 0;
  private feat = new Float32Array(0);

  constructor(private readonly opts: ParseOptions = {}) {}

  get samples(): number {
    return this.label.length;
  }

  private setSource(line: number, source: DataSource, D: number): void {
    if (this.source === null) {
      this.source = source;
      this.D = D;
      return;
    }
    if (this.source !== source) {
      fail(line, `is a ${source === 'requests' ? 'RoutingRequest' : 'feature'} line, earlier lines are ${this.source === 'requests' ? 'RoutingRequests' : 'feature lines'}; one file holds one kind`);
    }
    if (this.D !== D) fail(line, `has ${D} features per step, earlier lines have ${this.D}`);
  }

  private sample(line: number, label: number, soft: number, pTrue: number, steps: number): void {
    this.start.push(this.x.length - steps * this.D);
    this.steps.push(steps);
    this.label.push(label);
    this.soft.push(soft);
    this.pTrue.push(pTrue);
    this.lineOf.push(line);
    if (!Number.isNaN(soft)) this.anySoft = true;
    if (!Number.isNaN(pTrue)) this.anyTrue = true;
    if (steps > this.maxT) this.maxT = steps;
  }

  private pushValue(line: number, where: string, v: unknown): void {
    if (typeof v !== 'number') fail(line, `${where} is ${v === null ? 'null' : typeof v}, not a number`);
    const f = Math.fround(v);
    if (!Number.isFinite(f)) fail(line, `${where} is ${v}, not a finite float32`);
    this.x.push(f);
  }

  /** Adds one parsed JSON value from input line `line` (1-based). */
  add(obj: unknown, line: number): void {
    if (!isRecord(obj)) fail(line, `must be a JSON object, got ${Array.isArray(obj) ? 'an array' : JSON.stringify(obj)}`);
    if ('features' in obj) this.addFeatures(obj, line);
    else if ('candidates' in obj || 'query_embedding' in obj) this.addRequest(obj, line);
    else fail(line, 'needs "features" and "label", or a RoutingRequest whose candidates carry "label"');
    this.lineCount++;
  }

  private addFeatures(obj: Record<string, unknown>, line: number): void {
    const f = obj.features;
    if (!Array.isArray(f) || f.length === 0) fail(line, 'features must be a non-empty array of numbers or of arrays of numbers');
    const label = parseLabel(line, '', obj.label);
    const soft = parseProb(line, '', 'soft_label', obj.soft_label);
    const pTrue = parseProb(line, '', 'p_true', obj.p_true);
    if (Array.isArray(f[0])) {
      const D = (f[0] as unknown[]).length;
      if (D === 0) fail(line, 'features[0] is empty');
      this.setSource(line, 'features', D);
      for (let t = 0; t < f.length; t++) {
        const step = f[t];
        if (!Array.isArray(step)) fail(line, `features[${t}] is not an array (a sequence is a list of feature vectors)`);
        if (step.length !== D) fail(line, `features[${t}] has ${step.length} values, features[0] has ${D}`);
        for (let j = 0; j < D; j++) this.pushValue(line, `features[${t}][${j}]`, step[j]);
      }
      this.sample(line, label, soft, pTrue, f.length);
    } else {
      this.setSource(line, 'features', f.length);
      for (let j = 0; j < f.length; j++) this.pushValue(line, `features[${j}]`, f[j]);
      this.sample(line, label, soft, pTrue, 1);
    }
  }

  private addRequest(obj: Record<string, unknown>, line: number): void {
    let req;
    try {
      req = validateRequest(obj);
    } catch (err) {
      fail(line, errorMessage(err));
    }
    this.setSource(line, 'requests', FEATURE_COUNT);
    const cands = obj.candidates as Record<string, unknown>[];
    const labels: number[] = [];
    const softs: number[] = [];
    const trues: number[] = [];
    for (let i = 0; i < cands.length; i++) {
      const c = cands[i]!;
      const where = `candidates[${i}] (id ${JSON.stringify(c.id)}): `;
      labels.push(parseLabel(line, where, c.label));
      softs.push(parseProb(line, where, 'soft_label', c.soft_label));
      trues.push(parseProb(line, where, 'p_true', c.p_true));
    }
    let now = this.opts.now ?? Date.now() / 1000;
    if (obj.now !== undefined) {
      if (typeof obj.now !== 'number' || !Number.isFinite(obj.now)) fail(line, `now must be Unix seconds, got ${JSON.stringify(obj.now)}`);
      now = obj.now;
    }
    if (this.feat.length < req.n * FEATURE_COUNT) this.feat = new Float32Array(req.n * FEATURE_COUNT);
    extractFeatures(req, this.opts.featureConfig ?? DEFAULT_FEATURE_CONFIG, this.feat, now);
    for (let i = 0; i < req.n; i++) {
      for (let j = 0; j < FEATURE_COUNT; j++) this.x.push(this.feat[i * FEATURE_COUNT + j]!);
      this.sample(line, labels[i]!, softs[i]!, trues[i]!, 1);
    }
  }

  build(): Dataset {
    const n = this.label.length;
    if (n === 0) throw new InvalidInputError('no samples: the data has no non-blank lines');
    const D = this.D;
    let names: string[];
    if (this.source === 'requests') names = [...FEATURE_NAMES];
    else if (this.opts.featureNames) {
      if (this.opts.featureNames.length !== D) {
        throw new InvalidInputError(`--feature-names lists ${this.opts.featureNames.length} names, the data has ${D} features`);
      }
      names = [...this.opts.featureNames];
    } else names = D === FEATURE_COUNT ? [...FEATURE_NAMES] : Array.from({ length: D }, (_, j) => `f${j}`);
    return {
      D,
      featureNames: names,
      source: this.source!,
      n,
      x: this.x.take(),
      start: Int32Array.from(this.start),
      steps: Int32Array.from(this.steps),
      label: Float64Array.from(this.label),
      soft: this.anySoft ? Float64Array.from(this.soft) : null,
      pTrue: this.anyTrue ? Float64Array.from(this.pTrue) : null,
      line: Int32Array.from(this.lineOf),
      maxT: this.maxT,
      lines: this.lineCount,
    };
  }
}

export interface LoadProgress {
  (linesDone: number, bytesDone: number, bytesTotal: number): void;
}

/** Reads a JSON-lines file into a Dataset. InvalidInputError naming the line on bad input. */
export async function loadDataset(path: string, opts: ParseOptions = {}, progress?: LoadProgress): Promise<Dataset> {
  let total: number;
  try {
    total = statSync(path).size;
  } catch (err) {
    throw new InvalidInputError(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const builder = new DatasetBuilder(opts);
  const dec = new TextDecoder('utf-8', { fatal: true });
  for await (const item of readLines(createReadStream(path), { maxLineBytes: 256 * 1024 * 1024 })) {
    if (item instanceof LineTooLongError) throw item;
    const text = dec.decode(item.bytes).trim();
    if (text.length > 0) {
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (err) {
        throw new InvalidInputError(`line ${item.number}: not valid JSON (${errorMessage(err)})`);
      }
      builder.add(obj, item.number);
    }
    if (progress && (item.number & 255) === 0) progress(item.number, item.offset, total);
  }
  return builder.build();
}

/** Parses JSON-lines text (for tests and small inputs). */
export function parseDatasetText(text: string, opts: ParseOptions = {}): Dataset {
  const builder = new DatasetBuilder(opts);
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i]!.trim();
    if (t.length === 0) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(t);
    } catch (err) {
      throw new InvalidInputError(`line ${i + 1}: not valid JSON (${errorMessage(err)})`);
    }
    builder.add(obj, i + 1);
  }
  return builder.build();
}

// ---------------------------------------------------------------------------------------------
// Splitting and normalisation

export interface SplitFractions {
  val: number;
  cal: number;
  test: number;
}

/** Sample indices of each part. Whole input lines are assigned, in a seeded random order. */
export interface SplitIndices {
  train: Int32Array;
  val: Int32Array;
  cal: Int32Array;
  test: Int32Array;
}

export function splitDataset(ds: Dataset, f: SplitFractions, rng: Rng): SplitIndices {
  // Distinct lines in order of appearance, then a seeded permutation of them.
  const lineIds: number[] = [];
  for (let i = 0; i < ds.n; i++) if (i === 0 || ds.line[i] !== ds.line[i - 1]) lineIds.push(ds.line[i]!);
  const L = lineIds.length;
  const perm = Int32Array.from({ length: L }, (_, i) => i);
  rng.shuffle(perm);
  const nTest = Math.round(L * f.test);
  const nCal = Math.round(L * f.cal);
  const nVal = Math.round(L * f.val);
  const part = new Map<number, number>(); // line → 0 train, 1 val, 2 cal, 3 test
  for (let r = 0; r < L; r++) {
    const line = lineIds[perm[r]!]!;
    part.set(line, r < nTest ? 3 : r < nTest + nCal ? 2 : r < nTest + nCal + nVal ? 1 : 0);
  }
  const parts: number[][] = [[], [], [], []];
  for (let i = 0; i < ds.n; i++) parts[part.get(ds.line[i]!)!]!.push(i);
  return {
    train: Int32Array.from(parts[0]!),
    val: Int32Array.from(parts[1]!),
    cal: Int32Array.from(parts[2]!),
    test: Int32Array.from(parts[3]!),
  };
}

export interface Normalisation {
  /** float32-rounded: exactly what the model file stores. */
  mean: Float64Array;
  std: Float64Array;
}

/**
 * Per-feature mean and standard deviation over every step of the given samples. A (nearly)
 * constant feature gets std 1 rather than a huge scale-up of rounding noise. Rounded to float32
 * before use, so training normalises with exactly the values the file will carry.
 */
export function fitNormalisation(ds: Dataset, idx: Int32Array): Normalisation {
  const D = ds.D;
  const mean = new Float64Array(D);
  const m2 = new Float64Array(D);
  let count = 0;
  for (const i of idx) {
    const T = ds.steps[i]!;
    for (let t = 0; t < T; t++) {
      const o = ds.start[i]! + t * D;
      count++;
      for (let j = 0; j < D; j++) {
        // Welford, so large offsets (timestamps as features) do not lose precision.
        const v = ds.x[o + j]!;
        const d = v - mean[j]!;
        mean[j] = mean[j]! + d / count;
        m2[j] = m2[j]! + d * (v - mean[j]!);
      }
    }
  }
  const std = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    const s = count > 1 ? Math.sqrt(m2[j]! / (count - 1)) : 0;
    std[j] = Math.fround(s > 1e-6 * Math.max(1, Math.abs(mean[j]!)) ? s : 1);
    mean[j] = Math.fround(mean[j]!);
  }
  return { mean, std };
}

/** One part of the data, normalised and packed for the trainer. */
export interface Part {
  n: number;
  /** Normalised steps. */
  x: Float64Array;
  start: Int32Array;
  steps: Int32Array;
  label: Float64Array;
  soft: Float64Array | null;
  pTrue: Float64Array | null;
  /** Per sample, the mean over steps of the RAW features (= the row when T = 1): for baselines. */
  rawRows: Float64Array;
  /** The same, normalised. */
  normRows: Float64Array;
}

export function makePart(ds: Dataset, idx: Int32Array, norm: Normalisation): Part {
  const D = ds.D;
  const n = idx.length;
  let total = 0;
  for (const i of idx) total += ds.steps[i]!;
  const x = new Float64Array(total * D);
  const start = new Int32Array(n);
  const steps = new Int32Array(n);
  const label = new Float64Array(n);
  const soft = ds.soft ? new Float64Array(n) : null;
  const pTrue = ds.pTrue ? new Float64Array(n) : null;
  const rawRows = new Float64Array(n * D);
  const normRows = new Float64Array(n * D);
  let o = 0;
  for (let k = 0; k < n; k++) {
    const i = idx[k]!;
    const T = ds.steps[i]!;
    start[k] = o;
    steps[k] = T;
    label[k] = ds.label[i]!;
    if (soft) soft[k] = ds.soft![i]!;
    if (pTrue) pTrue[k] = ds.pTrue![i]!;
    for (let t = 0; t < T; t++) {
      const src = ds.start[i]! + t * D;
      for (let j = 0; j < D; j++) {
        const raw = ds.x[src + j]!;
        x[o + j] = (raw - norm.mean[j]!) / norm.std[j]!;
        rawRows[k * D + j] = rawRows[k * D + j]! + raw / T;
      }
      o += D;
    }
    for (let j = 0; j < D; j++) normRows[k * D + j] = (rawRows[k * D + j]! - norm.mean[j]!) / norm.std[j]!;
  }
  return { n, x, start, steps, label, soft, pTrue, rawRows, normRows };
}
