// The in-process Router (docs/contracts.md §7): validate → features → FastGRNN → conformal set → rule.
//
// WHY synchronous and stateful in this way: the worker pool runs one Router per worker thread,
// the CLI and the gRPC `Route` call run one in-process; all of them want a plain function call
// with no I/O after construction. The Router owns per-instance scratch buffers (grown to the
// largest request seen, at most 1000 candidates) so steady-state routing allocates only the
// decision objects it returns. Timing is taken at the edge of route()/routeValidated(), never
// inside the kernels. Model file I/O happens only in the constructor (loadModelFile).
import { InvalidInputError, ModelError } from '../errors.js';
import { HEURISTIC_QHAT, predictionSet, uncertaintyFromSet } from './conformal.js';
import { DEFAULT_THRESHOLDS, decide, type Thresholds } from './decide.js';
import { PolicyTable } from './policy.js';
import { FEATURE_COUNT, FEATURE_NAMES, extractFeatures, resolveFeatureConfig, type FeatureConfig } from './features.js';
import { defaultModelPath, loadModelFile, scoreBatch, type LoadedModel } from './model.js';
import { LIMITS, type PackedRoutingRequest, type RoutingDecision, type RoutingRequest, type RoutingResponse } from '../wire/types.js';
import { validateRequest, type ValidatedRequest } from './validate.js';
import { requestTopK } from '../wire/response.js';
import { scoreRowsSimd } from './simd/fastgrnn-simd.js';
import { StagedArrays } from './simd/staging.js';
import { Ranker } from './rank.js';

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

// PERF: the per-candidate functions of the decision loops as module constants, read once at
// load: where the modules are transpiled to CommonJS (tsx, under which the benchmarks run) an
// imported name is an accessor on the exporting module's object, called on every use.
const setOf = predictionSet;
const uncertaintyOf = uncertaintyFromSet;
const rule = decide;

export class Router {
  #model: LoadedModel;
  #features: FeatureConfig;
  #now: () => number;
  /** Explicit overrides; they win over the model's own thresholds. */
  #override: { confidence?: number; maxUncertainty?: number } = {};
  #thresholds: Thresholds;
  #policies: PolicyTable;
  /** The policy that decided the last #score call. */
  #lastPolicy = 'global';
  #feat = new Float32Array(0);
  /** Views of exactly n rows of #feat, by n: the SIMD cell copies an exact view in one memcpy. */
  #featViews: Float32Array[] = [];
  #scores = new Float32Array(0);
  /** The bit patterns of #scores (the same memory), which the ranking sorts on. */
  #scoreBits = new Uint32Array(0);
  #ranker = new Ranker();
  /** Candidate indices in rank order, from the last #score. */
  #order: Int32Array = new Int32Array(0);
  #rankResult = { featureUs: 0, modelVersion: '', policy: '' };
  #lastThresholds: Thresholds = DEFAULT_THRESHOLDS;
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

  /**
   * Validates (InvalidInputError on bad input) then routes. Time includes validation. The
   * candidates' embeddings come either with each candidate or packed in the request's
   * `candidate_embeddings` (PackedRoutingRequest), which is copied in one piece — or not at all
   * when it is the view stagingEmbeddings() returned.
   */
  route(request: RoutingRequest | PackedRoutingRequest | unknown): RoutingResponse {
    const t0 = performance.now();
    // PERF: pack into reused buffers, the embeddings straight into the SIMD kernel's staging
    // memory, so the finite check and the similarity kernel read them in place (no per-request
    // allocation, no second copy). The request object is used only inside this call.
    return this.#route(validateRequest(request, this.#staged), t0);
  }

  /**
   * n × dim floats inside the memory the similarity kernel reads (a reused buffer on hosts
   * without WebAssembly SIMD), to fill with a request's candidate embeddings, candidate i at
   * [i·dim, (i+1)·dim), and pass as its `candidate_embeddings` to route(), which then reads them
   * in place instead of copying them. The same view comes back for the same n and dim. Valid
   * until the next route() of any Router on this thread (which may grow that memory and detach
   * the view): fill it right before the call, on the same thread, and do not keep it.
   */
  stagingEmbeddings(n: number, dim: number): Float32Array {
    if (!Number.isInteger(n) || n < LIMITS.minCandidates || n > LIMITS.maxCandidates) {
      throw new InvalidInputError(`stagingEmbeddings: n must be an integer in ${LIMITS.minCandidates}..${LIMITS.maxCandidates}, got ${String(n)}`);
    }
    if (!Number.isInteger(dim) || dim < LIMITS.minDim || dim > LIMITS.maxDim) {
      throw new InvalidInputError(`stagingEmbeddings: dim must be an integer in ${LIMITS.minDim}..${LIMITS.maxDim}, got ${String(dim)}`);
    }
    return this.#staged.embeddings(n, dim);
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
    const featureUs = this.#score(req);
    // PERF: the decision objects are built here in one loop, in rank order, each with its final
    // shape and every field but the total time and the lightweight count (known only once all
    // decisions exist) already set.
    const version = this.#model.version;
    const policy = this.#lastPolicy;
    const th = this.#lastThresholds;
    const qhat = this.#qhat();
    const scores = this.#scores;
    const order = this.#order;
    const rid = req.request_id;
    const ids = req.ids;
    const metas = req.candidateMetadata;
    const decisions = new Array<RoutingDecision>(n);
    let lightweight = 0;
    for (let r = 0; r < n; r++) {
      const i = order[r]!;
      const p = scores[i]!;
      const set = setOf(p, qhat);
      const u = uncertaintyOf(p, qhat, set);
      const d = rule(p, u, set, th);
      decisions[r] = {
        request_id: rid,
        candidate_id: ids[i]!,
        confidence: p,
        uncertainty: u,
        use_lightweight: d.use_lightweight,
        rank: r,
        model_version: version,
        reason: d.reason,
        metadata: metas[i]!,
        inference_time_us: 0,
        candidate_count: n,
        lightweight_count: 0,
        policy,
      };
      if (d.use_lightweight) lightweight++;
    }
    const totalUs = (performance.now() - t0) * 1000;
    for (let r = 0; r < n; r++) {
      const d = decisions[r]!;
      d.inference_time_us = totalUs;
      d.lightweight_count = lightweight;
    }
    const response: RoutingResponse = { decisions, inference_time_us: totalUs, feature_time_us: featureUs, candidates_processed: n, policy };
    const topK = requestTopK(req.metadata);
    if (topK !== undefined) response.top_k = topK;
    return response;
  }

