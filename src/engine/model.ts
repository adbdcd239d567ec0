// Model files (docs/contracts.md §3): safetensors → a fully validated FastGRNN ready to score.
//
// WHY all the checks up front: a model arrives from disk, from the training job or as bytes
// over the gRPC control plane, and is swapped in under live traffic. `parseModel` either
// returns a model that has been checked end to end — metadata, every tensor's name, dtype and
// shape, the I8 scales, finite values, and a canary forward pass — or throws a ModelError that
// says what is wrong; there is no half-loaded state, so the caller simply keeps the old model.
// The kernel layout (float64, normalisation folded in, low-rank kept or materialised) is built
// here once; `fastgrnn.ts` only runs it. What was STORED (dtype, bytes, sparsity) is kept
// separately for `model inspect`.
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ModelError, errorMessage } from '../errors.js';
import { createScratch, forwardCell, makeCell, scoreRows, type FastGrnnCell, type FastGrnnScratch } from './fastgrnn.js';
import type { Calibration } from './conformal.js';
import { elementCount, readSafetensors, writeSafetensors, type Tensor } from './safetensors.js';

export const MODEL_FORMAT = 'tiny-dancer/fastgrnn';
/** Larger than any sensible router model; a bound so a wrong path cannot exhaust memory. */
export const MAX_MODEL_BYTES = 64 * 1024 * 1024;
export const MAX_INPUT_DIM = 4096;
export const MAX_HIDDEN_DIM = 4096;

export type { Calibration };

export interface ModelThresholds {
  confidence?: number;
  maxUncertainty?: number;
}

/** What a tensor looked like in the file (for `model inspect`). */
export interface StoredTensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Elements. */
  params: number;
  nonZeros: number;
  /** Fraction of exact zeros, 0..1. */
  sparsity: number;
  /** Bytes of tensor data in the file. */
  bytes: number;
  /** For I8 tensors: the value of `<name>.scale`. */
  scale?: number;
}

export interface LoadedModel {
  version: string;
  inputDim: number;
  hiddenDim: number;
  features: string[];
  metadata: Record<string, string>;
  calibration?: Calibration;
  thresholds?: ModelThresholds;
  /** 'full' or 'low-rank' as stored (the kernel may materialise low-rank when cheaper). */
  wKind: 'full' | 'low-rank';
  uKind: 'full' | 'low-rank';
  normalised: boolean;
  /** The kernel's weights. */
  cell: FastGrnnCell;
  /** Default scratch for forward/scoreBatch. A model is used by one thread at a time. */
  scratch: FastGrnnScratch;
  tensors: StoredTensorInfo[];
  /** Size of the file / bytes the model was parsed from. */
  fileBytes: number;
  /** Where it came from (path or a label), for messages. */
  source: string;
}

/** Weight matrices that may be stored as I8 with a `<name>.scale`. */
const MATRIX_NAMES = new Set(['W', 'W1', 'W2', 'U', 'U1', 'U2', 'fc_w']);
const KNOWN = new Set(['W', 'W1', 'W2', 'U', 'U1', 'U2', 'b_z', 'b_h', 'zeta', 'nu', 'fc_w', 'fc_b', 'norm_mean', 'norm_std']);

function intMeta(meta: Record<string, string>, key: string, max: number, where: string): number {
  const raw = meta[key];
  if (raw === undefined) throw new ModelError(`${where}: metadata '${key}' is missing`);
  if (!/^\d+$/.test(raw.trim())) throw new ModelError(`${where}: metadata '${key}' must be a positive integer, got ${JSON.stringify(raw)}`);
  const v = Number(raw.trim());
  if (v < 1 || v > max) throw new ModelError(`${where}: metadata '${key}' must be in 1..${max}, got ${v}`);
  return v;
}

