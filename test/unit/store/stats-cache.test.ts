// StoreStatsCache with a fake Queryable: a read starts a refresh and returns what it has, a
// refresh within the TTL is not repeated, a failure becomes `available: false` without secrets.
import { describe, expect, it } from 'vitest';
import type { Queryable } from '../../../src/store/pg.js';
import { StoreStatsCache, unavailableAggregates } from '../../../src/store/stats-cache.js';

const settle = () => new Promise((r) => setImmediate(r));

describe('StoreStatsCache', () => {
  it('refreshes in the background, at most once per TTL, and reports failures in one line without secrets', async () => {
    let calls = 0;
    const pool = {
      query: async () => {
        calls++;
        throw new Error('connect ECONNREFUSED postgres://td:hunter2@db:5432/x\nsecond line');
      },
    } as unknown as Queryable;
    const cache = new StoreStatsCache({ pool, schema: 'public', ttlMs: 60_000 });
    expect(cache.read()).toBeUndefined();
    await settle();
    const s = cache.read();
    expect(s?.available).toBe(false);
    expect(s?.error).not.toContain('hunter2');
    expect(s?.error).not.toContain('\n');
    expect(calls).toBe(1);
    cache.read();
    await settle();
    expect(calls).toBe(1);
  });

  it('shows the aggregates of routing_decisions as GetStats does', async () => {
    const row = (version: string | null, all: number) => ({
      model_version: version, all_versions: all, decisions: '10', requests: '5', lightweight: '4', r_model: '7',
      r_breaker_open: '1', r_uncertain: '1', r_below_threshold: '1', latency: [10, 20, 30], mean_us: 12, max_us: 40,
      mean_confidence: 0.8, mean_uncertainty: 0.1, first_at: new Date(1000), last_at: new Date(2000),
    });
    const pool = { query: async () => ({ rows: [row(null, 1), row('v1', 0)] }) } as unknown as Queryable;
    const cache = new StoreStatsCache({ pool, schema: 'public' });
    cache.read();
    await settle();
    const s = cache.read()!;
    expect(s).toMatchObject({
      available: true, windowSeconds: 86_400, decisions: 10, requests: 5, lightweightShare: 0.4,
      reasons: { model: 7, breaker_open: 1, uncertain: 1, below_threshold: 1 }, modelVersions: { v1: 10 },
      meanConfidence: 0.8, meanUncertainty: 0.1, p50InferenceUs: 10, p95InferenceUs: 20, p99InferenceUs: 30, lastDecidedAt: 2000,
    });
  });

  it('refreshes nothing once stopped', async () => {
    let calls = 0;
    const pool = { query: async () => { calls++; throw new Error('x'); } } as unknown as Queryable;
    const cache = new StoreStatsCache({ pool, schema: 'public' });
    cache.stop();
    expect(cache.read()).toBeUndefined();
    await settle();
    expect(calls).toBe(0);
  });

  it('unavailableAggregates: zeros and why', () => {
    const a = unavailableAggregates(new Error('boom'), 5);
    expect(a).toMatchObject({ available: false, error: 'boom', decisions: 0, computedAt: 5, reasons: {} });
  });
});
