// The chunk stage: what a chunk of request records becomes once each was scored (or failed to
// decode): decision, DLQ and response records for Kafka, rows for the decision log, and the
// request timestamps for end-to-end latency. Pure: no I/O, no clock except the `now` it is
// given, no metrics (an observer hears each outcome). Decoding and scoring happen before it
// (they are asynchronous: the pool); delivery after it (./sink.ts).
//
// Each request's records are added through one function, requestRecords, so a stage that adds
// records or headers per request (a responses topic, trace context) has one place to do it.
import type { RoutingDecision } from '../wire/types.js';
import { FEATURE_COUNT, decisionFeatures } from '../engine/features.js';
import type { ValidatedRequest } from '../engine/validate.js';
import { InvalidInputError, errorMessage, oneLine } from '../errors.js';
import type { ScoreResult } from '../resilience/breaker.js';
import { DecodeError } from '../wire/errors.js';
import { getHeader, type Encoding, type Headers } from '../wire/headers.js';
import type { RequestTrace } from '../observe/tracing.js';
import { dlqMessage } from './dlq.js';
import { DECISION_HEADERS, decisionMessages, responseMessage } from './producer.js';
import { ROUTE, type RecordWriter } from './records.js';

/** One decision as the log stores it: the decision plus where its request came from. */
export interface LoggedDecision extends RoutingDecision {
  decided_at: Date;
  /** The candidate's feature vector, for retraining. */
  features?: Float32Array | undefined;
  source_topic: string;
  source_partition: number;
  source_offset: string;
  /** The request's W3C trace id, when its record carried a trace context (or a span began one). */
  trace_id?: string | undefined;
}

/** A request record as the chunk stage needs it (a kafkajs KafkaMessage fits). */
export interface ChunkMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Headers | undefined;
  /** Record timestamp (ms since the epoch, decimal string). */
  timestamp: string;
}

/** What happened to one request record before this stage. */
export type Outcome =
  | {
      ok: true;
      message: ChunkMessage;
      encoding: Encoding;
      scored: ScoreResult;
      /** The request, when it was decoded on this thread (features are computed from it if the engine shipped none). */
      request?: ValidatedRequest | undefined;
      /** Its trace context and span (../observe/tracing.ts), ended here. */
      trace?: RequestTrace | undefined;
    }
  | { ok: false; message: ChunkMessage; encoding: Encoding; error: unknown; trace?: RequestTrace | undefined };

/** Why a record went to the DLQ, as the metrics label it. */
export type RejectKind = 'invalid' | 'internal' | DecodeError['kind'];

/**
 * The responses topic (docs/contracts.md §12): when given, each decided request also yields its
 * answer there, cut to the request's td-top-k, else `topK`, else all.
 */
export interface ResponseOptions {
  topK?: number | undefined;
}

/** Hears each outcome as the stage handles it (metrics and counters live with the caller). */
export interface ChunkObserver {
  rejected?(kind: RejectKind, encoding: Encoding, error: unknown, message: ChunkMessage): void;
  decided?(encoding: Encoding, scored: ScoreResult): void;
  decision?(d: RoutingDecision): void;
}

export interface Chunk<W extends RecordWriter = RecordWriter> {
  topic: string;
  partition: number;
  /** Offsets (decimal strings) of the first and last record of the chunk. */
  firstOffset: string;
  lastOffset: string;
  /** Decision, DLQ and response records. */
  records: W;
  rows: LoggedDecision[];
  /** Record timestamps (ms) of the decided requests, for end-to-end latency. */
  timestamps: number[];
  decided: number;
  rejected: number;
}

export function rejectKind(err: unknown): RejectKind {
  return err instanceof DecodeError ? err.kind : err instanceof InvalidInputError ? 'invalid' : 'internal';
}

/** The DLQ's td-error text for a record that could not be decided. */
export function rejectReason(err: unknown): string {
  return err instanceof InvalidInputError ? oneLine(err.message) : `internal error while decoding: ${errorMessage(err)}`;
}

