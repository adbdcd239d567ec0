// The decision writers: a RoutingDecision as JSON, or as protobuf written by hand into a
// caller's buffer (the producer thread's pack, stream/records.ts) instead of through
// protobufjs, whose Writer builds a list of operation objects per field and a Buffer per
// message — a visible share of the consuming thread at full rate, plus the garbage. Fields are
// written in field-number order and always present, exactly as protobufjs writes them (a test
// checks the bytes are identical).
import type { RoutingDecision } from './types.js';
import type { Encoding } from './headers.js';

/** JSON of a decision with exactly the fields of contracts §1, in a fixed order. */
export function decisionJson(d: RoutingDecision): string {
  return JSON.stringify({
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
    candidate_count: d.candidate_count,
    lightweight_count: d.lightweight_count,
    policy: d.policy,
  });
}

/** An upper bound of writeDecisionProto's output for `d`, in bytes. */
export function decisionProtoBound(d: RoutingDecision): number {
  // 10 tags, 2 floats, 2 varints of ≤ 10 bytes, 4 string lengths of ≤ 5, strings at ≤ 3 bytes a unit.
  // Plus the two counts (tag and a 5-byte varint each).
  let n = 10 + 8 + 20 + 20 + 12 + 3 * (d.request_id.length + d.candidate_id.length + d.model_version.length + d.reason.length);
  const m = d.metadata;
  for (const k in m) n += 1 + 5 + 2 + 10 + 3 * (k.length + (m[k] as string).length);
  if (d.policy !== undefined) n += 1 + 5 + 3 * d.policy.length;
  return n;
}

export function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  // v is a non-negative integer ≤ 2^53: no bit operations above 2^31.
  while (v >= 0x80) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[pos++] = v;
  return pos;
}

export function writeString(buf: Buffer, pos: number, tag: number, s: string): number {
  buf[pos++] = tag;
  // Up to 42 UTF-16 units are at most 126 bytes: a one-byte length, written after the bytes.
  if (s.length <= 42) {
    const n = buf.write(s, pos + 1, 'utf8');
    buf[pos] = n;
    return pos + 1 + n;
  }
  const n = Buffer.byteLength(s, 'utf8');
  pos = writeVarint(buf, pos, n);
  return pos + buf.write(s, pos, 'utf8');
}

/**
 * Writes `d` as a protobuf RoutingDecision at `buf[pos..]` and returns where it ends; `buf` must
 * have decisionProtoBound(d) bytes of room from `pos`.
 */
export function writeDecisionProto(buf: Buffer, pos: number, d: RoutingDecision): number {
  pos = writeString(buf, pos, 0x0a, d.request_id);
  pos = writeString(buf, pos, 0x12, d.candidate_id);
  buf[pos++] = 0x1d;
  pos = buf.writeFloatLE(d.confidence, pos);
  buf[pos++] = 0x25;
  pos = buf.writeFloatLE(d.uncertainty, pos);
  buf[pos++] = 0x28;
  buf[pos++] = d.use_lightweight ? 1 : 0;
  buf[pos++] = 0x30;
  pos = writeVarint(buf, pos, d.rank >>> 0);
  pos = writeString(buf, pos, 0x3a, d.model_version);
  pos = writeString(buf, pos, 0x42, d.reason);
  const m = d.metadata;
  for (const k in m) {
    const v = m[k] as string;
    const kn = Buffer.byteLength(k, 'utf8');
    const vn = Buffer.byteLength(v, 'utf8');
    buf[pos++] = 0x4a;
    pos = writeVarint(buf, pos, 2 + varintSize(kn) + kn + varintSize(vn) + vn);
    buf[pos++] = 0x0a;
    pos = writeVarint(buf, pos, kn);
    pos += buf.write(k, pos, 'utf8');
    buf[pos++] = 0x12;
    pos = writeVarint(buf, pos, vn);
    pos += buf.write(v, pos, 'utf8');
  }
  buf[pos++] = 0x50;
  pos = writeVarint(buf, pos, Math.max(0, Math.round(d.inference_time_us)));
  // 11 candidate_count, 12 lightweight_count (docs/contracts.md §12): absent when not set.
  if (d.candidate_count !== undefined) {
    buf[pos++] = 0x58;
    pos = writeVarint(buf, pos, d.candidate_count >>> 0);
  }
  if (d.lightweight_count !== undefined) {
    buf[pos++] = 0x60;
    pos = writeVarint(buf, pos, d.lightweight_count >>> 0);
  }
  // 13 policy (docs/contracts.md §10): absent when the decision carries none.
  if (d.policy !== undefined) pos = writeString(buf, pos, 0x6a, d.policy);
  return pos;
}

export function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Writes a string's UTF-8 bytes at `buf[pos..]` (room: 3 bytes per UTF-16 unit); returns the end. */
export function writeUtf8(buf: Buffer, pos: number, s: string): number {
  return pos + buf.write(s, pos, 'utf8');
}

export function encodeDecision(d: RoutingDecision, encoding: Encoding): Buffer {
  if (encoding === 'json') return Buffer.from(decisionJson(d), 'utf8');
  const buf = Buffer.allocUnsafe(decisionProtoBound(d));
  return buf.subarray(0, writeDecisionProto(buf, 0, d));
}
