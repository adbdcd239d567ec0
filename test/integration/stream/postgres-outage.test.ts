// Postgres unreachable for a while (a TCP proxy the test cuts): the log buffers up to its
// bound, the processor pauses consumption (backpressure) instead of dropping anything, readiness
// says why, and when Postgres is back the backlog drains and every decision becomes a row.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App, AppEvent } from '../../../src/app.js';
import { TcpProxy } from '../store/tcp-proxy.js';
import {
  collect,
  databaseUrl,
  decision,
  deleteTopics,
  dropSchema,
  makeRequest,
  names,
  produce,
  record,
  rowCounts,
  startApp,
  testConfig,
  waitFor,
  type Collector,
} from './helpers.js';

const n = names('pgout');
let app: App;
let proxy: TcpProxy;
let out: Collector;
const events: AppEvent[] = [];

beforeAll(async () => {
  const target = new URL(databaseUrl());
  proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
  await proxy.start();
  const viaProxy = new URL(databaseUrl());
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const config = testConfig(n, { logMaxBuffered: 300, logBatchSize: 50, maxInFlight: 200 }, { DATABASE_URL: viaProxy.toString() });
  app = await startApp(config);
  app.on('event', (e: AppEvent) => events.push(e));
  out = await collect([n.lightweight, n.heavyweight]);
});

afterAll(async () => {
  await proxy?.restore().catch(() => {});
  await out?.stop();
  await app?.stop({ timeoutMs: 10_000 });
  await proxy?.close();
  await dropSchema(n.schema);
  await deleteTopics(n);
});

describe('Postgres outage', () => {
  it('pauses consumption while the log is full, loses nothing, and drains when Postgres returns', async () => {
    const first = Array.from({ length: 20 }, (_, i) => makeRequest(`a-${i}`, 3, 8));
    await produce(n.requests, first.map((r) => record(r, 'protobuf')));
    await waitFor(async () => (await rowCounts(n.schema)).rows === 60, 30_000, 'rows before the outage');

    await proxy.refuse();
    const second = Array.from({ length: 300 }, (_, i) => makeRequest(`b-${i}`, 3, 8));
    await produce(n.requests, second.map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));

    // The log fills to its high-water mark and the consumer pauses; readiness reports it.
    await waitFor(() => events.some((e) => e.type === 'paused'), 30_000, 'the consumer to pause');
    const notReady = await fetch(`${app.httpUrl}/readyz`);
    expect(notReady.status).toBe(503);
    expect(((await notReady.json()) as { checks: Record<string, unknown> }).checks.decisionLog).toMatch(/full: backlog \d+ of at most 300 rows/);
    // Consumption stays bounded while paused: the log's backlog never exceeds its bound, and
    // no more than TD_MAX_IN_FLIGHT requests are taken in beyond what is durable.
    await new Promise((r) => setTimeout(r, 3000));
    expect(app.logBacklog()).toBeLessThanOrEqual(300);
    expect(app.streamCounters()!.consumed).toBeLessThanOrEqual(20 + 200);
    expect(app.processorStatus()!.paused).toBe(true);
    expect((await fetch(`${app.httpUrl}/healthz`)).status).toBe(200); // alive, just not ready

    await proxy.restore();
    const all = [...first, ...second];
    await waitFor(async () => (await rowCounts(n.schema)).rows >= all.length * 3, 45_000, 'every row after the outage');
    expect(await rowCounts(n.schema)).toEqual({ rows: all.length * 3, distinct: all.length * 3, requests: all.length });
    await waitFor(() => events.some((e) => e.type === 'resumed'), 10_000, 'the consumer to resume');
    await waitFor(async () => (await fetch(`${app.httpUrl}/readyz`)).status === 200, 10_000, 'ready again');

    // And every decision reached Kafka.
    await out.until((rs) => new Set(rs.map((r) => `${decision(r.message).request_id}/${decision(r.message).candidate_id}`)).size >= all.length * 3, 30_000, 'all decisions');
    const metrics = await (await fetch(`${app.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/td_decision_log_backlog 0/);
  });
});