function unitMeta(meta: Record<string, string>, key: string, where: string, lo: number, hi: number, openLo = false, openHi = false): number | undefined {
  const raw = meta[key];
  if (raw === undefined) return undefined;
  const v = raw.trim() === '' ? NaN : Number(raw);
  const ok = Number.isFinite(v) && (openLo ? v > lo : v >= lo) && (openHi ? v < hi : v <= hi);
  if (!ok) throw new ModelError(`${where}: metadata '${key}' must be a number in ${openLo ? '(' : '['}${lo}, ${hi}${openHi ? ')' : ']'}, got ${JSON.stringify(raw)}`);
  return v;
}

/** Float64 copy of a stored weight (F32 as is, I8 × scale). Checks dtype, shape and finiteness. */
function weight(tensors: Map<string, Tensor>, name: string, shape: number[], where: string, infos: StoredTensorInfo[]): Float64Array {
  const t = tensors.get(name);
  if (!t) throw new ModelError(`${where}: tensor '${name}' is missing`);
  const shapeOk = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
  if (!shapeOk) throw new ModelError(`${where}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  const n = elementCount(shape);
  const out = new Float64Array(n);
  let scale: number | undefined;
  if (t.dtype === 'F32') {
    const d = t.data as Float32Array;
    for (let i = 0; i < n; i++) {
      const v = d[i]!;
      if (!Number.isFinite(v)) throw new ModelError(`${where}: tensor '${name}' has a non-finite value at index ${i}`);
      out[i] = v;
    }
  } else if (t.dtype === 'I8' && MATRIX_NAMES.has(name)) {
    const s = tensors.get(`${name}.scale`);
    if (!s) throw new ModelError(`${where}: I8 tensor '${name}' needs an F32 tensor '${name}.scale' of shape [1]`);
    if (s.dtype !== 'F32' || s.shape.length !== 1 || s.shape[0] !== 1) {
      throw new ModelError(`${where}: '${name}.scale' must be F32 of shape [1], got ${s.dtype} [${s.shape.join(', ')}]`);
    }
    scale = (s.data as Float32Array)[0]!;
    if (!Number.isFinite(scale)) throw new ModelError(`${where}: '${name}.scale' is not finite`);
    const d = t.data as Int8Array;
    for (let i = 0; i < n; i++) out[i] = d[i]! * scale;
  } else {
    const allowed = MATRIX_NAMES.has(name) ? 'F32 or I8' : 'F32';
    throw new ModelError(`${where}: tensor '${name}' has dtype ${t.dtype}, must be ${allowed}`);
  }
  const stored = t.data as Float32Array | Int8Array;
  let nz = 0;
  for (let i = 0; i < n; i++) if (stored[i] !== 0) nz++;
  const info: StoredTensorInfo = {
    name, dtype: t.dtype, shape: [...t.shape], params: n, nonZeros: nz,
    sparsity: n === 0 ? 0 : 1 - nz / n, bytes: t.data.byteLength,
  };
  if (scale !== undefined) info.scale = scale;
  infos.push(info);
  return out;
}

function scalar(tensors: Map<string, Tensor>, name: string, where: string, infos: StoredTensorInfo[]): number {
  return weight(tensors, name, [1], where, infos)[0]!;
}

function sigmoid64(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** out (m×p) = A (m×k) · B (k×p), float64 row-major. */
function matmul(A: Float64Array, B: Float64Array, m: number, k: number, p: number): Float64Array {
  const out = new Float64Array(m * p);
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < k; r++) {
      const a = A[i * k + r]!;
      if (a === 0) continue;
      for (let j = 0; j < p; j++) out[i * p + j] = out[i * p + j]! + a * B[r * p + j]!;
    }
  }
  return out;
}

/** Parses and validates a model file's bytes. ModelError (with `source` in it) on anything wrong. */
export function parseModel(bytes: Uint8Array, source = 'model'): LoadedModel {
  const where = source;
  if (bytes.length > MAX_MODEL_BYTES) throw new ModelError(`${where}: ${bytes.length} bytes, the limit is ${MAX_MODEL_BYTES}`);
  let file;
  try {
    file = readSafetensors(bytes, { maxBytes: MAX_MODEL_BYTES });
  } catch (err) {
    throw new ModelError(`${where}: ${errorMessage(err)}`, { cause: err });
  }
  const { tensors, metadata } = file;

  if (metadata.format !== MODEL_FORMAT) {
    throw new ModelError(`${where}: metadata 'format' must be '${MODEL_FORMAT}', got ${metadata.format === undefined ? 'nothing' : JSON.stringify(metadata.format)}`);
  }
  const version = metadata.version;
  if (version === undefined || version.trim() === '') throw new ModelError(`${where}: metadata 'version' is missing or empty`);
  const D = intMeta(metadata, 'input_dim', MAX_INPUT_DIM, where);
  const H = intMeta(metadata, 'hidden_dim', MAX_HIDDEN_DIM, where);

  let features: unknown;
  try {
    features = JSON.parse(metadata.features ?? '');
  } catch {
    throw new ModelError(`${where}: metadata 'features' must be a JSON list of feature names`);
  }
  if (!Array.isArray(features) || !features.every((f) => typeof f === 'string')) {
    throw new ModelError(`${where}: metadata 'features' must be a JSON list of strings`);
  }
  if (features.length !== D) throw new ModelError(`${where}: metadata 'features' lists ${features.length} names, input_dim is ${D}`);

  for (const name of tensors.keys()) {
    const base = name.endsWith('.scale') ? name.slice(0, -'.scale'.length) : name;
    if (!KNOWN.has(base) || (base !== name && !MATRIX_NAMES.has(base))) {
      throw new ModelError(`${where}: unexpected tensor '${name}' (docs/contracts.md §3 names: ${[...KNOWN].join(', ')})`);
    }
    if (base !== name && tensors.get(base)?.dtype !== 'I8') {
      throw new ModelError(`${where}: '${name}' present but '${base}' is not an I8 tensor`);
    }
  }
  const infos: StoredTensorInfo[] = [];

  // W: full or low-rank, never both.
  const hasW = tensors.has('W');
  const hasW12 = tensors.has('W1') || tensors.has('W2');
  if (hasW && hasW12) throw new ModelError(`${where}: both 'W' and low-rank 'W1'/'W2' present; use one form`);
  if (!hasW && !hasW12) throw new ModelError(`${where}: tensor 'W' (or 'W1' and 'W2') is missing`);
  let Wfull: Float64Array | null = null;
  let W1: Float64Array | null = null;
  let W2: Float64Array | null = null;
  let rw = 0;
  if (hasW) {
    Wfull = weight(tensors, 'W', [H, D], where, infos);
  } else {
    const w1 = tensors.get('W1');
    if (!w1 || !tensors.has('W2')) throw new ModelError(`${where}: low-rank W needs both 'W1' and 'W2'`);
    rw = w1.shape[1] ?? 0;
    if (w1.shape.length !== 2 || rw < 1) throw new ModelError(`${where}: tensor 'W1' has shape [${w1.shape.join(', ')}], expected [${H}, rank]`);
    W1 = weight(tensors, 'W1', [H, rw], where, infos);
    W2 = weight(tensors, 'W2', [rw, D], where, infos);
  }

  const hasU = tensors.has('U');
  const hasU12 = tensors.has('U1') || tensors.has('U2');
  if (hasU && hasU12) throw new ModelError(`${where}: both 'U' and low-rank 'U1'/'U2' present; use one form`);
  if (!hasU && !hasU12) throw new ModelError(`${where}: tensor 'U' (or 'U1' and 'U2') is missing`);
  let Ufull: Float64Array | null = null;
  let U1: Float64Array | null = null;
  let U2: Float64Array | null = null;
  let ru = 0;
  if (hasU) {
    Ufull = weight(tensors, 'U', [H, H], where, infos);
  } else {
    const u1 = tensors.get('U1');
    if (!u1 || !tensors.has('U2')) throw new ModelError(`${where}: low-rank U needs both 'U1' and 'U2'`);
    ru = u1.shape[1] ?? 0;
    if (u1.shape.length !== 2 || ru < 1) throw new ModelError(`${where}: tensor 'U1' has shape [${u1.shape.join(', ')}], expected [${H}, rank]`);
    U1 = weight(tensors, 'U1', [H, ru], where, infos);
    U2 = weight(tensors, 'U2', [ru, H], where, infos);
  }

  const bz = weight(tensors, 'b_z', [H], where, infos);
  const bh = weight(tensors, 'b_h', [H], where, infos);
  const zeta = scalar(tensors, 'zeta', where, infos);
  const nu = scalar(tensors, 'nu', where, infos);
  const fcW = weight(tensors, 'fc_w', [1, H], where, infos);
  const fcB = scalar(tensors, 'fc_b', where, infos);

  const hasMean = tensors.has('norm_mean');
  const hasStd = tensors.has('norm_std');
  if (hasMean !== hasStd) throw new ModelError(`${where}: 'norm_mean' and 'norm_std' must come together`);
  if (hasMean) {
    const mean = weight(tensors, 'norm_mean', [D], where, infos);
    const std = weight(tensors, 'norm_std', [D], where, infos);
    for (let j = 0; j < D; j++) {
      if (std[j] === 0) throw new ModelError(`${where}: 'norm_std'[${j}] is 0 (division by zero)`);
    }
    // Fold (x − m)/s into the input projection: W' = W·diag(1/s), b' = b − W'·m.
    const target = Wfull ?? W2!;
    const rows = Wfull ? H : rw;
    for (let r = 0; r < rows; r++) for (let j = 0; j < D; j++) target[r * D + j] = target[r * D + j]! / std[j]!;
    const shift = new Float64Array(H);
    if (Wfull) {
      for (let i = 0; i < H; i++) { let s = 0; for (let j = 0; j < D; j++) s += Wfull[i * D + j]! * mean[j]!; shift[i] = s; }
    } else {
      const t = new Float64Array(rw);
      for (let r = 0; r < rw; r++) { let s = 0; for (let j = 0; j < D; j++) s += W2![r * D + j]! * mean[j]!; t[r] = s; }
      for (let i = 0; i < H; i++) { let s = 0; for (let r = 0; r < rw; r++) s += W1![i * rw + r]! * t[r]!; shift[i] = s; }
    }
    for (let i = 0; i < H; i++) { bz[i] = bz[i]! - shift[i]!; bh[i] = bh[i]! - shift[i]!; }
  }

  // Keep low-rank factors only when they are cheaper per step than the product.
  const wKind = hasW ? 'full' : 'low-rank';
  const uKind = hasU ? 'full' : 'low-rank';
  if (!Wfull && rw * (D + H) >= H * D) { Wfull = matmul(W1!, W2!, H, rw, D); W1 = W2 = null; rw = 0; }
  if (!Ufull && ru * 2 * H >= H * H) { Ufull = matmul(U1!, U2!, H, ru, H); U1 = U2 = null; ru = 0; }

  const cell: FastGrnnCell = makeCell({
    inputDim: D, hiddenDim: H, W: Wfull, W1, W2, rw, U: Ufull, U1, U2, ru,
    bz, bh, zetaS: sigmoid64(zeta), nuS: sigmoid64(nu), fcW, fcB,
  });
  for (const arr of [cell.W, cell.W1, cell.W2, cell.U, cell.U1, cell.U2, bz, bh]) {
    if (arr) for (let i = 0; i < arr.length; i++) if (!Number.isFinite(arr[i]!)) throw new ModelError(`${where}: weights overflow after normalisation folding`);
  }

  const meta = { ...metadata };
  const model: LoadedModel = {
    version,
    inputDim: D,
    hiddenDim: H,
    features: features as string[],
    metadata: meta,
    wKind,
    uKind,
    normalised: hasMean,
    cell,
    scratch: createScratch(cell),
    tensors: infos,
    fileBytes: bytes.length,
    source,
  };

  const alpha = unitMeta(metadata, 'conformal_alpha', where, 0, 1, true, true);
  const qhat = unitMeta(metadata, 'conformal_qhat', where, 0, 1);
  const calN = metadata.calibration_n;
  const present = [alpha !== undefined, qhat !== undefined, calN !== undefined];
  if (present.some(Boolean)) {
    if (!present.every(Boolean)) throw new ModelError(`${where}: calibration needs all of 'conformal_alpha', 'conformal_qhat', 'calibration_n'`);
    const n = intMeta(metadata, 'calibration_n', Number.MAX_SAFE_INTEGER, where);
    model.calibration = { alpha: alpha!, qhat: qhat!, n };
  }
  const confidence = unitMeta(metadata, 'confidence_threshold', where, 0, 1);
  const maxUncertainty = unitMeta(metadata, 'max_uncertainty', where, 0, 1);
  if (confidence !== undefined || maxUncertainty !== undefined) {
    model.thresholds = {};
    if (confidence !== undefined) model.thresholds.confidence = confidence;
    if (maxUncertainty !== undefined) model.thresholds.maxUncertainty = maxUncertainty;
  }

  // Canary: the cell must give a finite score on plain inputs (zeros, ones, and a sequence).
  // Float32Array like the router's feature rows, so the kernel's first (IC-warming) call sees them.
  const probe = new Float32Array(2 * D);
  const s0 = forwardCell(cell, probe, 1, model.scratch);
  probe.fill(1);
  const s1 = forwardCell(cell, probe, 2, model.scratch);
  if (!Number.isFinite(s0) || !Number.isFinite(s1)) throw new ModelError(`${where}: canary forward pass is not finite`);
  return model;
}

/** Reads and parses a model file. The one place the engine touches the file system. */
export function loadModelFile(path: string): LoadedModel {
  let bytes: Uint8Array;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ModelError(`${path}: not a regular file`);
    if (st.size > MAX_MODEL_BYTES) throw new ModelError(`${path}: ${st.size} bytes, the limit is ${MAX_MODEL_BYTES}`);
    bytes = readFileSync(path);
  } catch (err) {
    if (err instanceof ModelError) throw err;
    throw new ModelError(`cannot read model file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  return parseModel(bytes, path);
}

/**
 * `models/default.safetensors` of the package. This file sits two levels below the package
 * root both as src/engine/model.ts (tsx, vitest) and as dist/engine/model.js (built).
 */
export function defaultModelPath(): string {
  return fileURLToPath(new URL('../../models/default.safetensors', import.meta.url));
}

/**
 * The §3 cell over one sequence: `steps` inputs of inputDim values packed in x. Uses the
 * model's own scratch unless one is given (one per thread).
 */
export function forward(model: LoadedModel, x: Float32Array | Float64Array, steps: number, scratch: FastGrnnScratch = model.scratch): number {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be an integer >= 1, got ${steps}`);
  if (x.length < steps * model.inputDim) throw new RangeError(`x has ${x.length} values, ${steps} steps of ${model.inputDim} need ${steps * model.inputDim}`);
  return forwardCell(model.cell, x, steps, scratch);
}

/** T = 1 per candidate: n feature rows of inputDim values → n scores. */
export function scoreBatch(model: LoadedModel, features: Float32Array, n: number, out: Float32Array): void {
  scoreRows(model.cell, features, n, out, model.scratch);
}

// ---------------------------------------------------------------------------------------------
// Writing models (used by the default-model script, tests and the trainer).

export interface ModelParams {
  inputDim: number;
  hiddenDim: number;
  features: readonly string[];
  version: string;
  /** Either W (H×D) or W1 (H×rw) and W2 (rw×D), row-major. */
  W?: ArrayLike<number>;
  W1?: ArrayLike<number>;
  W2?: ArrayLike<number>;
  rankW?: number;
  U?: ArrayLike<number>;
  U1?: ArrayLike<number>;
  U2?: ArrayLike<number>;
  rankU?: number;
  bz: ArrayLike<number>;
  bh: ArrayLike<number>;
  zeta: number;
  nu: number;
  fcW: ArrayLike<number>;
  fcB: number;
  normMean?: ArrayLike<number>;
  normStd?: ArrayLike<number>;
  /** Weight matrices to store as I8 (symmetric, scale = max|w| / 127). */
  quantize?: readonly ('W' | 'W1' | 'W2' | 'U' | 'U1' | 'U2' | 'fc_w')[];
  calibration?: Calibration;
  thresholds?: ModelThresholds;
  /** Extra metadata (strings). */
  metadata?: Record<string, string>;
}

function f32(name: string, shape: number[], values: ArrayLike<number>): [string, Tensor] {
  const n = elementCount(shape);
  if (values.length !== n) throw new ModelError(`cannot write model: '${name}' needs ${n} values, got ${values.length}`);
  return [name, { dtype: 'F32', shape, data: Float32Array.from(values) }];
}

/** Symmetric int8 quantisation: q = round(w / s), s = max|w| / 127 (s = 1 for an all-zero matrix). */
export function quantizeI8(values: ArrayLike<number>): { q: Int8Array; scale: number } {
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]!));
  const scale = max > 0 ? Math.fround(max / 127) : 1;
  const q = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) q[i] = Math.max(-127, Math.min(127, Math.round(values[i]! / scale)));
  return { q, scale };
}

/** Serialises a FastGRNN to docs/contracts.md §3 safetensors bytes (validated by parsing them back). */
export function encodeModel(p: ModelParams): Uint8Array {
  const { inputDim: D, hiddenDim: H } = p;
  const entries: [string, Tensor][] = [];
  const quant = new Set(p.quantize ?? []);
  const matrix = (name: 'W' | 'W1' | 'W2' | 'U' | 'U1' | 'U2' | 'fc_w', shape: number[], values: ArrayLike<number>) => {
    if (quant.has(name)) {
      if (values.length !== elementCount(shape)) throw new ModelError(`cannot write model: '${name}' needs ${elementCount(shape)} values, got ${values.length}`);
      const { q, scale } = quantizeI8(values);
      entries.push([name, { dtype: 'I8', shape, data: q }]);
      entries.push([`${name}.scale`, { dtype: 'F32', shape: [1], data: Float32Array.of(scale) }]);
    } else entries.push(f32(name, shape, values));
  };
  if (p.W) matrix('W', [H, D], p.W);
  else if (p.W1 && p.W2 && p.rankW) { matrix('W1', [H, p.rankW], p.W1); matrix('W2', [p.rankW, D], p.W2); }
  else throw new ModelError('cannot write model: W or W1, W2 and rankW are required');
  if (p.U) matrix('U', [H, H], p.U);
  else if (p.U1 && p.U2 && p.rankU) { matrix('U1', [H, p.rankU], p.U1); matrix('U2', [p.rankU, H], p.U2); }
  else throw new ModelError('cannot write model: U or U1, U2 and rankU are required');
  entries.push(f32('b_z', [H], p.bz), f32('b_h', [H], p.bh), f32('zeta', [1], [p.zeta]), f32('nu', [1], [p.nu]));
  matrix('fc_w', [1, H], p.fcW);
  entries.push(f32('fc_b', [1], [p.fcB]));
  if (p.normMean || p.normStd) {
    if (!p.normMean || !p.normStd) throw new ModelError('cannot write model: normMean and normStd go together');
    entries.push(f32('norm_mean', [D], p.normMean), f32('norm_std', [D], p.normStd));
  }
  const metadata: Record<string, string> = {
    ...(p.metadata ?? {}),
    format: MODEL_FORMAT,
    version: p.version,
    input_dim: String(D),
    hidden_dim: String(H),
    features: JSON.stringify(p.features),
  };
  if (p.calibration) {
    metadata.conformal_alpha = String(p.calibration.alpha);
    metadata.conformal_qhat = String(p.calibration.qhat);
    metadata.calibration_n = String(p.calibration.n);
  }
  if (p.thresholds?.confidence !== undefined) metadata.confidence_threshold = String(p.thresholds.confidence);
  if (p.thresholds?.maxUncertainty !== undefined) metadata.max_uncertainty = String(p.thresholds.maxUncertainty);
  const bytes = writeSafetensors(new Map(entries), metadata);
  parseModel(bytes, `model ${p.version}`);
  return bytes;
}