  /**
   * PERF (worker pool): routes without building decision objects. Decision r (rank order) is
   * written as four numbers at out[first + r·stride + k]: k = 0 the candidate index, 1 the
   * confidence, 2 the uncertainty, 3 the rule outcome as use_lightweight (bit 0) | the index of
   * its reason in `reasons` << 1. Returns the feature-extraction time in µs, the model version and
   * the policy that decided, in an object reused by the next call. routeValidated() ranks and
   * decides with the same #score and rule, so both give the same decisions; a pool worker sends
   * these numbers to the main thread, which builds the objects with the ids and metadata that
   * never left it. Numbers go straight into the caller's buffer (no callback per decision, whose
   * float arguments would be boxed when the call is not inlined).
   */
  rankValidated(req: ValidatedRequest, out: Float64Array, first: number, stride: number, reasons: readonly string[]): { featureUs: number; modelVersion: string; policy: string } {
    const modelVersion = this.#model.version;
    const featureUs = this.#score(req);
    const th = this.#lastThresholds;
    const qhat = this.#qhat();
    const scores = this.#scores;
    const order = this.#order;
    for (let r = 0; r < req.n; r++) {
      const i = order[r]!;
      const p = scores[i]!;
      const set = setOf(p, qhat);
      const u = uncertaintyOf(p, qhat, set);
      const d = rule(p, u, set, th);
      const q = first + r * stride;
      out[q] = i;
      out[q + 1] = p;
      out[q + 2] = u;
      out[q + 3] = (d.use_lightweight ? 1 : 0) | (reasons.indexOf(d.reason) << 1);
    }
    const res = this.#rankResult;
    res.featureUs = featureUs;
    res.modelVersion = modelVersion;
    res.policy = this.#lastPolicy;
    return res;
  }

  /**
   * PERF (worker pool): the feature rows of the last rankValidated/route call, candidate i at
   * [i·FEATURE_COUNT, (i+1)·FEATURE_COUNT). A view of scratch memory, valid until the next call.
   */
  lastFeatures(n: number): Float32Array {
    return this.#feat.subarray(0, n * FEATURE_COUNT);
  }

  #qhat(): number {
    const cal = this.#model.calibration;
    return cal ? cal.qhat : HEURISTIC_QHAT;
  }

  /**
   * Features → scores → ranking, and the policy that decides; returns the feature time in µs.
   * Leaves the scores in #scores, the candidate indices in rank order in #order and the
   * thresholds to apply in #lastThresholds.
   */
  #score(req: ValidatedRequest): number {
    const n = req.n;
    const model = this.#model;
    if (this.#feat.length < n * FEATURE_COUNT) {
      this.#feat = new Float32Array(n * FEATURE_COUNT);
      this.#featViews = [];
      this.#scores = new Float32Array(n);
      this.#scoreBits = new Uint32Array(this.#scores.buffer);
    }
    const feat = (this.#featViews[n] ??= this.#feat.subarray(0, n * FEATURE_COUNT));
    const scores = this.#scores;

    const tf = performance.now();
    extractFeatures(req, this.#features, feat, this.#now());
    const featureUs = (performance.now() - tf) * 1000;

    // PERF: the per-model WebAssembly SIMD cell (simd/fastgrnn-simd.ts: the whole batch in one
    // call, hidden units in f32x4 lanes, vector σ/tanh; within 1e-6 of the float64 kernel) when
    // it compiles for this model and host; the scalar float64 kernel otherwise.
    if (!scoreRowsSimd(model.cell, feat, n, scores)) scoreBatch(model, feat, n, scores);

    // Rank: confidence descending, ties by input order (rank.ts).
    this.#order = this.#ranker.rank(this.#scoreBits, n);

    const choice = this.#policies.choose(req.metadata, this.#thresholds);
    this.#lastPolicy = choice.policy;
    this.#lastThresholds = choice.thresholds;
    return featureUs;
  }
}
