// The routing contract (docs/contracts.md §1, §7) as TypeScript types. snake_case on purpose: these objects
// are the JSON payloads on Kafka and the gRPC messages, field for field.

export type Embedding = ArrayLike<number> | Float32Array;

export interface Candidate {
  id: string;
  embedding: Embedding;
  metadata?: Record<string, string>;
  /** Unix seconds. */
  created_at?: number;
  access_count?: number;
  /** In [0, 1]. */
  success_rate?: number;
}

export interface RoutingRequest {
  request_id: string;
  query_embedding: Embedding;
  candidates: Candidate[];
  metadata?: Record<string, string>;
}

/**
 * A RoutingRequest for the library API only (docs/contracts.md §7), never on the wire: every
 * candidate's embedding in one Float32Array, candidate i at [i·dim, (i+1)·dim) with dim the
 * query's length, and no `embedding` on the candidates. Routed exactly as the same request with
 * per-candidate embeddings, and validated as strictly (length, finite values).
 */
export interface PackedRoutingRequest {
  request_id: string;
  query_embedding: Embedding;
  candidates: Omit<Candidate, 'embedding'>[];
  candidate_embeddings: Float32Array;
  metadata?: Record<string, string>;
}

export type DecisionReason = 'model' | 'breaker_open' | 'uncertain' | 'below_threshold';

export interface RoutingDecision {
  request_id: string;
  candidate_id: string;
  /** Model score, 0..1: the probability that the lightweight model suffices. */
  confidence: number;
  /** 0..1, from the conformal prediction set (or the documented heuristic without calibration). */
  uncertainty: number;
  use_lightweight: boolean;
  /** 0 = best. */
  rank: number;
  model_version: string;
  reason: DecisionReason;
  /**
   * The candidate's metadata, carried through (the same object the request held). A candidate
   * without metadata gets the shared frozen EMPTY_METADATA: treat decisions as read-only.
   */
  metadata: Record<string, string>;
  inference_time_us: number;
  /**
   * The request's number of candidates, and how many of them went lightweight (docs/contracts.md
   * §12): a reader of the decision topics knows from any one decision when it holds them all.
   * The engine sets both on every decision it makes.
   */
  candidate_count?: number;
  lightweight_count?: number;
  /**
   * The policy whose thresholds decided it: 'global', or 'tenant:<name>' for a request whose
   * tenant (request metadata, TD_TENANT_KEY) has a policy (src/engine/policy.ts).
   */
  policy?: string;
}

export interface RoutingResponse {
  /** Ordered by rank. */
  decisions: RoutingDecision[];
  inference_time_us: number;
  feature_time_us: number;
  candidates_processed: number;
  /**
   * The request's id and the model version that decided it: set on the answer the responses
   * topic and triage write (wire/response.ts), where the decisions may be trimmed to the top k.
   */
  request_id?: string;
  model_version?: string;
  /** The policy that decided the request (every decision of it says the same). */
  policy?: string;
  /**
   * Not a wire field: the request's own `td-top-k` (request metadata, docs/contracts.md §12),
   * when it carried a valid one; the engine passes it on so the answer can be trimmed where the
   * request is no longer at hand (it may have been decoded on a worker thread).
   */
  top_k?: number;
  /**
   * The model's input for each decision: FEATURE_COUNT values per decision, in decision (rank)
   * order. Only from a RouterPool created with `returnFeatures` (the service logs them for
   * retraining); absent otherwise.
   */
  features?: Float32Array;
}

/** Outcome of a decision, reported back by the pipeline that ran the chosen model (feedback loop). */
export interface Outcome {
  request_id: string;
  candidate_id: string;
  ok: boolean;
  quality?: number;
  served_by?: 'lightweight' | 'heavyweight';
}

/** Limits of docs/contracts.md §1, enforced by validation everywhere a request enters. */
export const LIMITS = Object.freeze({
  maxRequestIdBytes: 256,
  minDim: 1,
  maxDim: 4096,
  minCandidates: 1,
  maxCandidates: 1000,
});
