import { describe, expect, it } from 'vitest';
import { decodeOutcome, encodeOutcome, validateOutcome } from '../../../src/feedback/codec.js';
import { DecodeError } from '../../../src/wire/index.js';
import type { Outcome } from '../../../src/engine/types.js';

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DecodeError);
    return (err as Error).message;
  }
  throw new Error('expected a DecodeError');
}

describe('outcome codec', () => {
  const full: Outcome = { request_id: 'r-1', candidate_id: 'c-1', ok: true, quality: 0.75, served_by: 'heavyweight' };

  it('round-trips JSON and protobuf', () => {
    expect(decodeOutcome(encodeOutcome(full, 'json'), 'json')).toEqual(full);
    // 0.75 is exact in float32; protobuf carries quality as a float.
    expect(decodeOutcome(encodeOutcome(full, 'protobuf'), 'protobuf')).toEqual(full);
    const minimal: Outcome = { request_id: 'r', candidate_id: 'c', ok: false };
    expect(decodeOutcome(encodeOutcome(minimal, 'json'), 'json')).toEqual(minimal);
    expect(decodeOutcome(encodeOutcome(minimal, 'protobuf'), 'protobuf')).toEqual(minimal);
  });

  it('keeps quality 0 distinct from absent in protobuf (proto3 optional)', () => {
    const o = decodeOutcome(encodeOutcome({ request_id: 'r', candidate_id: 'c', ok: true, quality: 0 }, 'protobuf'), 'protobuf');
    expect(o.quality).toBe(0);
    expect('quality' in decodeOutcome(encodeOutcome({ request_id: 'r', candidate_id: 'c', ok: true }, 'protobuf'), 'protobuf')).toBe(false);
  });

  it('treats JSON null and empty served_by as absent and ignores unknown fields', () => {
    expect(decodeOutcome(json({ request_id: 'r', candidate_id: 'c', ok: true, quality: null, served_by: null, extra: 1 }), 'json')).toEqual({
      request_id: 'r',
      candidate_id: 'c',
      ok: true,
    });
  });

  it.each([
    [json({ candidate_id: 'c', ok: true }), 'request_id is required'],
    [json({ request_id: '', candidate_id: 'c', ok: true }), 'request_id is required'],
    [json({ request_id: 7, candidate_id: 'c', ok: true }), 'request_id must be a string'],
    [json({ request_id: 'r', ok: true }), 'candidate_id is required'],
    [json({ request_id: 'r', candidate_id: 'c' }), 'ok is required'],
    [json({ request_id: 'r', candidate_id: 'c', ok: 'yes' }), 'ok must be true or false'],
    [json({ request_id: 'r', candidate_id: 'c', ok: 1 }), 'ok must be true or false'],
    [json({ request_id: 'r', candidate_id: 'c', ok: true, quality: 1.5 }), 'quality must be in [0, 1]'],
    [json({ request_id: 'r', candidate_id: 'c', ok: true, quality: -0.1 }), 'quality must be in [0, 1]'],
    [json({ request_id: 'r', candidate_id: 'c', ok: true, quality: '0.5' }), 'quality must be a number'],
    [json({ request_id: 'r', candidate_id: 'c', ok: true, served_by: 'medium' }), 'served_by must be "lightweight" or "heavyweight"'],
    [json({ request_id: 'x'.repeat(257), candidate_id: 'c', ok: true }), 'request_id is 257 bytes, the limit is 256'],
    [json([1, 2]), 'must be an object, got an array'],
    [json({ request_id: 'r\u0000', candidate_id: 'c', ok: true }), 'request_id contains a NUL character'],
    [Buffer.from('{"request_id":'), 'not JSON'],
    [Buffer.from([0xff, 0xfe, 0x00]), 'not valid UTF-8'],
  ])('rejects bad JSON outcome %#', (bytes, expected) => {
    expect(reason(() => decodeOutcome(bytes, 'json'))).toContain(expected);
  });

  it('rejects empty, oversized and malformed protobuf records with one-line reasons', () => {
    expect(reason(() => decodeOutcome(null, 'json'))).toContain('empty message');
    expect(reason(() => decodeOutcome(Buffer.alloc(0), 'protobuf'))).toContain('empty message');
    expect(reason(() => decodeOutcome(Buffer.alloc(100), 'json', { maxBytes: 50 }))).toContain('limit for an Outcome is 50');
    // A length-delimited field that runs past the end.
    expect(reason(() => decodeOutcome(Buffer.from([0x0a, 0x7f, 0x41]), 'protobuf'))).toMatch(/not a valid protobuf Outcome/);
    expect(reason(() => decodeOutcome(new Uint8Array([0x0a, 0x7f, 0x41]), 'protobuf'))).toContain('runs past the end');
    expect(reason(() => decodeOutcome(Buffer.from([0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, 0x63]), 'protobuf'))).toContain('request_id is not valid UTF-8');
    expect(reason(() => decodeOutcome(Buffer.from([0x0a, 0x01, 0x72, 0x12, 0x01, 0x63, 0x25, 0x00]), 'protobuf'))).toContain('truncated float');
    expect(reason(() => decodeOutcome(Buffer.from([0x0a, 0x01, 0x72, 0x12, 0x01, 0x63, 0x1a, 0x00]), 'protobuf'))).toContain('ok has wire type 2');
    // A JSON payload labelled protobuf is refused, not half-read.
    expect(() => decodeOutcome(json({ request_id: 'r', candidate_id: 'c', ok: true }), 'protobuf')).toThrow(DecodeError);
    // Valid wire bytes, but no ids.
    expect(reason(() => decodeOutcome(Buffer.from([0x18, 0x01]), 'protobuf'))).toContain('request_id is required');
    // NaN quality cannot come from JSON, but can from protobuf.
    const nan = encodeOutcome({ request_id: 'r', candidate_id: 'c', ok: true, quality: Number.NaN }, 'protobuf');
    expect(reason(() => decodeOutcome(nan, 'protobuf'))).toContain('quality must be a number');
    for (const msg of [reason(() => decodeOutcome(Buffer.from('{\n"a":\n'), 'json'))]) expect(msg).not.toContain('\n');
  });

  it('skips unknown fields of every wire type (forward compatibility)', () => {
    const known = encodeOutcome({ request_id: 'r', candidate_id: 'c', ok: true, served_by: 'lightweight' }, 'protobuf');
    // field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32
    const unknown = Buffer.from([0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 0x02, 0x61, 0x62, 0x65, 1, 2, 3, 4]);
    expect(decodeOutcome(Buffer.concat([unknown, known]), 'protobuf')).toEqual({ request_id: 'r', candidate_id: 'c', ok: true, served_by: 'lightweight' });
  });

  it('validateOutcome returns only the contract fields', () => {
    expect(validateOutcome({ request_id: 'r', candidate_id: 'c', ok: false, served_by: 'lightweight', x: 2 })).toEqual({
      request_id: 'r',
      candidate_id: 'c',
      ok: false,
      served_by: 'lightweight',
    });
  });
});
