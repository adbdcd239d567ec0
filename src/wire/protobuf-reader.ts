// A protobuf RoutingRequest reader, written for this one message instead of protobufjs's
// generic decoder: the generic one materialises every packed float as a JS number in an array
// (thousands of boxed values for a request of a few candidates of a few hundred dimensions),
// while here a packed field becomes a Float32Array in one per-message arena (./float-arena.ts),
// which validateRequest then copies once into the engine's packed layout. The field numbers are
// those ./schema.ts checks against routing.proto at start-up.
// Pure: every problem with the bytes is a DecodeError of kind 'protobuf'.
import { isUtf8 } from 'node:buffer';
import { DecodeError } from './errors.js';
import { FloatArena } from './float-arena.js';

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

/** Wire bytes → the request object shape (typed arrays for embeddings), not yet validated. */
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
