import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import type { RoutingDecision } from '../../../src/wire/types.js';
import { decodeDecision } from '../../../src/wire/client.js';
import { decisionProtoBound, encodeDecision, writeDecisionProto } from '../../../src/wire/decision-writer.js';
import { loadSchema } from '../../../src/wire/schema.js';
import { decision } from './fixtures.js';

describe('decision encoding', () => {
  for (const encoding of ['json', 'protobuf'] as const) {
    it(`round-trips a decision through ${encoding}`, () => {
      const back = decodeDecision(encodeDecision(decision, encoding), encoding);
      // float32 on the wire: compare the floats approximately, everything else exactly.
      expect({ ...back, confidence: 0, uncertainty: 0 }).toEqual({ ...decision, confidence: 0, uncertainty: 0 });
      expect(back.confidence).toBeCloseTo(0.75, 6);
      expect(back.uncertainty).toBeCloseTo(0.125, 6);
      expect(back.reason).toBe('model');
      expect(back.metadata).toEqual({ tier: 'small' });
    });
  }

  it('JSON decisions have exactly the contract fields, snake_case', () => {
    const extra = { ...decision, secret: 'x' } as RoutingDecision;
    const obj = JSON.parse(encodeDecision(extra, 'json').toString('utf8')) as Record<string, unknown>;
    expect(Object.keys(obj)).toEqual([
      'request_id',
      'candidate_id',
      'confidence',
      'uncertainty',
      'use_lightweight',
      'rank',
      'model_version',
      'reason',
      'metadata',
      'inference_time_us',
      'candidate_count',
      'lightweight_count',
      'policy',
    ]);
  });

  it('protobuf decisions decode with protobufjs directly (what a foreign client does)', () => {
    const s = loadSchema();
    const m = s.RoutingDecision.toObject(s.RoutingDecision.decode(encodeDecision(decision, 'protobuf')), { longs: Number });
    expect(m.candidate_id).toBe('cand-0');
    expect(m.inference_time_us).toBe(42);
    expect(m.use_lightweight).toBe(true);
    expect(m.candidate_count).toBe(3);
    expect(m.lightweight_count).toBe(1);
  });

  it('a reader that predates candidate_count and lightweight_count skips them', () => {
    // The schema as it was before fields 11 and 12: unknown fields are skipped, the rest reads.
    const old = protobuf.parse(`syntax = "proto3";
      message RoutingDecision { string request_id = 1; string candidate_id = 2; uint32 rank = 6; string policy = 13; }`, { keepCase: true }).root.lookupType('RoutingDecision');
    const m = old.toObject(old.decode(encodeDecision(decision, 'protobuf')));
    expect(m).toMatchObject({ request_id: 'req-1', candidate_id: 'cand-0', rank: 0, policy: 'tenant:acme' });
  });
});

describe('writeDecisionProto (the hand-written RoutingDecision encoder)', () => {
  const text = fc.string({ unit: 'grapheme', maxLength: 60 });
  const decisionArb = fc.record({
    request_id: text,
    candidate_id: text,
    confidence: fc.double({ min: 0, max: 1, noNaN: true }),
    uncertainty: fc.double({ min: 0, max: 1, noNaN: true }),
    use_lightweight: fc.boolean(),
    rank: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    model_version: text,
    reason: fc.constantFrom('model', 'breaker_open', 'uncertain', 'below_threshold'),
    metadata: fc.dictionary(text.filter((k) => k !== '__proto__'), text, { maxKeys: 4 }),
    inference_time_us: fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
    candidate_count: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
    lightweight_count: fc.option(fc.integer({ min: 0, max: 1000 }), { nil: undefined }),
    policy: fc.option(fc.oneof(fc.constant('global'), text.map((t) => `tenant:${t}`)), { nil: undefined }),
  }, { requiredKeys: ['request_id', 'candidate_id', 'confidence', 'uncertainty', 'use_lightweight', 'rank', 'model_version', 'reason', 'metadata', 'inference_time_us'] });

  it('writes the same bytes as protobufjs, within its bound, and decodes back', () => {
    const RoutingDecision = loadSchema().RoutingDecision;
    fc.assert(
      fc.property(decisionArb, fc.integer({ min: 0, max: 7 }), (d, offset) => {
        const reference = RoutingDecision.encode({ ...d, inference_time_us: Math.max(0, Math.round(d.inference_time_us)) }).finish();
        const bound = decisionProtoBound(d);
        const buf = Buffer.alloc(offset + bound);
        const end = writeDecisionProto(buf, offset, d);
        expect(end - offset).toBeLessThanOrEqual(bound);
        expect(buf.subarray(offset, end).toString('hex')).toBe(Buffer.from(reference).toString('hex'));
        expect(encodeDecision(d, 'protobuf').toString('hex')).toBe(Buffer.from(reference).toString('hex'));
        const back = decodeDecision(buf.subarray(offset, end), 'protobuf');
        expect(back.request_id).toBe(d.request_id);
        expect(back.metadata).toEqual(d.metadata);
        expect(back.rank).toBe(d.rank);
        expect(back.policy).toBe(d.policy ?? '');
      }),
      { numRuns: 500 },
    );
  });
});
