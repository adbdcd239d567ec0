import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { encodeRequest } from '../../../src/wire/client.js';
import { decodeRequest } from '../../../src/wire/decode-request.js';
import { DecodeError } from '../../../src/wire/errors.js';
import { readProtobufRequest } from '../../../src/wire/protobuf-reader.js';
import { loadSchema } from '../../../src/wire/schema.js';
import { expectDecodeError, request } from './fixtures.js';

describe('request decoding', () => {
  for (const encoding of ['json', 'protobuf'] as const) {
    it(`round-trips a request through ${encoding}`, () => {
      const req = request(4, 16);
      const v = decodeRequest(encodeRequest(req, encoding), encoding);
      expect(v.request_id).toBe('req-1');
      expect(v.n).toBe(4);
      expect(v.dim).toBe(16);
      expect(Array.from(v.query)).toEqual(req.query_embedding);
      expect(Array.from(v.embeddings.subarray(16, 32))).toEqual(req.candidates[1]!.embedding);
      expect(v.ids).toEqual(['cand-0', 'cand-1', 'cand-2', 'cand-3']);
      expect(Array.from(v.createdAt)).toEqual([1_700_000_000, 1_700_000_001, 1_700_000_002, 1_700_000_003]);
      expect(Array.from(v.accessCount)).toEqual([0, 7, 14, 21]);
      expect(v.successRate[2]).toBe(Math.fround(2 / 4));
      expect(v.candidateMetadata[3]).toEqual({ tier: 'small', 'ключ': 'значение' });
      expect(v.metadata).toEqual({ topic: 'billing' });
    });
  }

  it('reads protobuf from a Kafka-like slice at an odd offset (unaligned floats)', () => {
    const bytes = encodeRequest(request(2, 5), 'protobuf');
    const big = Buffer.alloc(bytes.length + 3);
    bytes.copy(big, 3);
    const slice = big.subarray(3);
    const v = decodeRequest(slice, 'protobuf');
    expect(Array.from(v.query)).toEqual(request(2, 5).query_embedding);
  });

  it('accepts unpacked repeated floats and split packed chunks (both legal protobuf)', () => {
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | 2).string('r');
    w.uint32((2 << 3) | 5).float(1.5); // unpacked value
    w.uint32((2 << 3) | 2).fork().float(2.5).float(3.5).ldelim(); // packed chunk
    const cand = protobuf.Writer.create();
    cand.uint32((1 << 3) | 2).string('a');
    cand.uint32((2 << 3) | 2).fork().float(1).ldelim();
    cand.uint32((2 << 3) | 2).fork().float(2).float(3).ldelim();
    cand.uint32((4 << 3) | 0).int64(-5); // negative int64 (10-byte varint)
    w.uint32((3 << 3) | 2).bytes(cand.finish());
    w.uint32((99 << 3) | 0).uint32(7); // unknown field: skipped
    const v = decodeRequest(Buffer.from(w.finish()), 'protobuf');
    expect(Array.from(v.query)).toEqual([1.5, 2.5, 3.5]);
    expect(Array.from(v.embeddings)).toEqual([1, 2, 3]);
    expect(v.createdAt[0]).toBe(-5);
  });

  it('decodes 64-bit access counts beyond 2^32 exactly', () => {
    const req = request(1, 2);
    req.candidates[0]!.access_count = 2 ** 40 + 3;
    const v = decodeRequest(encodeRequest(req, 'protobuf'), 'protobuf');
    expect(v.accessCount[0]).toBe(2 ** 40 + 3);
  });

  it('matches protobufjs on a generated request (same fields, same values)', () => {
    const req = request(3, 7);
    const bytes = encodeRequest(req, 'protobuf');
    const s = loadSchema();
    const ref = s.RoutingRequest.toObject(s.RoutingRequest.decode(bytes), { longs: Number }) as Record<string, unknown>;
    const mine = readProtobufRequest(bytes);
    expect(mine.request_id).toBe(ref.request_id);
    expect(Array.from(mine.query_embedding as Float32Array)).toEqual(ref.query_embedding);
    const refC = ref.candidates as { id: string; embedding: number[]; created_at: number; access_count: number }[];
    const myC = mine.candidates as { id: string; embedding: Float32Array; created_at: number; access_count: number }[];
    expect(myC.map((c) => c.id)).toEqual(refC.map((c) => c.id));
    expect(myC.map((c) => Array.from(c.embedding))).toEqual(refC.map((c) => c.embedding));
    expect(myC.map((c) => c.created_at)).toEqual(refC.map((c) => c.created_at));
  });

  it('does not let a "__proto__" metadata key reach the prototype', () => {
    const req = request(1, 2);
    req.metadata = { __proto__: 'x' } as unknown as Record<string, string>;
    Object.defineProperty(req.metadata, '__proto__', { value: 'x', enumerable: true });
    const v = decodeRequest(encodeRequest(req, 'protobuf'), 'protobuf');
    expect(Object.getPrototypeOf(v.metadata)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(v.metadata, '__proto__')?.value).toBe('x');
  });
});

