// Decoding a worker's results (the float64 layout of messages.ts) into RoutingResponses, with
// the ids and metadata that never left this thread. Pure: no pool state, so it is tested on
// hand-built result arrays.
import { InvalidInputError, ModelError, TinyDancerError } from '../../errors.js';
import { DecodeError, type DecodeErrorKind } from '../../wire/errors.js';
import type { DecisionReason, RoutingDecision, RoutingResponse } from '../../wire/types.js';
import { FEATURE_COUNT } from '../features.js';
import { GLOBAL_POLICY } from '../policy.js';
import { EMPTY_METADATA } from '../validate.js';
import {
  DECISION_STRIDE, D_CODE, D_CONF, D_INDEX, D_TIME, D_UNC, REASONS, RESULT_HEADER, R_FEAT, R_ID, R_INFER, R_N, R_POLICY,
  R_PROCESSED, R_STATUS, TaskStatus, type DecodedInfo, type RouteResults, type TaskError,
} from './messages.js';

/** What this thread kept of a task while it was on the worker. */
export interface PendingTask {
  id: number;
  requestId: string;
  ids: string[];
  /** null when every candidate's metadata is empty: decisions then share EMPTY_METADATA. */
  candidateMetadata: Record<string, string>[] | null;
  /** The request's td-top-k (wire/response.ts), passed on in its response. */
  topK?: number | undefined;
}

export type TaskOutcome = { ok: true; response: RoutingResponse } | { ok: false; error: Error };

/**
 * One outcome per task of the batch, in order. `returnFeatures` must match the workers'
 * WorkerInit.returnFeatures (it decides the stride of the results).
 */
export function decodeResults(msg: RouteResults, tasks: readonly PendingTask[], returnFeatures: boolean): TaskOutcome[] {
  const errors = new Map<number, TaskError>();
  if (msg.errors) for (const e of msg.errors) errors.set(e.taskId, e);
  const decoded = new Map<number, DecodedInfo>();
  if (msg.decoded) for (const d of msg.decoded) decoded.set(d.taskId, d);
  const data = msg.data ?? new Float64Array(msg.arena, 0, msg.resultsLength);
  const out: TaskOutcome[] = [];
  let p = 0;
  for (const task of tasks) {
    if (data[p + R_ID] !== task.id) {
      // Protocol bug: never resolve a task with another task's answer.
      out.push({ ok: false, error: new TinyDancerError(`router pool protocol error: result for task ${data[p + R_ID]} where ${task.id} was expected`) });
      continue;
    }
    const n = data[p + R_N]!;
    if (data[p + R_STATUS] === TaskStatus.Ok) {
      const info = decoded.get(task.id);
      // Tasks decoded in the worker: their ids and metadata came back with the results.
      const known: PendingTask = info
        ? { id: task.id, requestId: info.request_id, ids: info.ids, candidateMetadata: info.candidateMetadata, topK: info.topK ?? undefined }
        : task;
      const pi = data[p + R_POLICY]!;
      const policy = pi >= 0 && msg.policies ? (msg.policies[pi] ?? GLOBAL_POLICY) : GLOBAL_POLICY;
      out.push({ ok: true, response: buildResponse(known, data, p, n, msg.modelVersion, policy, returnFeatures) });
    } else {
      out.push({ ok: false, error: rebuildError(errors.get(task.id)) });
    }
    p += RESULT_HEADER + n * (DECISION_STRIDE + (returnFeatures ? FEATURE_COUNT : 0)); // n is 0 for a failed task
  }
  return out;
}

function buildResponse(task: PendingTask, data: Float64Array, p: number, n: number, version: string, policy: string, returnFeatures: boolean): RoutingResponse {
  const { requestId, ids, candidateMetadata } = task;
  const decisions = new Array<RoutingDecision>(n);
  let lightweight = 0;
  for (let r = 0, q = p + RESULT_HEADER; r < n; r++, q += DECISION_STRIDE) lightweight += data[q + D_CODE]! & 1;
  let q = p + RESULT_HEADER;
  for (let r = 0; r < n; r++, q += DECISION_STRIDE) {
    const i = data[q + D_INDEX]!;
    const code = data[q + D_CODE]!;
    // Same fields, same order as Router#route builds them.
    decisions[r] = {
      request_id: requestId,
      candidate_id: ids[i]!,
      confidence: data[q + D_CONF]!,
      uncertainty: data[q + D_UNC]!,
      use_lightweight: (code & 1) === 1,
      rank: r,
      model_version: version,
      reason: REASONS[code >> 1] as DecisionReason,
      metadata: candidateMetadata ? candidateMetadata[i]! : EMPTY_METADATA,
      inference_time_us: data[q + D_TIME]!,
      candidate_count: n,
      lightweight_count: lightweight,
      policy,
    };
  }
  const response: RoutingResponse = {
    decisions,
    inference_time_us: data[p + R_INFER]!,
    feature_time_us: data[p + R_FEAT]!,
    candidates_processed: data[p + R_PROCESSED]!,
    policy,
  };
  if (task.topK !== undefined) response.top_k = task.topK;
  if (returnFeatures) response.features = Float32Array.from(data.subarray(q, q + n * FEATURE_COUNT));
  return response;
}

/** The worker's error report as the class it was thrown as, where this thread knows it. */
export function rebuildError(e: TaskError | undefined): Error {
  if (!e) return new TinyDancerError('router pool: a task failed without an error report');
  if (e.name === 'DecodeError' && e.kind) {
    return new DecodeError(e.kind as DecodeErrorKind, e.message);
  }
  if (e.name === 'InvalidInputError' || e.name === 'DecodeError') return new InvalidInputError(e.message);
  if (e.name === 'ModelError') return new ModelError(e.message);
  return new TinyDancerError(e.message, { retriable: e.retriable });
}
