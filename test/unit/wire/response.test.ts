import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RoutingDecision, RoutingResponse } from '../../../src/wire/types.js';
import { decodeResponse } from '../../../src/wire/client.js';
import { answerOf, encodeResponse, encodeResponseDelimited, requestTopK, responseJson, responseProtoBound, writeResponseProto } from '../../../src/wire/response.js';
import { loadSchema } from '../../../src/wire/schema.js';
import { decision } from './fixtures.js';

function ranked(n: number, light = 2): RoutingResponse {
  const decisions: RoutingDecision[] = Array.from({ length: n }, (_, r) => ({
    ...decision,
    candidate_id: `cand-${r}`,
    rank: r,
    use_lightweight: r < light,
    candidate_count: n,
    lightweight_count: light,
  }));
  return { decisions, inference_time_us: 120, feature_time_us: 30, candidates_processed: n, policy: 'tenant:acme' };
}

describe('requestTopK (td-top-k)', () => {
  it('takes a whole number from 1 to the candidate limit', () => {
    expect(requestTopK({ 'td-top-k': '3' })).toBe(3);
    expect(requestTopK({ 'td-top-k': '1000' })).toBe(1000);
    expect(requestTopK({ 'td-top-k': '007' })).toBe(7);
  });
  it('ignores anything else', () => {
    for (const v of ['0', '-1', '1001', '2.5', ' 3', '3 ', '1e2', '', 'five', '99999']) expect(requestTopK({ 'td-top-k': v })).toBeUndefined();
    expect(requestTopK({})).toBeUndefined();
    expect(requestTopK(undefined)).toBeUndefined();
  });
});

describe('answerOf', () => {
  it('keeps every decision, in rank order, by default; fills in request id and model version', () => {
    const a = answerOf(ranked(5));
    expect(a.decisions.map((d) => d.rank)).toEqual([0, 1, 2, 3, 4]);
    expect(a).toMatchObject({ request_id: 'req-1', model_version: 'fastgrnn-v3', policy: 'tenant:acme', candidates_processed: 5 });
  });
  it('trims to the default k, and the request’s own td-top-k wins over it', () => {
    expect(answerOf(ranked(5), 2).decisions.map((d) => d.candidate_id)).toEqual(['cand-0', 'cand-1']);
    expect(answerOf({ ...ranked(5), top_k: 4 }, 2).decisions).toHaveLength(4);
    expect(answerOf({ ...ranked(5), top_k: 9 }, 2).decisions).toHaveLength(5);
    expect(answerOf(ranked(5), 2).candidates_processed).toBe(5);
  });
  it('never writes top_k or features', () => {
    const a = answerOf({ ...ranked(2), top_k: 1, features: new Float32Array(10) });
    expect(Object.keys(a)).not.toContain('top_k');
    expect(Object.keys(a)).not.toContain('features');
  });
});

describe('response encoding', () => {
  it('JSON: the answer’s fields, then the decisions as the decision topics carry them', () => {
    const a = answerOf(ranked(3), 2);
    const obj = JSON.parse(responseJson(a)) as Record<string, unknown>;
    expect(Object.keys(obj)).toEqual(['request_id', 'model_version', 'policy', 'candidates_processed', 'inference_time_us', 'feature_time_us', 'decisions']);
    expect(obj.decisions).toEqual(a.decisions.map((d) => JSON.parse(JSON.stringify(d)) as unknown));
    expect(decodeResponse(encodeResponse(a, 'json'), 'json')).toEqual(obj);
  });

  it('protobuf decodes with protobufjs (what a foreign client does)', () => {
    const back = decodeResponse(encodeResponse(answerOf(ranked(100, 7), 5), 'protobuf'), 'protobuf');
    expect(back.request_id).toBe('req-1');
    expect(back.model_version).toBe('fastgrnn-v3');
    expect(back.policy).toBe('tenant:acme');
    expect(back.candidates_processed).toBe(100);
    expect(back.decisions.map((d) => [d.rank, d.candidate_count, d.lightweight_count])).toEqual([0, 1, 2, 3, 4].map((r) => [r, 100, 7]));
  });

  it('delimited: a varint length, then the message', () => {
    const a = answerOf(ranked(3));
    const plain = encodeResponse(a, 'protobuf');
    const framed = encodeResponseDelimited(a);
    const reader = loadSchema().RoutingResponse;
    expect(reader.decodeDelimited(framed).toJSON()).toEqual(reader.decode(plain).toJSON());
    expect(framed.subarray(framed.length - plain.length).equals(plain)).toBe(true);
  });

  const text = fc.string({ unit: 'grapheme', maxLength: 40 });
  const decisionArb = fc.record({
    request_id: text,
    candidate_id: text,
    confidence: fc.double({ min: 0, max: 1, noNaN: true }),
    uncertainty: fc.double({ min: 0, max: 1, noNaN: true }),
    use_lightweight: fc.boolean(),
    rank: fc.integer({ min: 0, max: 1000 }),
    model_version: text,
    reason: fc.constantFrom('model' as const, 'breaker_open' as const, 'uncertain' as const, 'below_threshold' as const),
    // Long values push a decision past 127 bytes: a 2-byte length in front of it.
    metadata: fc.dictionary(text.filter((k) => k !== '__proto__'), fc.string({ maxLength: 300 }), { maxKeys: 3 }),
    inference_time_us: fc.integer({ min: 0, max: 1e9 }),
    candidate_count: fc.integer({ min: 1, max: 1000 }),
    lightweight_count: fc.integer({ min: 0, max: 1000 }),
    policy: fc.option(text, { nil: undefined }),
  }, { requiredKeys: ['request_id', 'candidate_id', 'confidence', 'uncertainty', 'use_lightweight', 'rank', 'model_version', 'reason', 'metadata', 'inference_time_us', 'candidate_count', 'lightweight_count'] });
  const responseArb = fc.record({
    decisions: fc.array(decisionArb, { maxLength: 6 }),
    inference_time_us: fc.oneof(fc.double({ min: 0, max: 1e7, noNaN: true }), fc.integer({ min: 0, max: 2 ** 40 })),
    feature_time_us: fc.double({ min: 0, max: 1e7, noNaN: true }),
    candidates_processed: fc.integer({ min: 0, max: 1000 }),
    request_id: text,
    model_version: text,
    policy: fc.option(text, { nil: undefined }),
  }, { requiredKeys: ['decisions', 'inference_time_us', 'feature_time_us', 'candidates_processed', 'request_id', 'model_version'] });

  it('writeResponseProto writes the same bytes as protobufjs, within its bound', () => {
    const RoutingResponse = loadSchema().RoutingResponse;
    fc.assert(
      fc.property(responseArb, fc.integer({ min: 0, max: 7 }), (r: RoutingResponse, offset) => {
        const reference = RoutingResponse.encode({
          ...r,
          inference_time_us: Math.round(r.inference_time_us),
          feature_time_us: Math.round(r.feature_time_us),
        }).finish();
        const bound = responseProtoBound(r);
        const buf = Buffer.alloc(offset + bound);
        const end = writeResponseProto(buf, offset, r);
        expect(end - offset).toBeLessThanOrEqual(bound);
        expect(buf.subarray(offset, end).toString('hex')).toBe(Buffer.from(reference).toString('hex'));
      }),
      { numRuns: 300 },
    );
  });
});
