// The operator's HTTP surface on TD_HTTP_ADDR: /metrics (Prometheus text), /healthz (liveness)
// and /readyz (readiness). Health is about the PROCESS (alive, event loop not wedged); readiness
// is about the SERVICE (consumer in its group with partitions, engine loaded, log accepting
// writes) and is supplied by the app as a function, so this module knows nothing about Kafka.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

export interface ReadinessReport {
  ready: boolean;
  /** Each check: true when fine, or a short reason why not. */
  checks: Record<string, true | string>;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  registry: Registry;
  readiness: () => ReadinessReport;
  /** /healthz fails when the loop was blocked longer than this within the last window. */
  maxEventLoopDelayMs: number;
  /** Called with the p99 loop delay (ms) at every sample, e.g. to set a gauge. */
  onEventLoopDelay?: (p99Ms: number, maxMs: number) => void;
  logger?: Logger;
  /** Sampling window of the loop-delay histogram. */
  sampleIntervalMs?: number;
  /** More GET paths (e.g. the status page), each answering a body, its type and extra headers. */
  routes?: Record<string, () => HttpReply | Promise<HttpReply>>;
}

export interface HttpReply {
  /** Default 200. */
  status?: number;
  body: string;
  type: string;
  headers?: Record<string, string>;
}

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Max event-loop delay (ms) of the last complete window. */
  eventLoopDelayMs(): number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, type = 'application/json', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const sampleMs = opts.sampleIntervalMs ?? 1000;
  const histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let lastMaxMs = 0;
  // A ticker that fires late says the loop was blocked, and by how much — also for a stall
  // that began before the histogram's first sample. The histogram gives the p99 for the gauge.
  const TICK_MS = 50;
  let expectedTick = performance.now() + TICK_MS;
  let worstLateMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    worstLateMs = Math.max(worstLateMs, now - expectedTick);
    expectedTick = now + TICK_MS;
  }, TICK_MS);
  ticker.unref();
  const sampler = setInterval(() => {
    lastMaxMs = Math.max(histogram.max / 1e6, worstLateMs);
    worstLateMs = 0;
    const p99 = histogram.percentile(99) / 1e6;
    histogram.reset();
    opts.onEventLoopDelay?.(p99, lastMaxMs);
  }, sampleMs);
  sampler.unref();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, JSON.stringify({ error: 'method not allowed' }));
    switch (path) {
      case '/metrics': {
        const body = await opts.registry.metrics();
        return send(res, 200, body, opts.registry.contentType);
      }
      case '/healthz': {
        // Includes the loop delay observed up to now, so a stall that just ended still counts.
        const delay = Math.max(lastMaxMs, worstLateMs, performance.now() - expectedTick, histogram.max / 1e6);
        const ok = delay <= opts.maxEventLoopDelayMs;
        return send(
          res,
          ok ? 200 : 503,
          JSON.stringify({ status: ok ? 'ok' : 'wedged', eventLoopDelayMs: Math.round(delay), limitMs: opts.maxEventLoopDelayMs }),
        );
      }
      case '/readyz': {
        let report: ReadinessReport;
        try {
          report = opts.readiness();
        } catch (err) {
          report = { ready: false, checks: { readiness: (err as Error).message } };
        }
        return send(res, report.ready ? 200 : 503, JSON.stringify({ status: report.ready ? 'ready' : 'not ready', checks: report.checks }));
      }
      default: {
        const route = path === undefined ? undefined : opts.routes?.[path];
        if (route) {
          const r = await route();
          return send(res, r.status ?? 200, r.body, r.type, r.headers);
        }
        return send(res, 404, JSON.stringify({ error: 'not found', paths: [...Object.keys(opts.routes ?? {}), '/metrics', '/healthz', '/readyz'] }));
      }
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      opts.logger?.warn('http handler failed', { path: req.url, err });
      if (!res.headersSent) send(res, 500, JSON.stringify({ error: 'internal error' }));
      else res.destroy();
    });
  });
  // Probes are short; do not let idle keep-alive sockets hold shutdown.
  server.keepAliveTimeout = 2000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      clearInterval(sampler);
      clearInterval(ticker);
      histogram.disable();
      reject(err);
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = opts.host;
  const port = addr.port;

  return {
    host,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    eventLoopDelayMs: () => lastMaxMs,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(sampler);
        clearInterval(ticker);
        histogram.disable();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