describe('bad requests are DecodeErrors with one-line reasons', () => {
  const json = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
  const good = request(2, 3);

  it('empty and oversized messages', () => {
    expectDecodeError(() => decodeRequest(null, 'json'), 'invalid', /empty message/);
    expectDecodeError(() => decodeRequest(Buffer.alloc(0), 'protobuf'), 'invalid', /empty message/);
    expectDecodeError(() => decodeRequest(Buffer.alloc(2000, 32), 'json', { maxBytes: 1024 }), 'too_large', /2000 bytes.*1024/);
  });

  it('JSON that is not UTF-8, not JSON, or not an object', () => {
    expectDecodeError(() => decodeRequest(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'json'), 'utf8', /not valid UTF-8/);
    expectDecodeError(() => decodeRequest(json('{"request_id": '), 'json'), 'json', /^not JSON/);
    expectDecodeError(() => decodeRequest(json('[1,2]'), 'json'), 'invalid', /not a JSON object.*array/);
    expectDecodeError(() => decodeRequest(json('null'), 'json'), 'invalid', /not a JSON object.*null/);
    expectDecodeError(() => decodeRequest(json('"hi"'), 'json'), 'invalid', /not a JSON object.*string/);
  });

  it('every request limit, through validateRequest', () => {
    const { request_id: _r, ...noId } = good;
    expectDecodeError(() => decodeRequest(json(noId), 'json'), 'invalid', /request_id.*required/);
    expectDecodeError(() => decodeRequest(json({ ...good, request_id: 'x'.repeat(257) }), 'json'), 'invalid', /257 bytes/);
    expectDecodeError(() => decodeRequest(json({ ...good, query_embedding: [] }), 'json'), 'invalid', /query_embedding.*0 values/);
    expectDecodeError(
      () => decodeRequest(json({ ...good, candidates: [{ ...good.candidates[0], embedding: [1, 2] }] }), 'json'),
      'invalid',
      /candidates\[0\].*2 values, query has 3/,
    );
    expectDecodeError(() => decodeRequest(json({ ...good, query_embedding: [1, 'x', 3] }), 'json'), 'invalid', /query_embedding/);
    expectDecodeError(() => decodeRequest(json({ ...good, query_embedding: [1, 1e300, 3] }), 'json'), 'invalid', /finite/);
    expectDecodeError(
      () => decodeRequest(json({ ...good, candidates: [good.candidates[0], good.candidates[0]] }), 'json'),
      'invalid',
      /duplicate id/,
    );
    const many = Array.from({ length: 1001 }, (_, i) => ({ id: `c${i}`, embedding: [1, 2, 3] }));
    expectDecodeError(() => decodeRequest(json({ ...good, candidates: many }), 'json'), 'invalid', /1001 entries/);
    expectDecodeError(() => decodeRequest(json({ ...good, candidates: [] }), 'json'), 'invalid', /candidates/);
  });

  it('non-finite floats in protobuf (JSON cannot even express them)', () => {
    const req = request(1, 3);
    (req.query_embedding as number[])[1] = Number.NaN;
    expectDecodeError(() => decodeRequest(encodeRequest(req, 'protobuf'), 'protobuf'), 'invalid', /query_embedding.*NaN/);
  });

  it('broken protobuf: truncation, bad lengths, bad wire types, invalid UTF-8 strings', () => {
    const bytes = encodeRequest(request(2, 4), 'protobuf');
    expectDecodeError(() => decodeRequest(bytes.subarray(0, bytes.length - 5), 'protobuf'), 'protobuf', /not a valid protobuf/);
    expectDecodeError(() => decodeRequest(Buffer.from([0x0a, 0x7f, 0x41]), 'protobuf'), 'protobuf', /runs past the end/);
    expectDecodeError(() => decodeRequest(Buffer.from([0x08, 0x01]), 'protobuf'), 'protobuf', /request_id has wire type 0/);
    expectDecodeError(() => decodeRequest(Buffer.from([0x0a, 0x02, 0xc3, 0x28]), 'protobuf'), 'protobuf', /request_id is not valid UTF-8/);
    expectDecodeError(() => decodeRequest(Buffer.from([0x12, 0x03, 1, 2, 3]), 'protobuf'), 'protobuf', /not a multiple of 4/);
    expectDecodeError(() => decodeRequest(Buffer.from([0x0b]), 'protobuf'), 'protobuf', /wire type 3/);
    // A JSON body labelled protobuf is garbage to the wire reader.
    expectDecodeError(() => decodeRequest(encodeRequest(request(1, 2), 'json'), 'protobuf'), 'protobuf', /not a valid protobuf/);
  });

  it('fuzz: arbitrary bytes never throw anything but DecodeError, in either encoding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom('json' as const, 'protobuf' as const), (bytes, enc) => {
        try {
          decodeRequest(Buffer.from(bytes), enc);
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
          expect(err.message).not.toMatch(/\n/);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('fuzz: mutated valid protobuf requests never throw anything but DecodeError', () => {
    const base = encodeRequest(request(3, 4), 'protobuf');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(base.length), (edits, cut) => {
        const b = Buffer.from(base.subarray(0, Math.max(1, cut)));
        for (const [at, v] of edits) if (at < b.length) b[at] = v;
        try {
          const r = decodeRequest(b, 'protobuf');
          expect(r.n).toBeGreaterThan(0);
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('fuzz: arbitrary JSON values never throw anything but DecodeError', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          decodeRequest(Buffer.from(JSON.stringify(v) ?? 'null'), 'json');
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
