import { describe, expect, it } from 'vitest';
import { validateRequest, type ValidatedRequest } from '../../../src/engine/validate.js';
import type { RoutingResponse } from '../../../src/wire/types.js';
import { createLogger } from '../../../src/observe/logger.js';
import { createMetrics } from '../../../src/observe/metrics.js';
import { ScoringBreaker, breakerOpenResponse, type ScoreTask } from '../../../src/resilience/breaker.js';
import { InvalidInputError } from '../../../src/errors.js';
import { DecodeError } from '../../../src/wire/index.js';

const request: ValidatedRequest = validateRequest({
  request_id: 'r1',
  query_embedding: [1, 0],
  candidates: [
    { id: 'a', embedding: [1, 0], metadata: { m: '1' } },
    { id: 'b', embedding: [0, 1] },
  ],
});

const req: ScoreTask = { kind: 'validated', request };

function ok(t: ScoreTask): RoutingResponse {
  if (t.kind !== 'validated') throw new Error('test scorer takes validated tasks');
  const r = t.request;
  return {
    decisions: r.ids.map((id, i) => ({
      request_id: r.request_id,
      candidate_id: id,
      confidence: 0.9,
      uncertainty: 0,
      use_lightweight: true,
      rank: i,
      model_version: 'v1',
      reason: 'model' as const,
      metadata: r.candidateMetadata[i]!,
      inference_time_us: 5,
    })),
    inference_time_us: 5,
    feature_time_us: 1,
    candidates_processed: r.n,
  };
}

function setup(scorer: (t: ScoreTask) => Promise<RoutingResponse>, extra: Partial<ConstructorParameters<typeof ScoringBreaker>[1]> = {}) {
  const lines: string[] = [];
  const metrics = createMetrics({ defaultMetrics: false });
  const states: string[] = [];
  const breaker = new ScoringBreaker(scorer, {
    timeoutMs: 200,
    errorThresholdPercentage: 50,
    volumeThreshold: 4,
    resetTimeoutMs: 150,
    rollingCountTimeoutMs: 10_000,
    logger: createLogger({ write: (l) => lines.push(l) }),
    metrics,
    modelVersion: () => 'v1',
    onStateChange: (s) => states.push(s),
    ...extra,
  });
  return { breaker, lines, metrics, states };
}

describe('breakerOpenResponse', () => {
  it('sends every candidate heavyweight with reason breaker_open, confidence 0, uncertainty 1', () => {
    const r = breakerOpenResponse(request, 'v9');
    expect(r.decisions).toEqual([
      { request_id: 'r1', candidate_id: 'a', confidence: 0, uncertainty: 1, use_lightweight: false, rank: 0, model_version: 'v9', reason: 'breaker_open', metadata: { m: '1' }, inference_time_us: 0, candidate_count: 2, lightweight_count: 0, policy: 'global' },
      { request_id: 'r1', candidate_id: 'b', confidence: 0, uncertainty: 1, use_lightweight: false, rank: 1, model_version: 'v9', reason: 'breaker_open', metadata: {}, inference_time_us: 0, candidate_count: 2, lightweight_count: 0, policy: 'global' },
    ]);
    expect(breakerOpenResponse(request, 'v9', 'tenant:acme').decisions.map((d) => d.policy)).toEqual(['tenant:acme', 'tenant:acme']);
  });
});

describe('ScoringBreaker', () => {
  it('passes successful scores through', async () => {
    const { breaker } = setup(async (r) => ok(r));
    const s = await breaker.score(req);
    expect(s.fallback).toBe(false);
    expect(s.response.decisions[0]!.reason).toBe('model');
    expect(breaker.state).toBe('closed');
  });

  it('opens on failures, answers breaker_open while open, half-opens and closes again', async () => {
    let failing = true;
    let calls = 0;
    const { breaker, metrics, states, lines } = setup(async (r) => {
      calls++;
      if (failing) throw new Error('engine exploded');
      return ok(r);
    });
    for (let i = 0; i < 4; i++) {
      const s = await breaker.score(req);
      // A failure while still closed gets the same safe answer.
      expect(s.fallback).toBe(true);
      expect(s.response.decisions.every((d) => d.reason === 'breaker_open' && !d.use_lightweight)).toBe(true);
    }
    expect(breaker.state).toBe('open');
    const callsWhenOpened = calls;
    const whileOpen = await breaker.score(req);
    expect(whileOpen.fallback).toBe(true);
    expect(calls).toBe(callsWhenOpened); // the engine is not called while open
    expect((await metrics.breakerState.get()).values[0]!.value).toBe(2);

    failing = false;
    await new Promise((r) => setTimeout(r, 200));
    expect(breaker.state).toBe('half_open');
    const trial = await breaker.score(req);
    expect(trial.fallback).toBe(false);
    expect(breaker.state).toBe('closed');
    expect(states).toEqual(['open', 'half_open', 'closed']);
    expect((await metrics.breakerState.get()).values[0]!.value).toBe(0);
    const transitions = (await metrics.breakerTransitions.get()).values.map((v) => `${v.labels.to}=${v.value}`).sort();
    expect(transitions).toEqual(['closed=1', 'half_open=1', 'open=1']);
    expect(lines.some((l) => /"breaker":"open"/.test(l) && /engine exploded/.test(l))).toBe(true);
    expect(breaker.snapshot().transitions).toBe(3);
  });

  it('counts a slow engine as a failure (timeout)', async () => {
    const { breaker } = setup(() => new Promise((r) => setTimeout(() => r(ok(req)), 500)), { timeoutMs: 30 });
    const s = await breaker.score(req);
    expect(s.fallback).toBe(true);
    expect(breaker.snapshot().lastError).toMatch(/30 ?ms/);
  });

  it('bad input is the caller\'s: rethrown, never counted against the engine, no fallback', async () => {
    let calls = 0;
    const { breaker } = setup(async () => {
      calls++;
      throw new DecodeError('json', 'not JSON: Unexpected end');
    });
    for (let i = 0; i < 10; i++) await expect(breaker.score(req)).rejects.toBeInstanceOf(InvalidInputError);
    expect(calls).toBe(10);
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot().fallbacks).toBe(0);
  });

  it('an encoded task gets its fallback from the decoder it is given; a bad record there is rethrown', async () => {
    const { breaker } = setup(async () => {
      throw new Error('worker died');
    });
    const encoded: ScoreTask = { kind: 'encoded', bytes: Buffer.from('{}'), encoding: 'json' };
    const s = await breaker.score(encoded, () => request);
    expect(s.fallback).toBe(true);
    expect(s.response.decisions.map((d) => d.candidate_id)).toEqual(['a', 'b']);
    await expect(
      breaker.score(encoded, () => {
        throw new DecodeError('json', 'not JSON');
      }),
    ).rejects.toBeInstanceOf(DecodeError);
  });

  it('reset() and trip() are operator overrides', async () => {
    const { breaker } = setup(async (r) => ok(r));
    breaker.trip();
    expect(breaker.state).toBe('open');
    expect((await breaker.score(req)).fallback).toBe(true);
    breaker.reset();
    expect(breaker.state).toBe('closed');
    expect((await breaker.score(req)).fallback).toBe(false);
  });
});
