// Outcome records on the outcomes topic (TD_TOPIC_OUTCOMES): JSON or protobuf, told apart by
// the `content-type` header exactly as requests are (docs/contracts.md §1), decoded and validated here.
// Pure: no I/O beyond loading routing.proto once (through STREAM's schema loader, so one .proto
// file stays the source of truth), no timers. Every problem with the bytes is a DecodeError with
// a one-line reason fit for the `td-error` DLQ header, so a bad outcome is parked on the DLQ
// like a bad request and the stream goes on.
import { isUtf8 } from 'node:buffer';
import type protobuf from 'protobufjs';
import { DecodeError } from '../wire/errors.js';
import type { Encoding } from '../wire/headers.js';
import { loadSchema } from '../wire/schema.js';
import type { Outcome } from '../wire/types.js';
import { LIMITS } from '../wire/types.js';

/** An outcome is a few hundred bytes; anything far larger is not one (and is not parsed). */
export const DEFAULT_MAX_OUTCOME_BYTES = 64 * 1024;
/** Candidate ids have no limit in docs/contracts.md §1; this bound only keeps hostile records small. */
export const MAX_CANDIDATE_ID_BYTES = 4096;

const utf8 = new TextEncoder();
const SERVED_BY = new Set(['lightweight', 'heavyweight']);

/** The field numbers the wire reader below relies on, checked against routing.proto once. */
const OUTCOME_FIELDS: Record<string, [number, string]> = {
  request_id: [1, 'string'],
  candidate_id: [2, 'string'],
  ok: [3, 'bool'],
  quality: [4, 'float'],
  served_by: [5, 'string'],
};

