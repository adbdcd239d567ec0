// Seeded synthetic routing traffic with a hidden, non-linear ground truth — the benchmark the
// shipped model is trained and measured on — and small non-linear feature sets for tests.
//
// TRAFFIC. Each request has a query embedding from one of `topics` clustered topics in `dim`
// dimensions (topic centroid + isotropic noise, normalised) and 4–16 candidates of three kinds:
//   near-duplicates (55 %): the query plus noise, cosine ≈ 0.74–0.98;
//   same-topic items (35 %): the topic centroid plus more noise, cosine ≈ 0.40–0.72;
//   off-topic items (10 %): another topic's centroid plus noise, cosine ≈ 0.
// Ages are log-uniform between 5 seconds and 14 days; access counts log-normal
// (median ≈ 20, heavy tail); success rates Beta(8, 1) (mean 0.89), a little noisier for rarely
// used items; request metadata {domain, lang, tier} that a candidate repeats with a probability
// that is higher for same-topic candidates, plus extra candidate keys (model, cost) that are
// carried through and never scored.
//
// GROUND TRUTH "the lightweight model suffices" is a non-linear function of exactly the five
// features the engine extracts (it is computed FROM the engine's extractFeatures output with its
// default config, so no information is hidden from the model) plus noise:
//   relevant  = σ((similarity − 0.45) / 0.02)
//   fresh     = σ((recency − 0.40) / 0.03)        (age below ≈ 15 minutes at decay 0.001/s)
//   proven    = σ((success_rate − 0.80) / 0.01)
//   popular   = σ((frequency − 0.45) / 0.02) · σ((metadata_overlap − 0.5) / 0.05)
//               (more than ≈ 62 accesses AND at least 2 of the 3 request metadata pairs)
//   ok        = relevant · (1 − (1 − fresh)(1 − proven)(1 − popular))       (AND of an OR)
//   P(label = 1) = 0.005 + 0.99 · ok                                        (0.5 % label noise each way)
// i.e. "a relevant candidate AND (recent OR with a proven success rate OR popular within the
// same domain/language)". A linear score cannot carve that corner; the thresholds are sharp but
// not hard, so a band around each boundary is genuinely ambiguous (about 15 % of candidates
// have 0.05 < P < 0.95). Each candidate carries its `label` and `p_true` (the probability
// above), so reports can show the Bayes-optimal ceiling.
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, extractFeatures } from '../engine/features.js';
import { validateRequest } from '../engine/validate.js';
import { Rng } from './rng.js';

export interface TrafficOptions {
  /** Number of requests. */
  requests: number;
  seed: number;
  /** Embedding dimension (default 384). */
  dim?: number;
  topics?: number;
  minCandidates?: number;
  maxCandidates?: number;
  /** The clock the requests are routed at (Unix seconds); ages are relative to it. */
  now?: number;
  /** Probability each label is flipped regardless of the features (default 0.005). */
  labelNoise?: number;
}

export interface SyntheticCandidate {
  id: string;
  embedding: Float32Array;
  metadata: Record<string, string>;
  created_at: number;
  access_count: number;
  success_rate: number;
  label: 0 | 1;
  p_true: number;
}

export interface SyntheticRequest {
  request_id: string;
  /** When the request was routed: recency is computed against it. */
  now: number;
  query_embedding: Float32Array;
  candidates: SyntheticCandidate[];
  metadata: Record<string, string>;
}

/** A fixed default clock so generated files do not depend on when they were generated. */
export const SYNTHETIC_NOW = 1_750_000_000;

const DOMAINS = ['code', 'support', 'legal', 'medical', 'finance', 'travel'];
const LANGS = ['en', 'en', 'en', 'de', 'fr', 'es'];
const TIERS = ['free', 'pro'];
const MODELS = ['small-v2', 'small-v3', 'tiny-1'];

