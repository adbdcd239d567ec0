// Decision records (docs/contracts.md §1, §2): one per candidate, on the lightweight or heavyweight topic,
// keyed by request_id (so all decisions of a request land in one partition, in rank order),
// in the request's encoding with the same content-type, plus the model version and a
// correlation header tying a decision back to its request record, and the request's W3C trace
// context when it has one (../observe/tracing.ts). (The request id needs no header of its own:
// it is the key.) One header object shared by the request's records: kafkajs encodes every
// header of every record, and a decision record is small, so headers are a visible share of
// the producer's CPU.
import type { RoutingResponse } from '../wire/types.js';
import { decisionJson, decisionProtoBound, writeDecisionProto, writeUtf8 } from '../wire/decision-writer.js';
import { CONTENT_TYPES, type Encoding } from '../wire/headers.js';
import { answerOf, responseJson, responseProtoBound, writeResponseProto } from '../wire/response.js';
import { ROUTE, type RecordHeaders, type RecordWriter } from './records.js';

export const DECISION_HEADERS = Object.freeze({
  contentType: 'content-type',
  modelVersion: 'td-model-version',
  /** The request record's td-correlation-id when it had one, else "topic/partition/offset" of it. */
  correlationId: 'td-correlation-id',
});

/**
 * Adds the records of one response to `out` (a chunk's writer); `trace`: the request's trace
 * context headers (traceparent, tracestate), when it has one. Returns the headers object of the
 * last decision, for the request's response record (./chunk.ts), which carries the same.
 */
export function decisionMessages(
  response: RoutingResponse,
  encoding: Encoding,
  correlationId: string,
  out: RecordWriter,
  trace?: Readonly<Record<string, string>>,
): RecordHeaders | undefined {
  const contentType = CONTENT_TYPES[encoding];
  let headers: RecordHeaders | undefined;
  let headersVersion: string | undefined;
  for (const d of response.decisions) {
    // Every decision of a response normally has the same model version: one shared object.
    if (headers === undefined || headersVersion !== d.model_version) {
      headersVersion = d.model_version;
      headers = {
        [DECISION_HEADERS.contentType]: contentType,
        [DECISION_HEADERS.modelVersion]: d.model_version,
        [DECISION_HEADERS.correlationId]: correlationId,
      };
      // Copied, not spread: an object spread per request is a visible cost at full rate.
      if (trace) for (const k in trace) headers[k] = trace[k]!;
    }
    const route = d.use_lightweight ? ROUTE.lightweight : ROUTE.heavyweight;
    // Written straight into the chunk's pack: no Buffer per decision.
    if (encoding === 'protobuf') out.addWritten(route, d.request_id, headers, decisionProtoBound(d), writeDecisionProto, d);
    else {
      const json = decisionJson(d);
      out.addWritten(route, d.request_id, headers, json.length * 3, writeUtf8, json);
    }
  }
  return headers;
}

/**
 * Adds a request's response record (docs/contracts.md §12) to `out`: its answer (decisions
 * trimmed to the top k) on the responses topic, keyed by request_id, in the request's encoding,
 * with `headers` — the very object its decisions carry, so the pack writes it once.
 */
export function responseMessage(response: RoutingResponse, encoding: Encoding, topK: number | undefined, headers: RecordHeaders, out: RecordWriter): void {
  const answer = answerOf(response, topK);
  const key = answer.request_id ?? '';
  if (encoding === 'protobuf') out.addWritten(ROUTE.responses, key, headers, responseProtoBound(answer), writeResponseProto, answer);
  else {
    const json = responseJson(answer);
    out.addWritten(ROUTE.responses, key, headers, json.length * 3, writeUtf8, json);
  }
}