let outcomeType: protobuf.Type | undefined;
function outcomeProto(): protobuf.Type {
  if (outcomeType) return outcomeType;
  const T = loadSchema().root.lookupType('tiny_dancer.v1.Outcome');
  for (const [name, [id, type]] of Object.entries(OUTCOME_FIELDS)) {
    const f = T.fields[name];
    if (!f || f.id !== id || f.type !== type) {
      throw new Error(`routing.proto: Outcome.${name} must be field ${id} of type ${type}; the outcome wire reader depends on it`);
    }
  }
  outcomeType = T;
  return T;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 39)}…` : v)}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function invalid(message: string): never {
  throw new DecodeError('invalid', `invalid Outcome: ${message}`);
}

function idField(name: string, v: unknown, maxBytes: number): string {
  if (v === undefined || v === null || v === '') invalid(`${name} is required`);
  if (typeof v !== 'string') invalid(`${name} must be a string, got ${describe(v)}`);
  // Postgres text cannot hold U+0000; such an id could never be stored or joined.
  if (v.includes('\u0000')) invalid(`${name} contains a NUL character`);
  if (v.length * 3 > maxBytes) {
    const bytes = utf8.encode(v).length;
    if (bytes > maxBytes) invalid(`${name} is ${bytes} bytes, the limit is ${maxBytes}`);
  }
  return v;
}

/**
 * Validates an outcome-shaped object (from JSON, protobuf, or a library caller) and returns a
 * clean Outcome with exactly the contract's fields. Absent optional fields (undefined, JSON
 * null, protobuf "" for served_by) are left out. Unknown fields are ignored so producers can
 * add fields before we read them.
 */
export function validateOutcome(input: unknown): Outcome {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    invalid(`must be an object, got ${describe(input)}`);
  }
  const o = input as Record<string, unknown>;
  const request_id = idField('request_id', o.request_id, LIMITS.maxRequestIdBytes);
  const candidate_id = idField('candidate_id', o.candidate_id, MAX_CANDIDATE_ID_BYTES);
  if (typeof o.ok !== 'boolean') {
    invalid(o.ok === undefined || o.ok === null ? 'ok is required (true or false)' : `ok must be true or false, got ${describe(o.ok)}`);
  }
  const out: Outcome = { request_id, candidate_id, ok: o.ok };
  const q = o.quality;
  if (q !== undefined && q !== null) {
    if (typeof q !== 'number' || !Number.isFinite(q)) invalid(`quality must be a number in [0, 1], got ${describe(q)}`);
    if (q < 0 || q > 1) invalid(`quality must be in [0, 1], got ${q}`);
    out.quality = q;
  }
  const s = o.served_by;
  if (s !== undefined && s !== null && s !== '') {
    if (typeof s !== 'string' || !SERVED_BY.has(s)) {
      invalid(`served_by must be "lightweight" or "heavyweight", got ${describe(s)}`);
    }
    out.served_by = s as 'lightweight' | 'heavyweight';
  }
  return out;
}

// A small wire reader for the five Outcome fields, instead of protobufjs's decoder: for Node
// Buffers protobufjs reads a string whose length runs past the end of the message without
// complaint, and it replaces invalid UTF-8 silently; an outcome with a mangled id would then be
// stored as if valid. Here every length is bounds-checked and every string must be valid UTF-8.
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function wireFail(message: string): never {
  throw new DecodeError('protobuf', `not a valid protobuf Outcome: ${message}`);
}

/** Wire bytes → the Outcome object shape, not yet validated. Exported for tests. */
export function readProtobufOutcome(buf: Uint8Array): Record<string, unknown> {
  let pos = 0;
  const end = buf.length;
  const varint = (): number => {
    // Up to 64 bits; only the low 32 are kept (tags, lengths, bools need no more).
    let result = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) wireFail('truncated varint');
      const b = buf[pos++]!;
      if (i < 5) result += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) return result;
    }
    return wireFail('varint longer than 10 bytes');
  };
  const length = (): number => {
    const len = varint();
    if (len > end - pos) wireFail(`a length of ${len} bytes runs past the end of the message`);
    return len;
  };
  const string = (field: string): string => {
    const len = length();
    const start = pos;
    pos += len;
    try {
      return utf8Strict.decode(buf.subarray(start, start + len));
    } catch {
      return wireFail(`${field} is not valid UTF-8`);
    }
  };
  const expectWire = (actual: number, expected: number, field: string): void => {
    if (actual !== expected) wireFail(`${field} has wire type ${actual}, expected ${expected}`);
  };
  const out: Record<string, unknown> = { ok: false }; // proto3: absent bool is false
  while (pos < end) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    switch (field) {
      case 1:
        expectWire(wt, 2, 'request_id');
        out.request_id = string('request_id');
        break;
      case 2:
        expectWire(wt, 2, 'candidate_id');
        out.candidate_id = string('candidate_id');
        break;
      case 3:
        expectWire(wt, 0, 'ok');
        out.ok = varint() !== 0;
        break;
      case 4: {
        expectWire(wt, 5, 'quality');
        if (end - pos < 4) wireFail('truncated float');
        out.quality = new DataView(buf.buffer, buf.byteOffset + pos, 4).getFloat32(0, true);
        pos += 4;
        break;
      }
      case 5:
        expectWire(wt, 2, 'served_by');
        out.served_by = string('served_by');
        break;
      default:
        if (field === 0) wireFail('field number 0');
        if (wt === 0) varint();
        else if (wt === 1 || wt === 5) {
          const n = wt === 1 ? 8 : 4;
          if (end - pos < n) wireFail(`truncated ${n * 8}-bit field`);
          pos += n;
        } else if (wt === 2) {
          const len = length(); // read first: `pos += length()` would add to the stale pos
          pos += len;
        }
        else wireFail(`field ${field} has unsupported wire type ${wt}`);
    }
  }
  return out;
}

export interface DecodeOutcomeOptions {
  maxBytes?: number;
}

/** Decodes and validates one outcome record. Throws DecodeError (only DecodeError) for any bytes. */
export function decodeOutcome(value: Uint8Array | null, encoding: Encoding, opts: DecodeOutcomeOptions = {}): Outcome {
  if (value === null || value.length === 0) throw new DecodeError('invalid', 'empty message: an Outcome is required');
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_OUTCOME_BYTES;
  if (value.length > maxBytes) throw new DecodeError('too_large', `message is ${value.length} bytes, the limit for an Outcome is ${maxBytes}`);

  if (encoding === 'protobuf') {
    outcomeProto(); // checks the field layout once
    return validateOutcome(readProtobufOutcome(value));
  }

  if (!isUtf8(value)) throw new DecodeError('utf8', 'not valid UTF-8 (JSON outcomes must be UTF-8 text)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8'));
  } catch (err) {
    throw new DecodeError('json', `not JSON: ${(err as Error).message}`, { cause: err });
  }
  return validateOutcome(parsed);
}

/** Encodes an outcome (producers, tests, the demo). JSON with exactly the contract's fields. */
export function encodeOutcome(o: Outcome, encoding: Encoding): Buffer {
  if (encoding === 'json') {
    return Buffer.from(
      JSON.stringify({
        request_id: o.request_id,
        candidate_id: o.candidate_id,
        ok: o.ok,
        ...(o.quality === undefined ? {} : { quality: o.quality }),
        ...(o.served_by === undefined ? {} : { served_by: o.served_by }),
      }),
      'utf8',
    );
  }
  const T = outcomeProto();
  const msg: Record<string, unknown> = { request_id: o.request_id, candidate_id: o.candidate_id, ok: o.ok };
  if (o.quality !== undefined) msg.quality = o.quality;
  if (o.served_by !== undefined) msg.served_by = o.served_by;
  const bytes = T.encode(T.fromObject(msg)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
