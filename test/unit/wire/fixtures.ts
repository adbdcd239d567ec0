// Shared fixtures of the wire/ unit tests.
import { expect } from 'vitest';
import type { RoutingDecision, RoutingRequest } from '../../../src/wire/types.js';
import { DecodeError } from '../../../src/wire/errors.js';

export function request(n = 3, dim = 8, id = 'req-1'): RoutingRequest {
  return {
    request_id: id,
    query_embedding: Array.from({ length: dim }, (_, i) => Math.fround(Math.sin(i + 1))),
    candidates: Array.from({ length: n }, (_, c) => ({
      id: `cand-${c}`,
      embedding: Array.from({ length: dim }, (_, i) => Math.fround(Math.cos(c * dim + i))),
      metadata: { tier: c % 2 ? 'small' : 'large', 'ключ': 'значение' },
      created_at: 1_700_000_000 + c,
      access_count: c * 7,
      success_rate: Math.fround(c / n),
    })),
    metadata: { topic: 'billing' },
  };
}

export const decision: RoutingDecision = {
  request_id: 'req-1',
  candidate_id: 'cand-0',
  confidence: 0.75,
  uncertainty: 0.125,
  use_lightweight: true,
  rank: 0,
  model_version: 'fastgrnn-v3',
  reason: 'model',
  metadata: { tier: 'small' },
  inference_time_us: 42,
  candidate_count: 3,
  lightweight_count: 1,
  policy: 'tenant:acme',
};

export function expectDecodeError(fn: () => unknown, kind: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DecodeError);
  const e = caught as DecodeError;
  expect(e.kind).toBe(kind);
  expect(e.message).toMatch(pattern);
  expect(e.message).not.toMatch(/\n/);
}
