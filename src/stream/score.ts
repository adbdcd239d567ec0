// Decoding and scoring one request record, before the chunk stage: the record is decoded here
// (or, for the encodings the pool decodes itself, sent to it as raw bytes) and scored through
// the breaker. Never rejects: bad input and engine failures are outcomes (they go to the DLQ).
import type { KafkaMessage } from 'kafkajs';
import type { ValidatedRequest } from '../engine/validate.js';
import { encodingOf, getHeader, type Encoding, type Headers } from '../wire/headers.js';
import type { ScoreResult, ScoreTask, ScoringBreaker } from '../resilience/breaker.js';
import type { RequestTracer } from '../observe/tracing.js';
import { TRACE_HEADERS } from '../wire/trace.js';
import type { Outcome } from './chunk.js';

/** A way to decode one record; the default decodes on this thread. */
export type Decoder = (value: Buffer | null, encoding: Encoding) => ValidatedRequest;

export interface Scoring {
  breaker: ScoringBreaker;
  decode: Decoder;
  /** Which records go to the scorer as raw bytes (decoded on a worker thread); none when absent. */
  encodedScoring?: ((encoding: Encoding) => boolean) | undefined;
  maxMessageBytes: number;
  /** Begins each request's trace (spans, the W3C headers its records carry); none when absent. */
  tracer?: RequestTracer | undefined;
}

/** `topic` and `partition`: where the record was read (its span says so). */
export async function scoreRecord(msg: KafkaMessage, s: Scoring, topic: string, partition: number): Promise<Outcome> {
  const headers = msg.headers as Headers | undefined;
  const encoding = encodingOf(getHeader(headers, 'content-type'));
  const trace = s.tracer?.begin(getHeader(headers, TRACE_HEADERS.traceparent), getHeader(headers, TRACE_HEADERS.tracestate), { topic, partition, offset: msg.offset });
  const message = { offset: msg.offset, key: msg.key, value: msg.value, headers, timestamp: msg.timestamp };
  // Decoded here, or by the pool's worker from the raw bytes; then the request is decoded here
  // only if the breaker's fallback needs it.
  let request: ValidatedRequest | undefined;
  const decodeHere = (): ValidatedRequest => (request ??= s.decode(msg.value, encoding));
  let task: ScoreTask;
  try {
    const raw = msg.value;
    task =
      s.encodedScoring?.(encoding) === true && raw !== null && raw.length > 0 && raw.length <= s.maxMessageBytes
        ? { kind: 'encoded', bytes: raw, encoding }
        : { kind: 'validated', request: decodeHere() };
  } catch (error) {
    return { ok: false, message, encoding, error, trace };
  }
  let scored: ScoreResult;
  try {
    scored = await s.breaker.score(task, decodeHere);
  } catch (error) {
    return { ok: false, message, encoding, error, trace };
  }
  return { ok: true, message, encoding, scored, request, trace };
}
