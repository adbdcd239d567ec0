// The breaker on the real pipeline: injected engine failures open it, every candidate then goes
// heavyweight with reason breaker_open (nothing is lost or delayed), and once the engine heals
// it half-opens and closes again.
import { beforeAll, describe, expect, it } from 'vitest';
import type { AppEvent } from '../../../src/app.js';
import { bufferLogger, decision, makeRequest, produce, record, rowCounts, serveFixture, testConfig, waitFor } from './helpers.js';

let failing = false;
let engineCalls = 0;
const events: AppEvent[] = [];
const { logger, lines } = bufferLogger();

const serve = serveFixture('brk', (n) => {
  const base = testConfig(n);
  const config = testConfig(n, {
    breaker: { ...base.breaker, volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeoutMs: 1500, timeoutMs: 2000, rollingCountTimeoutMs: 10_000 },
  });
  return {
    config,
    options: {
      logger,
      // The failure injector: the test hook of AppOptions.
      wrapScorer: (score) => async (req) => {
        engineCalls++;
        if (failing) throw new Error('injected engine failure');
        return score(req);
      },
    },
  };
});
const { n } = serve;

beforeAll(() => {
  serve.app.on('event', (e: AppEvent) => events.push(e));
});

async function send(prefix: string, count: number): Promise<string[]> {
  const reqs = Array.from({ length: count }, (_, i) => makeRequest(`${prefix}-${i}`, 3, 8));
  await produce(n.requests, reqs.map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));
  return reqs.map((r) => r.request_id);
}

function decisionsOf(ids: string[]) {
  const want = new Set(ids);
  return serve.out.records.map((r) => ({ topic: r.topic, d: decision(r.message) })).filter((x) => want.has(x.d.request_id));
}

describe('circuit breaker around scoring', () => {
  it('opens on engine failures, answers breaker_open heavyweight, then closes when the engine heals', async () => {
    const healthy = await send('before', 10);
    await serve.out.until(() => decisionsOf(healthy).length >= 30, 30_000, 'healthy decisions');
    expect(decisionsOf(healthy).every(({ d }) => d.reason !== 'breaker_open')).toBe(true);
    expect(serve.app.control.breaker().state).toBe('closed');

    failing = true;
    const during = await send('during', 30);
    await serve.out.until(() => decisionsOf(during).length >= 90, 30_000, 'decisions while failing');
    expect(serve.app.control.breaker().state).toBe('open');
    const failed = decisionsOf(during);
    // Every candidate of every request decided, all heavyweight, the documented fallback values.
    expect(failed).toHaveLength(90);
    for (const { topic, d } of failed) {
      expect(d.reason).toBe('breaker_open');
      expect(d.use_lightweight).toBe(false);
      expect(topic).toBe(n.heavyweight);
      expect(d.confidence).toBe(0);
      expect(d.uncertainty).toBe(1);
    }
    // Once open, the engine is no longer called for each request.
    const callsWhileOpen = engineCalls;
    const more = await send('open', 5);
    await serve.out.until(() => decisionsOf(more).length >= 15, 30_000, 'decisions while open');
    expect(engineCalls).toBe(callsWhileOpen);

    // Heal; after the reset timeout a trial call goes through and closes the breaker.
    failing = false;
    await waitFor(() => serve.app.control.breaker().state === 'half_open', 10_000, 'half-open');
    const after = await send('after', 10);
    await serve.out.until(() => decisionsOf(after).length >= 30, 30_000, 'decisions after healing');
    await waitFor(() => serve.app.control.breaker().state === 'closed', 10_000, 'closed');
    // (While half-open, opossum lets ONE trial call through; requests scored at the same
    // moment still get the fallback. Once closed, everything is scored again.)
    const closed = await send('closed', 10);
    await serve.out.until(() => decisionsOf(closed).length >= 30, 30_000, 'decisions after closing');
    expect(decisionsOf(closed).every(({ d }) => d.reason !== 'breaker_open')).toBe(true);

    // State changes: events, logs, metrics.
    const states = events.filter((e): e is Extract<AppEvent, { type: 'breaker' }> => e.type === 'breaker').map((e) => e.state);
    expect(states).toEqual(['open', 'half_open', 'closed']);
    expect(lines.some((l) => l.includes('"breaker":"open"') && l.includes('injected engine failure'))).toBe(true);
    const metrics = await (await fetch(`${serve.app.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/td_breaker_transitions_total\{to="open"\} 1/);
    expect(metrics).toMatch(/td_breaker_transitions_total\{to="closed"\} 1/);
    expect(metrics).toMatch(/td_breaker_state 0/);
    const fallbacks = Number(/td_decisions_total\{route="heavyweight",reason="breaker_open"\} (\d+)/.exec(metrics)?.[1]);
    expect(fallbacks).toBeGreaterThanOrEqual(105);
    expect(fallbacks).toBeLessThan(105 + 30);
    expect(serve.app.control.breaker().trips).toBe(1);

    // Nothing lost: every request of every phase is in Postgres.
    const total = (10 + 30 + 5 + 10 + 10) * 3;
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 20_000, 'rows');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: total / 3 });
    expect((await fetch(`${serve.app.httpUrl}/readyz`)).status).toBe(200);
  });
});
