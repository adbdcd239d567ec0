// The one message contract between RouterPool (main thread) and its workers. Both sides import
// these types, so a change to the protocol is a compile error on the side that forgot it.
//
// WHY the binary layouts below instead of posting objects: structured clone is slow for many
// small objects (cloning a response object of many decisions costs more than scoring it) and
// copies every byte of typed arrays it is not told to transfer. So:
//   - requests travel in batches: many route() calls, one postMessage per worker;
//   - all numbers of a batch sit in ONE ArrayBuffer (the "arena") that is transferred, not
//     copied, and transferred back with the results so the main thread can reuse it;
//   - per-task descriptors are float64 rows inside the arena, and the worker writes its results
//     back into the same arena, so one buffer goes each way per batch;
//   - strings and maps travel only when needed (request metadata for the overlap feature; ids
//     and metadata of requests decoded in the worker).
//
// WHY request objects arrive as similarities, not embeddings (TaskKind.Reduced): a request
// object lives on the calling thread, so validation there has to read every embedding value
// anyway. It copies them once, into that thread's WebAssembly staging memory (a fixed, cache-hot
// region), and the SIMD kernel reduces them in place to n cosine similarities. The arena then
// carries 24 bytes per candidate instead of 4·dim (1.5 KB at 384 dims), so no embedding crosses
// cores: packing embeddings into the arena would mean writing cold arena memory here and
// reading it back in the worker, which costs more than scoring the request. Requests still
// in their wire encoding (TaskKind.Encoded*) travel as bytes and are decoded in the worker.
import type { FeatureConfig } from '../features.js';
import type { ThreadError } from '../../threads/error.js';
import type { ThreadReady, ThreadStartFailed } from '../../threads/messages.js';

/** One tenant's policy as it crosses threads: [tenant, confidence, maxUncertainty]. */
export type PolicyEntry = [string, number, number];

export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Bootstrap: passed as `workerData`.

export interface WorkerInit {
  protocol: typeof PROTOCOL_VERSION;
  /** The model file's bytes, validated once on the main thread; parsed again in the worker. */
  model: { bytes: Uint8Array; source: string };
  router: {
    confidenceThreshold?: number;
    maxUncertainty?: number;
    /** Feature config without the clock (functions do not cross threads). */
    features?: Partial<FeatureConfig>;
    /** The request metadata key naming the tenant, and the tenants' policies (policy.ts). */
    tenantKey?: string;
    policies?: PolicyEntry[];
  };
  /** Honour `__crashForTest` messages. Off unless a test asks for it. */
  testHooks: boolean;
  /** Append each decision's feature vector to its results (see RESULT layout below). */
  returnFeatures: boolean;
}

// ---------------------------------------------------------------------------------------------
// Task descriptors: TASK_STRIDE float64 per task, RouteBatch.count rows at RouteBatch.indexOffset
// of the arena.

export const TASK_STRIDE = 7;
export const T_ID = 0; //        task id (unique per pool, < 2^53)
export const T_KIND = 1; //      TaskKind
export const T_DIM = 2; //       reduced: the request's embedding dimension
export const T_N = 3; //         reduced: candidates
export const T_DATA = 4; //      reduced: byte offset of the numbers (below) | encoded: byte offset of the payload
export const T_LEN = 5; //       encoded: payload length in bytes
export const T_META = 6; //      reduced: index into RouteBatch.meta, or -1 when the request has no metadata

// A reduced task's numbers at T_DATA (8-aligned), n values each: created_at (f64),
// access_count (f64), success_rate (f32), cosine similarity to the query (f32).
export const reducedBytes = (n: number): number => 24 * n;

export const TaskKind = Object.freeze({
  /** Validated on the main thread, embeddings reduced to similarities there; numbers in the arena. */
  Reduced: 0,
  /** Raw JSON bytes (a docs/contracts.md §1 RoutingRequest) in the arena; decoded and validated in the worker. */
  EncodedJson: 1,
  /** Raw protobuf bytes (tiny_dancer.v1.RoutingRequest); decoded in the worker. */
  EncodedProtobuf: 2,
});

/** Request and candidate metadata, needed in the worker only for the metadata-overlap feature. */
export interface TaskMeta {
  metadata: Record<string, string>;
  candidateMetadata: Record<string, string>[];
}

// ---------------------------------------------------------------------------------------------
// Results: a stream of float64 in RouteResults.data, per task:
//   [task id, status, n, inference_time_us, feature_time_us, candidates_processed, policy,
//    then n decisions in rank order, DECISION_STRIDE values each,
//    then, when WorkerInit.returnFeatures, n × FEATURE_COUNT feature values in rank order]

