// Kafka payload codec (SPEC §1): RoutingRequest in, RoutingDecision out, as JSON or protobuf.
// Pure: no I/O after the schema is loaded (once), no timers; every input problem is a
// DecodeError with a one-line reason fit for a `td-error` DLQ header.
//
// Requests in protobuf are read by a small wire-format reader instead of protobufjs's generic
// decoder: the generic one materialises every packed float as a JS number in an array (for a
// 10 x 384 request, ~4 200 boxed values), while here a packed field becomes a Float32Array
// view on the message bytes (or one copy when unaligned), which validateRequest then copies
// once into the engine's packed layout. The field numbers are checked against the loaded
// routing.proto at start-up, so the schema file stays the single source of truth.
// Decisions are encoded with protobufjs (small messages; its generated encoder is fast).
import { isUtf8 } from 'node:buffer';
import { endianness } from 'node:os';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { InvalidInputError, oneLine } from '../errors.js';
import { validateRequest, type ValidatedRequest } from '../engine/validate.js';
import type { RoutingDecision, RoutingRequest } from '../engine/types.js';

export type Encoding = 'json' | 'protobuf';

export const CONTENT_TYPES: Readonly<Record<Encoding, string>> = Object.freeze({
  json: 'application/json',
  protobuf: 'application/x-protobuf',
});

/** What went wrong, coarsely: the DLQ metric's label and the test's handle. */
export type DecodeErrorKind = 'too_large' | 'utf8' | 'json' | 'protobuf' | 'invalid';

export class DecodeError extends InvalidInputError {
  readonly kind: DecodeErrorKind;
  constructor(kind: DecodeErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(oneLine(message, 400), options);
    this.kind = kind;
  }
}

export type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;
export type Headers = Record<string, HeaderValue>;

function headerString(v: HeaderValue): string | undefined {
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined) return undefined;
  return typeof first === 'string' ? first : first.toString('latin1');
}

/** Reads a header by name (exact name first, then case-insensitively). */
export function getHeader(headers: Headers | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  const exact = headers[name];
  if (exact !== undefined) return headerString(exact);
  const lower = name.toLowerCase();
  for (const k of Object.keys(headers)) if (k.toLowerCase() === lower) return headerString(headers[k]);
  return undefined;
}

/** SPEC §1: protobuf when content-type is application/x-protobuf (parameters ignored), JSON otherwise. */
export function encodingOf(contentType: string | undefined): Encoding {
  if (contentType === undefined) return 'json';
  const media = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return media === CONTENT_TYPES.protobuf ? 'protobuf' : 'json';
}

// ---------------------------------------------------------------------------------------------
// Schema

const PROTO_PATH = fileURLToPath(new URL('../../proto/tiny_dancer/v1/routing.proto', import.meta.url));

/** The field numbers the request reader relies on, checked against the .proto at load. */
const REQUEST_FIELDS = {
  'tiny_dancer.v1.RoutingRequest': { request_id: [1, 'string'], query_embedding: [2, 'float'], candidates: [3, 'tiny_dancer.v1.Candidate'], metadata: [4, 'string'] },
  'tiny_dancer.v1.Candidate': {
    id: [1, 'string'],
    embedding: [2, 'float'],
    metadata: [3, 'string'],
    created_at: [4, 'int64'],
    access_count: [5, 'uint64'],
    success_rate: [6, 'float'],
  },
} as const;

export interface Schema {
  root: protobuf.Root;
  RoutingRequest: protobuf.Type;
  RoutingDecision: protobuf.Type;
  RoutingResponse: protobuf.Type;
}

let cachedSchema: Schema | undefined;

/** Loads routing.proto once (the only I/O of this module) and checks the field layout. */
export function loadSchema(protoPath: string = PROTO_PATH): Schema {
  if (cachedSchema && protoPath === PROTO_PATH) return cachedSchema;
  // keepCase: the JSON and protobuf field names are the same snake_case names (SPEC §1).
  const root = new protobuf.Root().loadSync(protoPath, { keepCase: true });
  root.resolveAll();
  for (const [typeName, fields] of Object.entries(REQUEST_FIELDS)) {
    const type = root.lookupType(typeName);
    for (const [name, [id, fieldType]] of Object.entries(fields)) {
      const f = type.fields[name];
      const actual = f?.resolvedType ? f.resolvedType.fullName.replace(/^\./, '') : f?.type;
      if (!f || f.id !== id || actual !== fieldType) {
        throw new Error(`${protoPath}: ${typeName}.${name} must be field ${id} of type ${fieldType}; the codec's wire reader depends on it`);
      }
    }
  }
  const schema: Schema = {
    root,
    RoutingRequest: root.lookupType('tiny_dancer.v1.RoutingRequest'),
    RoutingDecision: root.lookupType('tiny_dancer.v1.RoutingDecision'),
    RoutingResponse: root.lookupType('tiny_dancer.v1.RoutingResponse'),
  };
  if (protoPath === PROTO_PATH) cachedSchema = schema;
  return schema;
}

