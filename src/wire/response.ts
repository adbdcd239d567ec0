// A request's answer as one message (docs/contracts.md §12): its RoutingResponse, decisions
// ranked and trimmed to the top k, with the request id and model version. The responses topic
// and `triage` write it with these functions, so a stream consumer and a batch job read the same
// bytes. The protobuf form is written by hand into the caller's buffer like the decisions
// (./decision-writer.ts), each decision by writeDecisionProto: byte for byte what protobufjs
// writes (a test checks it).
import { LIMITS, type RoutingResponse } from './types.js';
import type { Encoding } from './headers.js';
import { decisionJson, decisionProtoBound, varintSize, writeDecisionProto, writeString, writeVarint } from './decision-writer.js';

/** The request metadata key that trims a request's answer to its best k decisions. */
export const TOP_K_KEY = 'td-top-k';

/**
 * The request's own top k: its metadata's `td-top-k` when that is a whole number from 1 to the
 * candidate limit, written in decimal digits; anything else is no choice (the default applies),
 * since a request must not be refused for a hint about its answer's length.
 */
export function requestTopK(metadata: Readonly<Record<string, string>> | undefined): number | undefined {
  const v = metadata?.[TOP_K_KEY];
  if (v === undefined || !/^\d{1,4}$/.test(v)) return undefined;
  const k = Number(v);
  return k >= 1 && k <= LIMITS.maxCandidates ? k : undefined;
}

/**
 * The answer to a request: `response` (the engine's, decisions in rank order) with its decisions
 * cut to the request's own top k, else `topK`, else all, and the request id and model version
 * filled in. `candidates_processed` stays the request's full count.
 */
export function answerOf(response: RoutingResponse, topK?: number): RoutingResponse {
  const all = response.decisions;
  const k = response.top_k ?? topK;
  const first = all[0];
  const answer: RoutingResponse = {
    decisions: k !== undefined && k < all.length ? all.slice(0, Math.max(0, k)) : all,
    inference_time_us: response.inference_time_us,
    feature_time_us: response.feature_time_us,
    candidates_processed: response.candidates_processed,
    request_id: response.request_id ?? first?.request_id ?? '',
    model_version: response.model_version ?? first?.model_version ?? '',
  };
  const policy = response.policy ?? first?.policy;
  if (policy !== undefined) answer.policy = policy;
  return answer;
}

/**
 * JSON of an answer: request_id, model_version, policy, candidates_processed, inference_time_us,
 * feature_time_us, then the decisions as ./decision-writer.ts writes them.
 */
export function responseJson(r: RoutingResponse): string {
  const head = JSON.stringify({
    request_id: r.request_id ?? '',
    model_version: r.model_version ?? '',
    policy: r.policy,
    candidates_processed: r.candidates_processed,
    inference_time_us: r.inference_time_us,
    feature_time_us: r.feature_time_us,
  });
  const parts = new Array<string>(r.decisions.length);
  for (let i = 0; i < parts.length; i++) parts[i] = decisionJson(r.decisions[i]!);
  return `${head.slice(0, -1)},"decisions":[${parts.join(',')}]}`;
}

/** An upper bound of writeResponseProto's output for `r`, in bytes. */
export function responseProtoBound(r: RoutingResponse): number {
  // Per decision a tag and a 5-byte length; three varints of ≤ 10 bytes and two strings.
  let n = 3 * 11 + 2 * 6 + 3 * ((r.request_id?.length ?? 0) + (r.model_version?.length ?? 0));
  if (r.policy !== undefined) n += 6 + 3 * r.policy.length;
  for (const d of r.decisions) n += 6 + decisionProtoBound(d);
  return n;
}

function uint(v: number): number {
  return Math.max(0, Math.round(v));
}

/**
 * Writes `r` as a protobuf RoutingResponse at `buf[pos..]` and returns where it ends; `buf` must
 * have responseProtoBound(r) bytes of room from `pos`.
 */
export function writeResponseProto(buf: Buffer, pos: number, r: RoutingResponse): number {
  for (const d of r.decisions) {
    // 1 decisions: the length comes first but is known only once the decision is written, so it
    // is written 5 bytes on (room for any length) and moved back behind its varint.
    buf[pos++] = 0x0a;
    const body = pos + 5;
    const end = writeDecisionProto(buf, body, d);
    const n = end - body;
    const at = writeVarint(buf, pos, n);
    if (at !== body) buf.copyWithin(at, body, end);
    pos = at + n;
  }
  buf[pos++] = 0x10;
  pos = writeVarint(buf, pos, uint(r.inference_time_us));
  buf[pos++] = 0x18;
  pos = writeVarint(buf, pos, uint(r.feature_time_us));
  buf[pos++] = 0x20;
  pos = writeVarint(buf, pos, r.candidates_processed >>> 0);
  pos = writeString(buf, pos, 0x2a, r.request_id ?? '');
  pos = writeString(buf, pos, 0x32, r.model_version ?? '');
  if (r.policy !== undefined) pos = writeString(buf, pos, 0x3a, r.policy);
  return pos;
}

/** An answer in `encoding`, as the responses topic carries it. */
export function encodeResponse(r: RoutingResponse, encoding: Encoding): Buffer {
  if (encoding === 'json') return Buffer.from(responseJson(r), 'utf8');
  const buf = Buffer.allocUnsafe(responseProtoBound(r));
  return buf.subarray(0, writeResponseProto(buf, 0, r));
}

/** An answer as one length-delimited protobuf record (a varint length, then the message). */
export function encodeResponseDelimited(r: RoutingResponse): Buffer {
  const bound = responseProtoBound(r);
  const buf = Buffer.allocUnsafe(5 + bound);
  const end = writeResponseProto(buf, 5, r);
  const n = end - 5;
  const start = 5 - varintSize(n);
  writeVarint(buf, start, n);
  return buf.subarray(start, end);
}
