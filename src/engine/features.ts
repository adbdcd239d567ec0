// Per-candidate feature extraction: the five signals the FastGRNN (and the seed's fixed
// weighted sum) score.
//
// WHY these exact definitions — each is per-candidate (no dependence on the other candidates
// of the request, so a candidate scores the same alone or in a batch of 1000) and, except
// similarity, bounded in [0, 1]:
//   similarity       cosine(query, embedding) in [-1, 1]; 0 when either vector has norm 0.
//   recency          exp(-decay · age_seconds), age = now − created_at in SECONDS (the unit of
//                    created_at in docs/contracts.md §1). The seed's default decay 0.001/s gives a half-life
//                    of ln 2 / 0.001 ≈ 693 s ≈ 11.5 min. Future-dated items clamp to age 0 (→ 1).
//   frequency        min(1, log1p(access_count) / log1p(frequencySaturation)), saturation 10 000
//                    by default: 0 accesses → 0, 10 000+ → 1, log-spaced between.
//   success_rate     as given, [0, 1].
//   metadata_overlap the fraction of the request's metadata pairs (key and value) that the
//                    candidate's metadata repeats exactly; 0 when the request has no metadata.
//                    A containment ratio rather than a symmetric Jaccard index on purpose:
//                    candidates carry extra metadata through to the decision (model names,
//                    costs…) and that must not dilute the score.
// The hot part is cosine over 384+ dims, hence `cosineBatch` over one packed buffer; its body
// is a plain scalar loop here and may be swapped for a WASM SIMD path behind the same name.
import { ConfigError } from '../errors.js';
import { completeFiniteCheck, type ValidatedRequest } from './validate.js';
import { cosineBatchSimd, simdAvailable } from './simd/cosine.js';

/**
 * PERF: log1p(k) for the access counts most candidates have (small integers), looked up instead
 * of computed; the table holds Math.log1p's own values, so the feature is bit-for-bit the same.
 */
const LOG1P_TABLE = Float64Array.from({ length: 4096 }, (_, k) => Math.log1p(k));

export const FEATURE_NAMES: readonly string[] = Object.freeze([
  'similarity',
  'recency',
  'frequency',
  'success_rate',
  'metadata_overlap',
]);
export const FEATURE_COUNT = 5;

export type FeatureWeights = [number, number, number, number, number];

export interface FeatureConfig {
  /** Weights of the fixed weighted sum, in FEATURE_NAMES order. */
  weights: FeatureWeights;
  /** Recency decay per second of age. */
  recencyDecay: number;
  /** Fixed "now" (Unix seconds) — for reproducible runs; the Router passes its clock otherwise. */
  nowSeconds?: number;
  /** Access count that maps to frequency 1 (log scale). Default 10 000. */
  frequencySaturation?: number;
}

export const DEFAULT_FREQUENCY_SATURATION = 10_000;

export const DEFAULT_FEATURE_CONFIG: FeatureConfig = Object.freeze({
  weights: Object.freeze([0.4, 0.2, 0.15, 0.15, 0.1]) as unknown as FeatureWeights,
  recencyDecay: 0.001,
  frequencySaturation: DEFAULT_FREQUENCY_SATURATION,
}) as FeatureConfig;

/** Merges a partial config over the defaults and checks it; ConfigError on nonsense. */
export function resolveFeatureConfig(partial: Partial<FeatureConfig> = {}): FeatureConfig {
  const weights = partial.weights ?? DEFAULT_FEATURE_CONFIG.weights;
  if (!Array.isArray(weights) || weights.length !== FEATURE_COUNT || !weights.every((w) => typeof w === 'number' && Number.isFinite(w))) {
    throw new ConfigError(`feature weights must be ${FEATURE_COUNT} finite numbers (${FEATURE_NAMES.join(', ')})`);
  }
  const recencyDecay = partial.recencyDecay ?? DEFAULT_FEATURE_CONFIG.recencyDecay;
  if (!Number.isFinite(recencyDecay) || recencyDecay < 0) {
    throw new ConfigError(`recency decay must be a finite number >= 0 (per second), got ${recencyDecay}`);
  }
  const frequencySaturation = partial.frequencySaturation ?? DEFAULT_FREQUENCY_SATURATION;
  if (!Number.isFinite(frequencySaturation) || frequencySaturation < 1) {
    throw new ConfigError(`frequency saturation must be a finite number >= 1, got ${frequencySaturation}`);
  }
  const cfg: FeatureConfig = { weights: [...weights] as FeatureWeights, recencyDecay, frequencySaturation };
  if (partial.nowSeconds !== undefined) {
    if (!Number.isFinite(partial.nowSeconds)) throw new ConfigError(`nowSeconds must be finite, got ${partial.nowSeconds}`);
    cfg.nowSeconds = partial.nowSeconds;
  }
  return Object.freeze(cfg);
}