// ---------------------------------------------------------------------------------------------
// Decoding requests

const LITTLE_ENDIAN = endianness() === 'LE';
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function wireFail(message: string): never {
  throw new DecodeError('protobuf', `not a valid protobuf RoutingRequest: ${message}`);
}

/** Minimal protobuf wire reader over one message's bytes. */
class Wire {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint32(): number {
    // Values above 2^32 are truncated like protobufjs does for uint32; lengths are checked separately.
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) wireFail('truncated varint');
      const b = this.buf[this.pos++]!;
      if (shift < 32) result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
    return wireFail('varint longer than 10 bytes');
  }

  /** A 64-bit varint as a JS number (exact up to 2^53) or a bigint beyond that. */
  varint64(signed: boolean): number | bigint {
    let lo = 0;
    let hi = 0;
    let i = 0;
    for (; ; i++) {
      if (i >= 10) wireFail('varint longer than 10 bytes');
      if (this.pos >= this.end) wireFail('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if ((b & 0x80) === 0) break;
    }
    lo >>>= 0;
    hi >>>= 0;
    if (signed && hi & 0x80000000) {
      const v = BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
      return v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    if (hi < 0x200000) return hi * 0x100000000 + lo;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  length(): number {
    const len = this.varint32();
    if (len > this.end - this.pos) wireFail(`a length of ${len} bytes runs past the end of the message`);
    return len;
  }

  string(field: string): string {
    const len = this.length();
    const start = this.pos;
    this.pos += len;
    if (Buffer.isBuffer(this.buf)) {
      // Decoding replaces every invalid sequence with U+FFFD, so a result without one proves
      // the bytes were valid; only a result with one needs the exact (slower) check.
      const text = this.buf.toString('utf8', start, start + len);
      if (text.includes('\uFFFD') && !isUtf8(this.buf.subarray(start, start + len))) wireFail(`${field} is not valid UTF-8`);
      return text;
    }
    try {
      return utf8Decoder.decode(this.buf.subarray(start, start + len));
    } catch {
      return wireFail(`${field} is not valid UTF-8`);
    }
  }

  float32(): number {
    if (this.end - this.pos < 4) wireFail('truncated float');
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    scratchU8[0] = b[p]!;
    scratchU8[1] = b[p + 1]!;
    scratchU8[2] = b[p + 2]!;
    scratchU8[3] = b[p + 3]!;
    return scratchView.getFloat32(0, true);
  }

  skip(wireType: number, field: number): void {
    switch (wireType) {
      case 0:
        this.varint64(false);
        return;
      case 1:
        if (this.end - this.pos < 8) wireFail('truncated 64-bit field');
        this.pos += 8;
        return;
      case 2:
        this.pos += this.length();
        return;
      case 5:
        if (this.end - this.pos < 4) wireFail('truncated 32-bit field');
        this.pos += 4;
        return;
      default:
        wireFail(`field ${field} has unsupported wire type ${wireType}`);
    }
  }
}

/**
 * All packed floats of one message are copied into ONE aligned buffer (sized by the message,
 * so it always fits): a Float32Array cannot view bytes at an odd offset, and Kafka hands out
 * slices of a fetch buffer at any offset, so copying per field would mean an ArrayBuffer
 * allocation per candidate — measurably slower than one allocation and a few memcpy.
 */
class FloatArena {
  private f32: Float32Array | undefined;
  private u8: Uint8Array | undefined;
  private used = 0;
  constructor(private readonly capacity: number) {}

  take(src: Uint8Array, start: number, count: number): Float32Array {
    if (!this.f32) {
      this.f32 = new Float32Array(this.capacity);
      this.u8 = new Uint8Array(this.f32.buffer);
    }
    const at = this.used;
    this.used += count;
    const out = this.f32.subarray(at, at + count);
    if (LITTLE_ENDIAN && Buffer.isBuffer(src)) {
      src.copy(this.u8!, at * 4, start, start + count * 4);
    } else if (LITTLE_ENDIAN) {
      this.u8!.set(src.subarray(start, start + count * 4), at * 4);
    } else {
      const view = new DataView(src.buffer, src.byteOffset + start, count * 4);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
    }
    return out;
  }
}

const scratchU8 = new Uint8Array(4);
const scratchView = new DataView(scratchU8.buffer);

/**
 * Collects a repeated float field, which may arrive packed (one or more length-delimited
 * chunks) or unpacked (one fixed32 per value). The common case — one packed chunk — yields a
 * view on the message bytes without copying.
 */
class Floats {
  private parts: Float32Array[] = [];
  private loose: number[] = [];

  constructor(private readonly arena: FloatArena) {}

  packed(w: Wire, field: string): void {
    const len = w.length();
    if (len % 4 !== 0) wireFail(`${field}: packed floats take ${len} bytes, not a multiple of 4`);
    const start = w.pos;
    w.pos += len;
    this.flushLoose();
    this.parts.push(this.arena.take(w.buf, start, len / 4));
  }

  single(w: Wire): void {
    this.loose.push(w.float32());
  }

  private flushLoose(): void {
    if (this.loose.length > 0) {
      this.parts.push(Float32Array.from(this.loose));
      this.loose = [];
    }
  }

  result(): Float32Array | undefined {
    this.flushLoose();
    if (this.parts.length === 0) return undefined;
    if (this.parts.length === 1) return this.parts[0];
    let total = 0;
    for (const p of this.parts) total += p.length;
    const out = new Float32Array(total);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

function expectWire(actual: number, expected: number, name: string): void {
  if (actual !== expected) wireFail(`${name} has wire type ${actual}, expected ${expected}`);
}

function readMapEntry(w: Wire, into: Record<string, string>, name: string): void {
  const len = w.length();
  const end = w.pos + len;
  const entry = new Wire(w.buf, w.pos, end);
  let key = '';
  let value = '';
  while (entry.pos < end) {
    const tag = entry.varint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) {
      expectWire(wt, 2, `${name} key`);
      key = entry.string(`${name} key`);
    } else if (field === 2) {
      expectWire(wt, 2, `${name} value`);
      value = entry.string(`${name} value`);
    } else entry.skip(wt, field);
  }
  w.pos = end;
  // A map key that repeats keeps the last value, as protobuf specifies. "__proto__" must not
  // reach the prototype setter.
  if (key === '__proto__') Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
  else into[key] = value;
}

interface WireCandidate {
  id?: string;
  embedding?: Float32Array;
  metadata?: Record<string, string>;
  created_at?: number | bigint;
  access_count?: number | bigint;
  success_rate?: number;
}

function readCandidate(w: Wire, index: number, arena: FloatArena): WireCandidate {
  const len = w.length();
  const end = w.pos + len;
  const c = new Wire(w.buf, w.pos, end);
  const out: WireCandidate = {};
  const emb = new Floats(arena);
  while (c.pos < end) {
    const tag = c.varint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectWire(wt, 2, `candidates[${index}].id`);
        out.id = c.string(`candidates[${index}].id`);
        break;
      case 2:
        if (wt === 2) emb.packed(c, `candidates[${index}].embedding`);
        else if (wt === 5) emb.single(c);
        else wireFail(`candidates[${index}].embedding has wire type ${wt}`);
        break;
      case 3:
        expectWire(wt, 2, `candidates[${index}].metadata`);
        readMapEntry(c, (out.metadata ??= {}), `candidates[${index}].metadata`);
        break;
      case 4:
        expectWire(wt, 0, `candidates[${index}].created_at`);
        out.created_at = c.varint64(true);
        break;
      case 5:
        expectWire(wt, 0, `candidates[${index}].access_count`);
        out.access_count = c.varint64(false);
        break;
      case 6:
        expectWire(wt, 5, `candidates[${index}].success_rate`);
        out.success_rate = c.float32();
        break;
      default:
        if (field === 0) wireFail('field number 0');
        c.skip(wt, field);
    }
  }
  w.pos = end;
  const e = emb.result();
  // proto3: an absent repeated field is empty; validateRequest then reports the dimension mismatch.
  out.embedding = e ?? new Float32Array(0);
  return out;
}

/** Wire bytes → the §1 object shape (typed arrays for embeddings), not yet validated. */
export function readProtobufRequest(bytes: Uint8Array): Record<string, unknown> {
  const w = new Wire(bytes, 0, bytes.length);
  const out: Record<string, unknown> = {};
  const arena = new FloatArena(bytes.length >>> 2);
  const query = new Floats(arena);
  const candidates: WireCandidate[] = [];
  let metadata: Record<string, string> | undefined;
  while (w.pos < w.end) {
    const tag = w.varint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectWire(wt, 2, 'request_id');
        out.request_id = w.string('request_id');
        break;
      case 2:
        if (wt === 2) query.packed(w, 'query_embedding');
        else if (wt === 5) query.single(w);
        else wireFail(`query_embedding has wire type ${wt}`);
        break;
      case 3:
        expectWire(wt, 2, 'candidates');
        candidates.push(readCandidate(w, candidates.length, arena));
        break;
      case 4:
        expectWire(wt, 2, 'metadata');
        readMapEntry(w, (metadata ??= {}), 'metadata');
        break;
      default:
        if (field === 0) wireFail('field number 0');
        w.skip(wt, field);
    }
  }
  const q = query.result();
  if (q !== undefined) out.query_embedding = q;
  if (candidates.length > 0) out.candidates = candidates;
  if (metadata !== undefined) out.metadata = metadata;
  return out;
}

function validated(input: unknown): ValidatedRequest {
  try {
    return validateRequest(input);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new DecodeError('invalid', err.message, { cause: err });
    throw err;
  }
}

export interface DecodeOptions {
  /** Refuse larger payloads before parsing them. */
  maxBytes?: number;
}

/**
 * Decodes and validates one request. Throws DecodeError (and only DecodeError, for any bytes)
 * with a one-line reason.
 */
export function decodeRequest(value: Uint8Array | null, encoding: Encoding, opts: DecodeOptions = {}): ValidatedRequest {
  if (value === null || value.length === 0) throw new DecodeError('invalid', 'empty message: a RoutingRequest is required');
  if (opts.maxBytes !== undefined && value.length > opts.maxBytes) {
    throw new DecodeError('too_large', `message is ${value.length} bytes, the limit is ${opts.maxBytes}`);
  }
  if (encoding === 'protobuf') {
    loadSchema();
    let obj: Record<string, unknown>;
    try {
      obj = readProtobufRequest(value);
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      throw new DecodeError('protobuf', `not a valid protobuf RoutingRequest: ${(err as Error).message}`, { cause: err });
    }
    return validated(obj);
  }
  if (!isUtf8(value)) throw new DecodeError('utf8', 'not valid UTF-8 (JSON requests must be UTF-8 text)');
  const text = Buffer.isBuffer(value) ? value.toString('utf8') : utf8Decoder.decode(value);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new DecodeError('json', `not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    const what = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed;
    throw new DecodeError('invalid', `not a JSON object: the request is ${what}`);
  }
  return validated(parsed);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** JSON of a decision with exactly the §1 fields, in a fixed order. */
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
    policy: d.policy,
  });
}

// The protobuf RoutingDecision, written by hand into a caller's buffer (the producer thread's
// pack, ./records.ts) instead of through protobufjs: its Writer builds a list of operation
// objects per field and a Buffer per message — about 8 % of the consuming thread at full rate,
// plus the garbage. Fields are written in field-number order and always present, exactly as
// protobufjs writes them (a test checks the bytes are identical).

/** An upper bound of writeDecisionProto's output for `d`, in bytes. */
export function decisionProtoBound(d: RoutingDecision): number {
  // 10 tags, 2 floats, 2 varints of ≤ 10 bytes, 4 string lengths of ≤ 5, strings at ≤ 3 bytes a unit.
  let n = 10 + 8 + 20 + 20 + 3 * (d.request_id.length + d.candidate_id.length + d.model_version.length + d.reason.length);
  const m = d.metadata;
  for (const k in m) n += 1 + 5 + 2 + 10 + 3 * (k.length + (m[k] as string).length);
  if (d.policy !== undefined) n += 1 + 5 + 3 * d.policy.length;
  return n;
}

function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  // v is a non-negative integer ≤ 2^53: no bit operations above 2^31.
  while (v >= 0x80) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[pos++] = v;
  return pos;
}

function writeString(buf: Buffer, pos: number, tag: number, s: string): number {
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
  // 13 policy (docs/contracts.md §10): absent when the decision carries none.
  if (d.policy !== undefined) pos = writeString(buf, pos, 0x6a, d.policy);
  return pos;
}

function varintSize(v: number): number {
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

/** Decodes a decision record (clients, tests, the demo's reader). Throws DecodeError. */
export function decodeDecision(value: Uint8Array, encoding: Encoding): RoutingDecision {
  if (encoding === 'json') {
    try {
      return JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')) as RoutingDecision;
    } catch (err) {
      throw new DecodeError('json', `not a JSON decision: ${(err as Error).message}`);
    }
  }
  const s = loadSchema();
  try {
    const m = s.RoutingDecision.decode(value);
    return s.RoutingDecision.toObject(m, { longs: Number, defaults: true }) as RoutingDecision;
  } catch (err) {
    throw new DecodeError('protobuf', `not a protobuf RoutingDecision: ${(err as Error).message}`);
  }
}

/** Encodes a request (clients, tests, benchmarks, the demo's generator). */
export function encodeRequest(req: RoutingRequest, encoding: Encoding): Buffer {
  if (encoding === 'json') {
    return Buffer.from(
      JSON.stringify(req, (_k, v: unknown) => (v instanceof Float32Array ? Array.from(v) : v)),
      'utf8',
    );
  }
  const s = loadSchema();
  const bytes = s.RoutingRequest.encode(req as unknown as Record<string, unknown>).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