export const RESULT_HEADER = 7;
export const R_ID = 0;
export const R_STATUS = 1; //    TaskStatus
export const R_N = 2; //         decisions that follow (0 on error)
export const R_INFER = 3;
export const R_FEAT = 4;
export const R_PROCESSED = 5;
export const R_POLICY = 6; //    index into RouteResults.policies, or -1: the global thresholds decided

export const DECISION_STRIDE = 5;
export const D_INDEX = 0; //     candidate index in the request
export const D_CONF = 1;
export const D_UNC = 2;
export const D_CODE = 3; //      use_lightweight (bit 0) | reason index << 1 (REASONS)
export const D_TIME = 4; //      inference_time_us

/** DecisionReason by index, for D_CODE. Order is part of the protocol. */
export const REASONS = ['model', 'breaker_open', 'uncertain', 'below_threshold'] as const;

export const TaskStatus = Object.freeze({
  Ok: 0,
  /** See RouteResults.errors for this task id. */
  Failed: 1,
});

/** A task's failure: the service's one cross-thread error shape, for one task of a batch. */
export interface TaskError extends ThreadError {
  taskId: number;
}

/** For tasks decoded in the worker: what the main thread needs to build decision objects. */
export interface DecodedInfo {
  taskId: number;
  request_id: string;
  ids: string[];
  /** null when no candidate has metadata (saves cloning n empty objects per request). */
  candidateMetadata: Record<string, string>[] | null;
  /** The request's td-top-k (wire/response.ts); null when it named none. */
  topK: number | null;
}

// ---------------------------------------------------------------------------------------------
// main → worker

export interface RouteBatch {
  type: 'route';
  batchId: number;
  /** Transferred; comes back in RouteResults.arena. */
  arena: ArrayBuffer;
  /** Byte offset (8-aligned) of the task rows in the arena, TASK_STRIDE float64 per task. */
  indexOffset: number;
  count: number;
  /** Referenced by T_META; null when no task of the batch has request metadata. */
  meta: TaskMeta[] | null;
}

/** Phase 1 of a reload: parse and hold the new model, do not use it yet. */
export interface PrepareModel {
  type: 'prepare';
  reloadId: number;
  bytes: Uint8Array;
  source: string;
}

/** Phase 2: switch to the prepared model. Batches after this message use it. */
export interface CommitModel {
  type: 'commit';
  reloadId: number;
}

/** Drop the prepared model; the current one stays. */
export interface AbortModel {
  type: 'abort';
  reloadId: number;
}

export interface SetThresholds {
  type: 'thresholds';
  seq: number;
  confidence?: number;
  maxUncertainty?: number;
}

/** Test hook: the worker exits at once with `code` (ignored unless WorkerInit.testHooks). */
export interface CrashForTest {
  type: '__crashForTest';
  code: number;
}

/** Replaces the tenant policies (and the tenant key); batches after this message use them. */
export interface SetPolicies {
  type: 'policies';
  seq: number;
  tenantKey: string;
  policies: PolicyEntry[];
}

export type ToWorker = RouteBatch | PrepareModel | CommitModel | AbortModel | SetThresholds | SetPolicies | CrashForTest;

// ---------------------------------------------------------------------------------------------
// worker → main

export interface Ready extends ThreadReady {
  version: string;
}

export interface RouteResults {
  type: 'results';
  batchId: number;
  /** The model every task of this batch was scored with. */
  modelVersion: string;
  /** The batch's arena, back for reuse; holds the results at offset 0 unless `data` is set. */
  arena: ArrayBuffer;
  /** Float64 values of results at the start of the arena. */
  resultsLength: number;
  /** The results, when they did not fit in the arena. */
  data: Float64Array | null;
  errors: TaskError[] | null;
  decoded: DecodedInfo[] | null;
  /** Labels of the tenant policies that decided tasks of this batch (R_POLICY); null when none did. */
  policies: string[] | null;
}

export type Prepared =
  | { type: 'prepared'; reloadId: number; ok: true; version: string }
  | { type: 'prepared'; reloadId: number; ok: false; message: string };

export interface Committed {
  type: 'committed';
  reloadId: number;
  version: string;
}

export type ThresholdsSet =
  | { type: 'thresholds-set'; seq: number; ok: true }
  | { type: 'thresholds-set'; seq: number; ok: false; message: string };

export type PoliciesSet =
  | { type: 'policies-set'; seq: number; ok: true }
  | { type: 'policies-set'; seq: number; ok: false; message: string };

export type FromWorker = Ready | ThreadStartFailed | RouteResults | Prepared | Committed | ThresholdsSet | PoliciesSet;
