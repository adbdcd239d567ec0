// The in-process Router (docs/contracts.md §7): validate → features → FastGRNN → conformal set → rule.
//
// WHY synchronous and stateful in this way: the worker pool runs one Router per worker thread,
// the CLI and the gRPC `Route` call run one in-process; all of them want a plain function call
// with no I/O after construction. The Router owns per-instance scratch buffers (grown to the
// largest request seen, at most 1000 candidates) so steady-state routing allocates only the
// decision objects it returns. Timing is taken at the edge of route()/routeValidated(), never
// inside the kernels. Model file I/O happens only in the constructor (loadModelFile).
import { ModelError } from '../errors.js';
import { HEURISTIC_QHAT, predictionSet, uncertaintyFromSet } from './conformal.js';
import { DEFAULT_THRESHOLDS, decide, type Decision, type Thresholds } from './decide.js';
import { PolicyTable } from './policy.js';
import { FEATURE_COUNT, FEATURE_NAMES, extractFeatures, resolveFeatureConfig, type FeatureConfig } from './features.js';
import { defaultModelPath, loadModelFile, scoreBatch, type LoadedModel } from './model.js';
import type { RoutingDecision, RoutingRequest, RoutingResponse } from '../wire/types.js';
import { validateRequest, type ValidatedRequest } from './validate.js';
import { requestTopK } from '../wire/response.js';
import { scoreRowsSimd } from './simd/fastgrnn-simd.js';
import { StagedArrays } from './simd/staging.js';

export interface RouterOptions {
  /** Model file; default models/default.safetensors of the package. Ignored when `model` is given. */
  modelPath?: string;
  model?: LoadedModel;
  /** Override the model's (or the default 0.85) confidence threshold. */
  confidenceThreshold?: number;
  /** Override the model's (or the default 0.15) max uncertainty. */
  maxUncertainty?: number;
  features?: Partial<FeatureConfig>;
  /** Clock in Unix seconds (for recency); default Date.now()/1000. */
  now?: () => number;
  /** Per-tenant thresholds; default none (every request decided with the global thresholds). */
  policies?: PolicyTable;
}

function checkUnit(name: string, v: number | undefined): void {
  if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) {
    throw new RangeError(`${name} must be a number in [0, 1], got ${String(v)}`);
  }
}

/** Throws ModelError unless the model consumes exactly the features this engine extracts. */
export function assertRoutable(model: LoadedModel): void {
  const ok = model.inputDim === FEATURE_COUNT && model.features.every((f, i) => f === FEATURE_NAMES[i]);
  if (!ok) {
    throw new ModelError(`${model.source}: model expects features [${model.features.join(', ')}], the router extracts [${FEATURE_NAMES.join(', ')}]`);
  }
}

const defaultNow = (): number => Date.now() / 1000;

/** PERF: receives one decision of Router.rankValidated: rank, candidate index, p, u, rule outcome. */
export type DecisionSink = (rank: number, index: number, confidence: number, uncertainty: number, decision: Readonly<Decision>) => void;

export class Router {
  #model: LoadedModel;
  #features: FeatureConfig;
  #now: () => number;
  /** Explicit overrides; they win over the model's own thresholds. */
  #override: { confidence?: number; maxUncertainty?: number } = {};
  #thresholds: Thresholds;
  #policies: PolicyTable;
  /** The policy that decided the last #rank call. */
  #lastPolicy = 'global';
  #feat = new Float32Array(0);
  #scores = new Float32Array(0);
  #keys = new Float64Array(0);
  #staged = new StagedArrays();