function sig(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** P(lightweight suffices) for one feature row (similarity, recency, frequency, success_rate, metadata_overlap). */
export function trafficTruth(f: ArrayLike<number>, offset = 0, labelNoise = 0.005): number {
  const s = f[offset]!, r = f[offset + 1]!, fr = f[offset + 2]!, q = f[offset + 3]!, m = f[offset + 4]!;
  const relevant = sig((s - 0.45) / 0.02);
  const fresh = sig((r - 0.4) / 0.03);
  const proven = sig((q - 0.8) / 0.01);
  const popular = sig((fr - 0.45) / 0.02) * sig((m - 0.5) / 0.05);
  const ok = relevant * (1 - (1 - fresh) * (1 - proven) * (1 - popular));
  return labelNoise + (1 - 2 * labelNoise) * ok;
}

function unitNoise(rng: Rng, dim: number, out: Float64Array): void {
  const s = 1 / Math.sqrt(dim);
  for (let j = 0; j < dim; j++) out[j] = rng.normal() * s;
}

/**
 * Unit vector rounded to 5 decimals, held as float32. Printing each value rounded to 5
 * decimals gives back exactly these float32 values when a file is read, so a request generated
 * in memory and the same request written and re-read have identical features and labels.
 */
function normalised(v: Float64Array): Float32Array {
  let nn = 0;
  for (let j = 0; j < v.length; j++) nn += v[j]! * v[j]!;
  const inv = 1 / Math.sqrt(nn);
  const out = new Float32Array(v.length);
  for (let j = 0; j < v.length; j++) out[j] = Math.round(v[j]! * inv * 1e5) / 1e5;
  return out;
}

/** JSON for a generated request (embeddings as number arrays with 5 decimals). */
export function trafficJson(r: SyntheticRequest): string {
  const emb = (e: Float32Array) => `[${Array.from(e, (x) => Math.round(x * 1e5) / 1e5).join(',')}]`;
  const cands = r.candidates.map((c) =>
    `{"id":${JSON.stringify(c.id)},"embedding":${emb(c.embedding)},"metadata":${JSON.stringify(c.metadata)},"created_at":${c.created_at},` +
    `"access_count":${c.access_count},"success_rate":${c.success_rate},"label":${c.label},"p_true":${c.p_true}}`);
  return `{"request_id":${JSON.stringify(r.request_id)},"now":${r.now},"query_embedding":${emb(r.query_embedding)},"metadata":${JSON.stringify(r.metadata)},"candidates":[${cands.join(',')}]}`;
}

/** Generates `requests` labelled RoutingRequests, deterministically from `seed`. */
export function* generateTraffic(opts: TrafficOptions): Generator<SyntheticRequest> {
  const dim = opts.dim ?? 384;
  const K = opts.topics ?? 24;
  const minC = opts.minCandidates ?? 4;
  const maxC = opts.maxCandidates ?? 16;
  const now = opts.now ?? SYNTHETIC_NOW;
  const noise = opts.labelNoise ?? 0.005;
  const rng = new Rng(opts.seed);
  const topicRng = rng.fork(1);
  const centroids: Float64Array[] = [];
  for (let k = 0; k < K; k++) {
    const c = new Float64Array(dim);
    for (let j = 0; j < dim; j++) c[j] = topicRng.normal();
    let nn = 0;
    for (let j = 0; j < dim; j++) nn += c[j]! * c[j]!;
    for (let j = 0; j < dim; j++) c[j] = c[j]! / Math.sqrt(nn);
    centroids.push(c);
  }
  const eps = new Float64Array(dim);
  const q = new Float64Array(dim);
  const e = new Float64Array(dim);
  const feat = new Float32Array(maxC * FEATURE_COUNT);

  for (let r = 0; r < opts.requests; r++) {
    const topic = rng.int(K);
    const c = centroids[topic]!;
    unitNoise(rng, dim, eps);
    for (let j = 0; j < dim; j++) q[j] = c[j]! + 0.7 * eps[j]!;
    const query = normalised(q);
    const metadata: Record<string, string> = {
      domain: DOMAINS[topic % DOMAINS.length]!,
      lang: LANGS[rng.int(LANGS.length)]!,
      tier: TIERS[rng.int(TIERS.length)]!,
    };
    const n = minC + rng.int(maxC - minC + 1);
    const candidates: SyntheticCandidate[] = [];
    for (let i = 0; i < n; i++) {
      const kind = rng.next();
      unitNoise(rng, dim, eps);
      let sameTopic = true;
      if (kind < 0.55) {
        const sigma = rng.uniform(0.2, 0.9);
        for (let j = 0; j < dim; j++) e[j] = query[j]! + sigma * eps[j]!;
      } else if (kind < 0.9) {
        const tau = rng.uniform(0.5, 1.6);
        for (let j = 0; j < dim; j++) e[j] = c[j]! + tau * eps[j]!;
      } else {
        sameTopic = false;
        const other = centroids[(topic + 1 + rng.int(K - 1)) % K]!;
        const tau = rng.uniform(0.5, 1.6);
        for (let j = 0; j < dim; j++) e[j] = other[j]! + tau * eps[j]!;
      }
      const age = Math.exp(rng.uniform(Math.log(5), Math.log(14 * 86400)));
      const accessCount = Math.floor(Math.exp(3 + 1.8 * rng.normal()));
      const quality = rng.beta(8, 1);
      const spread = accessCount < 10 ? 0.06 : 0.02;
      const success = Math.min(1, Math.max(0, quality + spread * rng.normal()));
      const cm: Record<string, string> = {
        domain: rng.bernoulli(sameTopic ? 0.85 : 0.15) ? metadata.domain! : DOMAINS[rng.int(DOMAINS.length)]!,
        lang: rng.bernoulli(0.8) ? metadata.lang! : LANGS[rng.int(LANGS.length)]!,
        tier: rng.bernoulli(0.6) ? metadata.tier! : TIERS[rng.int(TIERS.length)]!,
        model: MODELS[rng.int(MODELS.length)]!,
        cost_per_1k: (0.1 + rng.int(20) / 10).toFixed(2),
      };
      candidates.push({
        id: `c${i}`,
        embedding: normalised(e),
        metadata: cm,
        created_at: Math.round(now - age),
        access_count: accessCount,
        success_rate: Math.round(success * 1000) / 1000,
        label: 0,
        p_true: 0,
      });
    }
    const request: SyntheticRequest = { request_id: `syn-${opts.seed}-${r}`, now, query_embedding: query, candidates, metadata };
    // The truth is a function of what the engine sees: compute the engine's own features.
    const v = validateRequest(request);
    extractFeatures(v, DEFAULT_FEATURE_CONFIG, feat, now);
    for (let i = 0; i < n; i++) {
      const p = trafficTruth(feat, i * FEATURE_COUNT, noise);
      const cand = candidates[i]!;
      cand.p_true = Math.round(p * 1e6) / 1e6;
      cand.label = rng.next() < p ? 1 : 0;
    }
    yield request;
  }
}

// ---------------------------------------------------------------------------------------------
// Plain non-linear feature sets (no routing semantics) for tests and the "never seen" check.

export type FeatureSetKind = 'interactions' | 'rings' | 'sequence';

export interface FeatureSample {
  features: number[] | number[][];
  label: 0 | 1;
  p_true: number;
}

/**
 * - `interactions` (D = 6): P(y=1) = σ(3·(x0·x1 + sin(2·x2) − 0.5·x3² + 0.6)); x4, x5 are noise.
 * - `rings` (D = 4): y = [x0² + x1² < 1.4] XOR [x2 > 0], 5 % of labels flipped; x3 is noise.
 * - `sequence` (D = 3, 2–6 steps): P(y=1) = σ(4·(mean_t x0 + 0.8·x1 at the last step − 0.6·x2 at the first step)).
 * Inputs are standard normal.
 */
export function* generateFeatureSet(kind: FeatureSetKind, n: number, seed: number): Generator<FeatureSample> {
  const rng = new Rng(seed);
  const round = (v: number) => Math.round(v * 1e5) / 1e5;
  for (let i = 0; i < n; i++) {
    if (kind === 'interactions') {
      const x = Array.from({ length: 6 }, () => round(rng.normal()));
      const p = sig(3 * (x[0]! * x[1]! + Math.sin(2 * x[2]!) - 0.5 * x[3]! * x[3]! + 0.6));
      yield { features: x, label: rng.next() < p ? 1 : 0, p_true: p };
    } else if (kind === 'rings') {
      const x = Array.from({ length: 4 }, () => round(rng.normal()));
      const inside = x[0]! * x[0]! + x[1]! * x[1]! < 1.4;
      const truth = inside !== x[2]! > 0;
      const p = truth ? 0.95 : 0.05;
      yield { features: x, label: rng.next() < p ? 1 : 0, p_true: p };
    } else {
      const T = 2 + rng.int(5);
      const steps = Array.from({ length: T }, () => Array.from({ length: 3 }, () => round(rng.normal())));
      let m = 0;
      for (const s of steps) m += s[0]!;
      m /= T;
      const p = sig(4 * (m + 0.8 * steps[T - 1]![1]! - 0.6 * steps[0]![2]!));
      yield { features: steps, label: rng.next() < p ? 1 : 0, p_true: p };
    }
  }
}
