import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/observe/metrics.js';
import { startHttpServer, type HttpServer, type ReadinessReport } from '../../../src/observe/http.js';

let server: HttpServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('health/metrics HTTP server', () => {
  it('serves /metrics, /healthz and /readyz (following the readiness function)', async () => {
    const metrics = createMetrics();
    metrics.requests.inc({ encoding: 'json', outcome: 'decided' }, 3);
    let report: ReadinessReport = { ready: false, checks: { consumer: 'not joined', engine: true } };
    server = await startHttpServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, readiness: () => report, maxEventLoopDelayMs: 5000 });

    const m = await fetch(`${server.url}/metrics`);
    expect(m.status).toBe(200);
    const text = await m.text();
    expect(text).toMatch(/td_requests_total\{encoding="json",outcome="decided"\} 3/);
    expect(text).toMatch(/process_resident_memory_bytes/);

    const h = await fetch(`${server.url}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: 'ok' });

    const r1 = await fetch(`${server.url}/readyz`);
    expect(r1.status).toBe(503);
    expect(await r1.json()).toEqual({ status: 'not ready', checks: { consumer: 'not joined', engine: true } });
    report = { ready: true, checks: { consumer: true, engine: true } };
    const r2 = await fetch(`${server.url}/readyz`);
    expect(r2.status).toBe(200);

    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('/healthz fails after the event loop was blocked longer than the limit', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    server = await startHttpServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, readiness: () => ({ ready: true, checks: {} }), maxEventLoopDelayMs: 100, sampleIntervalMs: 60_000 });
    const until = Date.now() + 300;
    while (Date.now() < until) {
      /* wedge the loop */
    }
    const h = await fetch(`${server.url}/healthz`);
    expect(h.status).toBe(503);
    expect(await h.json()).toMatchObject({ status: 'wedged' });
  });

  it('a throwing readiness function is "not ready", not a crash', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      readiness: () => {
        throw new Error('store gone');
      },
      maxEventLoopDelayMs: 5000,
    });
    const r = await fetch(`${server.url}/readyz`);
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ status: 'not ready', checks: { readiness: 'store gone' } });
  });

  it('refuses a port in use with the listen error', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    server = await startHttpServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, readiness: () => ({ ready: true, checks: {} }), maxEventLoopDelayMs: 5000 });
    await expect(
      startHttpServer({ host: '127.0.0.1', port: server.port, registry: metrics.registry, readiness: () => ({ ready: true, checks: {} }), maxEventLoopDelayMs: 5000 }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