  constructor(opts: RouterOptions = {}) {
    checkUnit('confidenceThreshold', opts.confidenceThreshold);
    checkUnit('maxUncertainty', opts.maxUncertainty);
    this.#features = resolveFeatureConfig(opts.features);
    this.#now = opts.now ?? defaultNow;
    this.#policies = opts.policies ?? new PolicyTable();
    if (opts.confidenceThreshold !== undefined) this.#override.confidence = opts.confidenceThreshold;
    if (opts.maxUncertainty !== undefined) this.#override.maxUncertainty = opts.maxUncertainty;
    const model = opts.model ?? loadModelFile(opts.modelPath ?? defaultModelPath());
    assertRoutable(model);
    this.#model = model;
    this.#thresholds = this.#resolveThresholds();
  }

  /** Defaults ← model metadata ← explicit options / setThresholds. */
  #resolveThresholds(): Thresholds {
    const m = this.#model.thresholds ?? {};
    return Object.freeze({
      confidence: this.#override.confidence ?? m.confidence ?? DEFAULT_THRESHOLDS.confidence,
      maxUncertainty: this.#override.maxUncertainty ?? m.maxUncertainty ?? DEFAULT_THRESHOLDS.maxUncertainty,
    });
  }

  get modelVersion(): string {
    return this.#model.version;
  }

  get model(): LoadedModel {
    return this.#model;
  }

  get thresholds(): { confidence: number; maxUncertainty: number } {
    return { ...this.#thresholds };
  }

  get featureConfig(): FeatureConfig {
    return this.#features;
  }

  /** Swaps the model (already parsed and validated); thresholds re-resolved against it. */
  swapModel(model: LoadedModel): void {
    assertRoutable(model);
    this.#model = model;
    this.#thresholds = this.#resolveThresholds();
  }

  /** Explicit thresholds; they override the model's. */
  setThresholds(t: { confidence?: number; maxUncertainty?: number }): void {
    checkUnit('confidence', t.confidence);
    checkUnit('maxUncertainty', t.maxUncertainty);
    if (t.confidence !== undefined) this.#override.confidence = t.confidence;
    if (t.maxUncertainty !== undefined) this.#override.maxUncertainty = t.maxUncertainty;
    this.#thresholds = this.#resolveThresholds();
  }

  /** Per-tenant thresholds from now on (the table is validated when it is built). */
  setPolicies(table: PolicyTable): void {
    this.#policies = table;
  }

  get policies(): PolicyTable {
    return this.#policies;
  }

  /** Validates (InvalidInputError on bad input) then routes. Time includes validation. */
  route(request: RoutingRequest | unknown): RoutingResponse {
    const t0 = performance.now();
    // PERF: pack into reused buffers, the embeddings straight into the SIMD kernel's staging
    // memory, so the finite check and the similarity kernel read them in place (no per-request
    // allocation, no second copy). The request object is used only inside this call.
    return this.#route(validateRequest(request, this.#staged), t0);
  }

  routeValidated(req: ValidatedRequest): RoutingResponse {
    return this.#route(req, performance.now());
  }

  /**
   * Response timing: `feature_time_us` is feature extraction alone; `inference_time_us` is
   * the whole call (validation when via route(), features, model, decisions). Each decision
   * carries the request's `inference_time_us`: candidates are scored together, so per-candidate
   * time is not separable.
   */
  #route(req: ValidatedRequest, t0: number): RoutingResponse {
    const n = req.n;
    const version = this.#model.version;
    const decisions = new Array<RoutingDecision>(n);
    let lightweight = 0;
    const featureUs = this.#rank(req, (r, i, p, u, d) => {
      decisions[r] = {
        request_id: req.request_id,
        candidate_id: req.ids[i]!,
        confidence: p,
        uncertainty: u,
        use_lightweight: d.use_lightweight,
        rank: r,
        model_version: version,
        reason: d.reason,
        metadata: req.candidateMetadata[i]!,
        inference_time_us: 0,
        candidate_count: n,
        lightweight_count: 0,
        policy: '',
      };
      if (d.use_lightweight) lightweight++;
    });
    const totalUs = (performance.now() - t0) * 1000;
    const policy = this.#lastPolicy;
    for (let r = 0; r < n; r++) {
      const d = decisions[r]!;
      d.inference_time_us = totalUs;
      d.lightweight_count = lightweight;
      d.policy = policy;
    }
    const response: RoutingResponse = { decisions, inference_time_us: totalUs, feature_time_us: featureUs, candidates_processed: n, policy };
    const topK = requestTopK(req.metadata);
    if (topK !== undefined) response.top_k = topK;
    return response;
  }

  /**
   * PERF (worker pool): routes without building decision objects — `emit` gets each decision's
   * numbers in rank order (rank, candidate index, confidence, uncertainty, rule outcome), and the
   * feature-extraction time in µs is returned, with the policy that decided. routeValidated() is built on this, so both give
   * the same decisions; a pool worker sends these numbers to the main thread, which builds the
   * objects with the ids and metadata that never left it.
   */
  rankValidated(req: ValidatedRequest, emit: DecisionSink): { featureUs: number; modelVersion: string; policy: string } {
    const modelVersion = this.#model.version;
    const featureUs = this.#rank(req, emit);
    return { featureUs, modelVersion, policy: this.#lastPolicy };
  }

  /**
   * PERF (worker pool): the feature rows of the last rankValidated/route call, candidate i at
   * [i·FEATURE_COUNT, (i+1)·FEATURE_COUNT). A view of scratch memory, valid until the next call.
   */
  lastFeatures(n: number): Float32Array {
    return this.#feat.subarray(0, n * FEATURE_COUNT);
  }

  /** Features → scores → ranking → rule; returns the feature time in µs. */
  #rank(req: ValidatedRequest, emit: DecisionSink): number {
    const n = req.n;
    const model = this.#model;
    if (this.#feat.length < n * FEATURE_COUNT) {
      this.#feat = new Float32Array(n * FEATURE_COUNT);
      this.#scores = new Float32Array(n);
    }
    const feat = this.#feat;
    const scores = this.#scores;

    const tf = performance.now();
    extractFeatures(req, this.#features, feat, this.#now());
    const featureUs = (performance.now() - tf) * 1000;

    // PERF: the per-model WebAssembly SIMD cell (simd/fastgrnn-simd.ts, ~8x, float32, within
    // ~1e-6 of the float64 kernel) when it compiles for this model; the scalar kernel otherwise.
    if (!scoreRowsSimd(model.cell, feat, n, scores)) scoreBatch(model, feat, n, scores);

    // Rank: confidence descending, ties by input order (explicit tiebreak, independent of sort stability).
    // PERF: a native numeric sort of float64 keys instead of a comparator sort (~5x at n = 100):
    // key = (bits(1.0f) − bits(score))·M + i. For float32 scores in [0, 1] the bit pattern is
    // monotonic, so ascending keys are confidence descending, then index ascending; M ≥ n keeps i
    // recoverable and keys < 2^30·M stay exact integers in float64.
    if (this.#keys.length < n) this.#keys = new Float64Array(Math.max(n, 2 * this.#keys.length));
    const bits = new Uint32Array(scores.buffer, scores.byteOffset, n);
    const M = n <= 1024 ? 1024 : 2 ** Math.ceil(Math.log2(n));
    const order = this.#keys.subarray(0, n);
    for (let i = 0; i < n; i++) order[i] = (0x3f800000 - bits[i]!) * M + i;
    order.sort();

    const qhat = model.calibration ? model.calibration.qhat : HEURISTIC_QHAT;
    const choice = this.#policies.choose(req.metadata, this.#thresholds);
    this.#lastPolicy = choice.policy;
    const th = choice.thresholds;
    for (let r = 0; r < n; r++) {
      const i = order[r]! % M;
      const p = scores[i]!;
      const set = predictionSet(p, qhat);
      const u = uncertaintyFromSet(p, qhat, set);
      emit(r, i, p, u, decide(p, u, set, th));
    }
    return featureUs;
  }
}
