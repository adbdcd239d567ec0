// The status document: rates from counter differences between samples, the sections the page
// shows, the optional fleet, and the page's HTTP routes (strict CSP, 503 before the engine exists).
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/observe/metrics.js';
import { startHttpServer, type HttpServer } from '../../../src/observe/http.js';
import { costFigures } from '../../../src/observe/cost.js';
import { StatusTracker } from '../../../src/observe/status.js';
import { STATUS_CSP, statusRoutes } from '../../../src/observe/status-page.js';
import type { ControlStats } from '../../../src/control/target.js';
import { FakeTarget } from '../control/fake-target.js';

class Counting extends FakeTarget {
  dlq = 0;
  cost = false;
  override stats(): ControlStats {
    const s = super.stats() as ControlStats;
    const out: ControlStats = { ...s, stream: { ...s.stream!, dlq: this.dlq } };
    if (this.cost) out.cost = costFigures({ lightweight: 1, heavyweight: 4 }, { lightweight: this.lightweight, heavyweight: this.decisions - this.lightweight });
    return out;
  }
}

describe('StatusTracker', () => {
  it('turns counter differences between samples into rates and a series', async () => {
    let now = 1_000_000;
    const target = new Counting();
    const tracker = new StatusTracker({ stats: () => target.stats(), meta: () => ({ mode: 'fake', health: 'SERVING' }), now: () => now, intervalMs: 2000 });
    await tracker.sample();
    expect((await tracker.document()).now).toBeNull();
    target.decisions = 40;
    target.lightweight = 10;
    target.dlq = 4;
    now += 2000;
    await tracker.sample();
    target.decisions = 100;
    target.lightweight = 40;
    now += 4000;
    await tracker.sample();
    const doc = await tracker.document();
    expect(doc.series).toEqual([
      { t: 1_002_000, decisionsPerSecond: 20, lightweightShare: 0.25, dlqPerSecond: 2 },
      { t: 1_006_000, decisionsPerSecond: 15, lightweightShare: 0.5, dlqPerSecond: 0 },
    ]);
    expect(doc.now).toEqual(doc.series[1]);
    expect(doc).toMatchObject({
      mode: 'fake',
      health: 'SERVING',
      model: { version: 'v1', calibrated: false },
      thresholds: { confidence: 0.85, maxUncertainty: 0.15 },
      totals: { decisions: 100, lightweight: 40, dlq: 4 },
      endToEnd: { p50Ms: 0.1, p99Ms: 0.3, samples: 3 },
      breaker: { state: 'open', trips: 3 },
      logBacklog: 6,
      consumerLag: 12,
      coverage: [],
      cost: null,
    });
    expect(doc.fleet).toBeUndefined();
  });

  it('samples from the cheap counters when given, reading the full stats only for the document', async () => {
    let now = 0;
    const target = new Counting();
    const counters = { decisions: 0, lightweight: 0, dlq: 0 };
    const tracker = new StatusTracker({ stats: () => target.stats(), counters: () => ({ ...counters }), meta: () => ({ mode: 'fake', health: 'SERVING' }), now: () => now });
    await tracker.sample();
    counters.decisions = 30;
    counters.lightweight = 3;
    now += 3000;
    await tracker.sample();
    expect(target.statsCalls).toBe(0);
    const doc = await tracker.document();
    expect(target.statsCalls).toBe(1);
    expect(doc.now).toEqual({ t: 3000, decisionsPerSecond: 10, lightweightShare: 0.1, dlqPerSecond: 0 });
  });

  it('drops samples older than the history and carries cost and the fleet when present', async () => {
    let now = 0;
    const target = new Counting();
    target.cost = true;
    const tracker = new StatusTracker({
      stats: () => target.stats(),
      meta: () => ({ mode: 'fake', health: 'SERVING' }),
      fleet: () => [{ id: 'a', modelVersion: 'v1' }, { id: 'b', modelVersion: 'v2' }],
      now: () => now,
      intervalMs: 1000,
      historySeconds: 10,
    });
    for (let i = 0; i < 30; i++) {
      target.decisions += 10;
      target.lightweight += 5;
      now += 1000;
      await tracker.sample();
    }
    const doc = await tracker.document();
    expect(doc.series.length).toBeLessThanOrEqual(11);
    expect(doc.series[0]!.t).toBeGreaterThanOrEqual(now - 11_000);
    expect(doc.cost).toEqual({ lightweightPrice: 1, heavyweightPrice: 4, spend: 750, allHeavyweightSpend: 1200, savings: 450, savingsShare: 0.375 });
    expect(doc.fleet?.map((r) => r.id)).toEqual(['a', 'b']);
  });
});

describe('the status page routes', () => {
  let server: HttpServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serve the page, its assets and the JSON under a strict CSP; 503 while there is nothing to report', async () => {
    let ready = false;
    const target = new Counting();
    const tracker = new StatusTracker({
      stats: () => {
        if (!ready) throw new Error('the engine is not loaded yet');
        return target.stats();
      },
      meta: () => ({ mode: 'fake', health: 'SERVING' }),
    });
    server = await startHttpServer({
      host: '127.0.0.1', port: 0, registry: createMetrics({ defaultMetrics: false }).registry,
      readiness: () => ({ ready: true, checks: {} }), maxEventLoopDelayMs: 5000, routes: statusRoutes(tracker),
    });
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toBe(STATUS_CSP);
    const html = await page.text();
    // Nothing from another origin: every src/href is a path on this server.
    for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) expect(m[1]).toMatch(/^\//);
    expect(html).not.toMatch(/<script>|<style>|style="/);
    for (const path of ['/status.js', '/status.css', '/favicon.svg']) expect((await fetch(`${server.url}${path}`)).status).toBe(200);
    const early = await fetch(`${server.url}/status.json`);
    expect(early.status).toBe(503);
    expect(await early.json()).toEqual({ error: 'the engine is not loaded yet' });
    ready = true;
    const doc = await fetch(`${server.url}/status.json`);
    expect(doc.status).toBe(200);
    expect(await doc.json()).toMatchObject({ mode: 'fake', model: { version: 'v1' } });
  });
});