/**
 * Cosine similarity of `query` against n packed candidate embeddings (candidate i at
 * [i*dim, (i+1)*dim)) into out[0..n). A zero-norm vector gives 0, never NaN.
 * Scalar loop unrolled by 4 with independent accumulators (breaks the add dependency chain),
 * the query norm computed once.
 */
export function cosineBatch(query: Float32Array, embeddings: Float32Array, n: number, dim: number, out: Float32Array, outOffset = 0): void {
  // PERF: the WebAssembly SIMD kernel (src/engine/simd/cosine.ts, ~8x this loop) when the engine
  // supports it; this scalar loop otherwise. Same contract, results within f32 rounding.
  if (simdAvailable()) {
    cosineBatchSimd(query, embeddings, n, dim, out, outOffset);
    return;
  }
  cosineBatchScalar(query, embeddings, n, dim, out, outOffset);
}

/** The portable scalar body of `cosineBatch` (the fallback, and the reference in benchmarks). */
export function cosineBatchScalar(query: Float32Array, embeddings: Float32Array, n: number, dim: number, out: Float32Array, outOffset = 0): void {
  let qq0 = 0, qq1 = 0, qq2 = 0, qq3 = 0;
  const d4 = dim & ~3;
  let j = 0;
  for (; j < d4; j += 4) {
    const a = query[j]!, b = query[j + 1]!, c = query[j + 2]!, d = query[j + 3]!;
    qq0 += a * a; qq1 += b * b; qq2 += c * c; qq3 += d * d;
  }
  for (; j < dim; j++) { const a = query[j]!; qq0 += a * a; }
  const qNorm = Math.sqrt(qq0 + qq1 + qq2 + qq3);

  for (let i = 0; i < n; i++) {
    const base = i * dim;
    let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    let e0 = 0, e1 = 0, e2 = 0, e3 = 0;
    j = 0;
    for (; j < d4; j += 4) {
      const x0 = embeddings[base + j]!, x1 = embeddings[base + j + 1]!;
      const x2 = embeddings[base + j + 2]!, x3 = embeddings[base + j + 3]!;
      d0 += x0 * query[j]!; d1 += x1 * query[j + 1]!; d2 += x2 * query[j + 2]!; d3 += x3 * query[j + 3]!;
      e0 += x0 * x0; e1 += x1 * x1; e2 += x2 * x2; e3 += x3 * x3;
    }
    for (; j < dim; j++) {
      const x = embeddings[base + j]!;
      d0 += x * query[j]!;
      e0 += x * x;
    }
    const denom = qNorm * Math.sqrt(e0 + e1 + e2 + e3);
    const cos = denom > 0 ? (d0 + d1 + d2 + d3) / denom : 0;
    // Rounding can push |cos| a hair past 1 for parallel vectors; clamp to the true range.
    out[outOffset + i] = cos > 1 ? 1 : cos < -1 ? -1 : cos;
  }
}

/** Fraction of the request's metadata pairs the candidate repeats exactly (0 with none). */
export function metadataOverlap(request: Record<string, string>, candidate: Record<string, string>): number {
  let total = 0;
  let hits = 0;
  for (const k in request) {
    total++;
    if (Object.prototype.hasOwnProperty.call(candidate, k) && candidate[k] === request[k]) hits++;
  }
  return total === 0 ? 0 : hits / total;
}

