import { describe, expect, it } from 'vitest';
import { DLQ_HEADERS, dlqMessage } from '../../../src/stream/dlq.js';
import { DECISION_HEADERS, decisionMessages } from '../../../src/stream/producer.js';
import { MessageLists, ROUTE } from '../../../src/stream/records.js';
import { decodeDecision } from '../../../src/wire/index.js';

describe('dlqMessage', () => {
  it('keeps the original key, value and headers byte for byte and adds the docs/contracts.md §2 headers', () => {
    const value = Buffer.from([0xff, 0x00, 0x7b]);
    const m = dlqMessage(
      { topic: 'routing.requests', partition: 4, offset: '1234', key: Buffer.from('k'), value, headers: { 'content-type': Buffer.from('application/json'), 'td-error': 'stale' } },
      'not valid UTF-8\n(second line)',
    );
    expect(m.key).toEqual(Buffer.from('k'));
    expect(m.value).toBe(value);
    expect(m.headers).toEqual({
      'content-type': Buffer.from('application/json'),
      [DLQ_HEADERS.error]: 'not valid UTF-8 (second line)',
      [DLQ_HEADERS.topic]: 'routing.requests',
      [DLQ_HEADERS.partition]: '4',
      [DLQ_HEADERS.offset]: '1234',
    });
  });

  it('keeps a null key and a null value', () => {
    const m = dlqMessage({ topic: 't', partition: 0, offset: '0', key: null, value: null }, 'empty message');
    expect(m.key).toBeNull();
    expect(m.value).toBeNull();
  });
});

describe('decisionMessages', () => {
  it('one record per candidate, split by route, keyed by request id, with the headers', () => {
    const out = new MessageLists();
    const base = { request_id: 'r-9', confidence: 0.5, uncertainty: 0.2, model_version: 'v7', reason: 'model' as const, metadata: {}, inference_time_us: 3 };
    decisionMessages(
      {
        decisions: [
          { ...base, candidate_id: 'a', rank: 0, use_lightweight: true },
          { ...base, candidate_id: 'b', rank: 1, use_lightweight: false },
          { ...base, candidate_id: 'c', rank: 2, use_lightweight: true },
        ],
        inference_time_us: 3,
        feature_time_us: 1,
        candidates_processed: 3,
      },
      'protobuf',
      'routing.requests/2/77',
      out,
    );
    const [lightweight, heavyweight, dlq] = out.lists;
    expect(lightweight.map((m) => decodeDecision(m.value as Buffer, 'protobuf').candidate_id)).toEqual(['a', 'c']);
    expect(heavyweight).toHaveLength(1);
    expect(dlq).toHaveLength(0);
    expect([out.count(ROUTE.lightweight), out.count(ROUTE.heavyweight), out.size]).toEqual([2, 1, 3]);
    const m = heavyweight[0]!;
    expect(m.key).toBe('r-9');
    expect(m.headers).toEqual({
      [DECISION_HEADERS.contentType]: 'application/x-protobuf',
      [DECISION_HEADERS.modelVersion]: 'v7',
      [DECISION_HEADERS.correlationId]: 'routing.requests/2/77',
    });
    // One headers object for the request's records (kafkajs only reads it).
    expect(lightweight[0]!.headers).toBe(m.headers);
  });
});