/**
 * Builds a chunk from its outcomes, in record order. `records` is the writer the delivery sink
 * wants (a pack for the producer thread, kafkajs messages otherwise).
 */
export function buildChunk<W extends RecordWriter>(
  topic: string,
  partition: number,
  outcomes: readonly Outcome[],
  records: W,
  observer: ChunkObserver = {},
  now: Date = new Date(),
  responses?: ResponseOptions,
): Chunk<W> {
  if (outcomes.length === 0) throw new RangeError('a chunk holds at least one record');
  const chunk: Chunk<W> = {
    topic,
    partition,
    firstOffset: outcomes[0]!.message.offset,
    lastOffset: outcomes[outcomes.length - 1]!.message.offset,
    records,
    rows: [],
    timestamps: [],
    decided: 0,
    rejected: 0,
  };
  for (const o of outcomes) {
    if (!o.ok) {
      const m = o.message;
      const dead = dlqMessage({ topic, partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers }, rejectReason(o.error));
      if (o.trace?.headers) Object.assign(dead.headers, o.trace.headers);
      o.trace?.rejected(rejectReason(o.error));
      records.add(ROUTE.dlq, dead.key, dead.value, dead.headers);
      chunk.rejected++;
      observer.rejected?.(rejectKind(o.error), o.encoding, o.error, m);
      continue;
    }
    requestRecords(topic, partition, o, records, responses);
    requestRows(topic, partition, o, chunk.rows, observer, now);
    chunk.timestamps.push(Number(o.message.timestamp));
    chunk.decided++;
    observer.decided?.(o.encoding, o.scored);
  }
  return chunk;
}

/**
 * The Kafka records of one decided request: its decisions, then (the responses topic on) its
 * response with the same headers. They go into the same writer, so they are acknowledged, or
 * committed in a transaction, together with the chunk's other records.
 */
export function requestRecords(topic: string, partition: number, o: Extract<Outcome, { ok: true }>, out: RecordWriter, responses?: ResponseOptions): void {
  const correlation = getHeader(o.message.headers, DECISION_HEADERS.correlationId) ?? `${topic}/${partition}/${o.message.offset}`;
  const headers = decisionMessages(o.scored.response, o.encoding, correlation, out, o.trace?.headers);
  if (responses && headers) responseMessage(o.scored.response, o.encoding, responses.topK, headers, out);
  o.trace?.decided(o.scored.response.decisions, o.scored.fallback);
}

/** The decision-log rows of one decided request. */
function requestRows(topic: string, partition: number, o: Extract<Outcome, { ok: true }>, rows: LoggedDecision[], observer: ChunkObserver, now: Date): void {
  const response = o.scored.response;
  // Each decision's feature vector goes to the log so `retrain` can learn from decisions that
  // got outcomes. They come with the engine's response when the pool returned them; otherwise
  // (a breaker fallback) they are computed from the request if it was decoded here, else NULL.
  const shipped = response.features;
  const featuresOf =
    shipped !== undefined && shipped.length === response.decisions.length * FEATURE_COUNT
      ? (_id: string, r: number) => shipped.subarray(r * FEATURE_COUNT, (r + 1) * FEATURE_COUNT)
      : o.request
        ? decisionFeatures(o.request, now)
        : () => undefined;
  for (let r = 0; r < response.decisions.length; r++) {
    const d = response.decisions[r]!;
    // Spelled out rather than `{ ...d, … }`: a spread copy per decision costs at full rate.
    rows.push({
      request_id: d.request_id,
      candidate_id: d.candidate_id,
      confidence: d.confidence,
      uncertainty: d.uncertainty,
      use_lightweight: d.use_lightweight,
      rank: d.rank,
      model_version: d.model_version,
      reason: d.reason,
      metadata: d.metadata,
      inference_time_us: d.inference_time_us,
      features: featuresOf(d.candidate_id, r),
      decided_at: now,
      source_topic: topic,
      source_partition: partition,
      source_offset: o.message.offset,
      policy: d.policy,
      trace_id: o.trace?.traceId,
    });
    observer.decision?.(d);
  }
}