/**
 * Writes n rows of FEATURE_COUNT values into `out` (candidate-major, FEATURE_NAMES order).
 * `out` must hold at least n*FEATURE_COUNT values. Nothing is allocated: the similarity
 * kernel writes its n contiguous values into the last fifth of `out`, [4n, 5n), and rows are
 * then written front to back. Row i covers [5i, 5i+5); it could only clobber a similarity k > i
 * not yet read if 5i + 4 >= 4n + k > 4n + i, i.e. i >= n — never. Similarity i itself is read
 * before row i is written.
 */
export function extractFeatures(req: ValidatedRequest, cfg: FeatureConfig, out: Float32Array, nowSeconds: number): void {
  const n = req.n;
  // the similarities at out[4n, 5n), addressed by offset (no view objects: nothing allocated)
  const s0 = 4 * n;
  const given = req.similarity;
  if (given) {
    for (let i = 0; i < n; i++) out[s0 + i] = given[i]!;
  } else {
    cosineBatch(req.query, req.embeddings, n, req.dim, out, s0);
    completeFiniteCheck(req, out, s0);
  }

  const decay = cfg.recencyDecay;
  const invLogSat = 1 / Math.log1p(cfg.frequencySaturation ?? DEFAULT_FREQUENCY_SATURATION);
  const now = cfg.nowSeconds ?? nowSeconds;
  const reqMeta = req.metadata;
  let hasReqMeta = false;
  for (const _k in reqMeta) { hasReqMeta = true; break; }

  for (let i = 0; i < n; i++) {
    const sim = out[s0 + i]!; // read before row i overwrites [5i, 5i+5), which may overlap sims
    const age = now - req.createdAt[i]!;
    // PERF: the log1p table for small counts. (Math.exp stays: TurboFan inlines it as an unboxed
    // call, where a JS exp that is not inlined returns a heap-allocated number per candidate.)
    const recency = Math.exp(-decay * (age > 0 ? age : 0));
    const count = req.accessCount[i]!;
    const k = count | 0;
    const f = (k === count && k >= 0 && k < 4096 ? LOG1P_TABLE[k]! : Math.log1p(count)) * invLogSat;
    const o = i * 5;
    out[o] = sim;
    out[o + 1] = recency;
    out[o + 2] = f > 1 ? 1 : f;
    out[o + 3] = req.successRate[i]!;
    out[o + 4] = hasReqMeta ? metadataOverlap(reqMeta, req.candidateMetadata[i]!) : 0;
  }
}

/** The seed's fixed weighted sum for one feature row at `offset` (the baseline score). */
export function weightedScore(features: ArrayLike<number>, weights: readonly number[], offset = 0): number {
  let s = 0;
  for (let k = 0; k < FEATURE_COUNT; k++) s += features[offset + k]! * weights[k]!;
  return s;
}

/** The fixed weighted sum for n packed feature rows into out[0..n). */
export function weightedScores(features: Float32Array, n: number, weights: readonly number[], out: Float32Array | Float64Array): void {
  for (let i = 0; i < n; i++) out[i] = weightedScore(features, weights, i * FEATURE_COUNT);
}

/**
 * Features of every candidate of `req` at `decidedAt`, looked up by candidate id. The decision
 * log keeps, for retraining, the vectors the pool's workers return with each response
 * (RouterPool `returnFeatures`); this recomputes them for decisions that came without (the
 * breaker's fallback), with the same function and the default configuration `serve` gives the
 * pool, at the decision time. One Float32Array per request; each lookup is a view of its
 * candidate's FEATURE_COUNT values.
 */
export function decisionFeatures(
  req: ValidatedRequest,
  decidedAt: Date,
  config: FeatureConfig = DEFAULT_FEATURE_CONFIG,
): (candidateId: string) => Float32Array | undefined {
  const out = new Float32Array(req.n * FEATURE_COUNT);
  extractFeatures(req, config, out, decidedAt.getTime() / 1000);
  const index = new Map<string, number>();
  for (let i = 0; i < req.n; i++) index.set(req.ids[i]!, i);
  return (id) => {
    const i = index.get(id);
    return i === undefined ? undefined : out.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT);
  };
}
