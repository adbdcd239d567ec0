// The route-only deployment for real: startControlOnly (a real RouterPool with worker threads
// + the gRPC control plane) driven by a real grpc-js client over loopback. No Kafka/Postgres
// is involved here; the `serve` App implements the same ControlTarget contract.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient, RpcError } from '../../../src/control/client.js';
import { startControlOnly, type ControlOnly } from '../../../src/control/standalone.js';
import { RouterPool } from '../../../src/engine/pool/pool.js';
import { defaultModelPath, loadModelFile } from '../../../src/engine/model.js';
import type { RoutingRequest } from '../../../src/wire/types.js';
import { nanModel, validModel, writeModel } from './models.js';

const TOKEN = 'standalone-admin-token-42';
// The shipped model's version, read from the file: retraining the default must not break this.
const DEFAULT_MODEL = loadModelFile(defaultModelPath());
const DEFAULT_VERSION = DEFAULT_MODEL.version;
// Thresholds the model carries (trained ones), else the engine's documented defaults.
const DEFAULT_THRESHOLDS = {
  confidence: DEFAULT_MODEL.thresholds?.confidence ?? 0.85,
  max_uncertainty: DEFAULT_MODEL.thresholds?.maxUncertainty ?? 0.15,
};
let dir: string;
const running: Array<{ app: ControlOnly; clients: ControlClient[] }> = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'td-control-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const { app, clients } of running.splice(0)) {
    for (const c of clients) c.close();
    await app.close({ timeoutMs: 1000 });
  }
});

async function start(opts: Parameters<typeof startControlOnly>[0] = {}) {
  const app = await startControlOnly({ address: '127.0.0.1:0', adminToken: TOKEN, workers: 2, watch: { minIntervalMs: 50 }, ...opts });
  const clients: ControlClient[] = [];
  running.push({ app, clients });
  const client = (token?: string) => {
    const c = new ControlClient({ address: app.server.address, ...(token ? { token } : {}), deadlineMs: 15_000 });
    clients.push(c);
    return c;
  };
  return { app, client };
}

function request(id: string, dim = 16): RoutingRequest {
  const q = Array.from({ length: dim }, (_, i) => Math.sin(i + 1));
  const now = Math.floor(Date.now() / 1000);
  return {
    request_id: id,
    query_embedding: q,
    candidates: [
      { id: 'close', embedding: q.map((v) => v * 0.99), created_at: now, access_count: 10_000, success_rate: 1, metadata: { lang: 'en', tier: 'small' } },
      { id: 'far', embedding: q.map((v, i) => (i % 2 ? -v : v * 0.1)), created_at: now - 86_400, access_count: 1, success_rate: 0.2 },
      { id: 'mid', embedding: q.map((v, i) => (i < dim / 2 ? v : 0)), success_rate: 0.6 },
    ],
    metadata: { lang: 'en' },
  };
}

async function failure(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RpcError);
    return err as RpcError;
  }
  throw new Error('expected the call to fail');
}

describe('route-only control plane over a real RouterPool', () => {
  it('serves every RPC', async () => {
    const { client } = await start();
    const c = client(TOKEN);
    expect(await c.health()).toBe('SERVING');

    const res = await c.route(request('r-1'));
    expect(res.candidates_processed).toBe(3);
    expect(res.decisions.map((d) => d.rank)).toEqual([0, 1, 2]);
    expect(new Set(res.decisions.map((d) => d.candidate_id))).toEqual(new Set(['close', 'far', 'mid']));
    expect(res.decisions[0]!.model_version).toBe(DEFAULT_VERSION);
    expect(res.decisions.find((d) => d.candidate_id === 'close')!.metadata).toEqual({ lang: 'en', tier: 'small' });
    for (const d of res.decisions) {
      expect(d.confidence).toBeGreaterThanOrEqual(0);
      expect(d.confidence).toBeLessThanOrEqual(1);
      expect(['model', 'uncertain', 'below_threshold']).toContain(d.reason);
    }

    const bad = await failure(c.route({ ...request('r-bad'), candidates: [{ id: 'x', embedding: [1, 2] }] }));
    expect(bad.status).toBe('INVALID_ARGUMENT');
    expect(bad.details).toMatch(/candidates\[0\] \(id "x"\): embedding has 2 values/);

    const s = await c.getStats();
    expect(s.mode).toBe('control-only');
    expect(s.model?.version).toBe(DEFAULT_VERSION);
    expect(s.model?.features).toHaveLength(5);
    expect(s.model?.source).toMatch(/default\.safetensors$/);
    expect(s.totals).toMatchObject({ requests: 1, decisions: 3, rejected: 1, failed: 0 });
    expect(s.totals!.lightweight + s.totals!.heavyweight).toBe(3);
    expect(s.engine_latency?.count).toBe(1);
    expect(s.end_to_end_latency?.count).toBe(1);
    expect(s.end_to_end_latency!.p50_us).toBeGreaterThanOrEqual(s.engine_latency!.p50_us);
    expect(s.pool?.workers).toBe(2);
    expect(s.stream).toBeNull();
    expect(s.store).toBeNull();
    expect(s.thresholds).toEqual(DEFAULT_THRESHOLDS);

    const cfg = await c.getConfig();
    expect(cfg).toMatchObject({ mode: 'control-only', model_version: DEFAULT_VERSION });
    expect(cfg.model_path).toMatch(/default\.safetensors$/);
    expect(cfg.settings.workers).toBe('2');
    expect(cfg.breaker?.timeout_ms).toBe(2000);

    expect((await c.getCircuitBreaker()).state).toBe('BREAKER_STATE_CLOSED');
    expect((await c.resetCircuitBreaker()).state).toBe('BREAKER_STATE_CLOSED');

    // Thresholds really change the workers' decisions: confidence ≥ 1 sends everything heavyweight.
    expect(await c.setThresholds({ confidence: 1 })).toEqual({ confidence: 1, max_uncertainty: DEFAULT_THRESHOLDS.max_uncertainty });
    const strict = await c.route(request('r-2'));
    expect(strict.decisions.every((d) => !d.use_lightweight)).toBe(true);
    expect(strict.decisions.some((d) => d.reason === 'below_threshold')).toBe(true);
    await c.setThresholds({ confidence: 0, maxUncertainty: 1 });
    expect((await c.getStats()).thresholds).toEqual({ confidence: 0, max_uncertainty: 1 });

    let n = 0;
    const w = c.watchStats(50, () => n++);
    await expect.poll(() => n, { timeout: 3000 }).toBeGreaterThanOrEqual(2);
    w.cancel();
    await w.done;
  });

  it('reloads under routing load with no failed request, and the new version is visible everywhere', async () => {
    const { client } = await start();
    const admin = client(TOKEN);
    const v2 = writeModel(dir, 'v2.safetensors', validModel('v2', { seed: 11, calibrated: true }));
    const v3bytes = validModel('v3', { seed: 23 });

    const versions = new Set<string>();
    let routed = 0;
    const errors: unknown[] = [];
    let stop = false;
    const loop = async (k: number) => {
      const c = client();
      let i = 0;
      while (!stop) {
        try {
          const res = await c.route(request(`load-${k}-${i++}`));
          if (res.decisions.length !== 3) errors.push(new Error(`got ${res.decisions.length} decisions`));
          for (const d of res.decisions) {
            versions.add(d.model_version);
            if (d.reason === 'breaker_open') errors.push(new Error('fallback decision during reload'));
          }
          routed++;
        } catch (err) {
          errors.push(err);
        }
      }
    };
    const loops = [0, 1, 2, 3].map((k) => loop(k));
    await expect.poll(() => routed, { timeout: 10_000 }).toBeGreaterThan(20);

    const r2 = await admin.reloadModel({ path: v2 });
    expect(r2).toMatchObject({ previous_version: DEFAULT_VERSION, calibrated: true });
    expect(r2.model).toMatchObject({ version: 'v2', source: v2, calibrated: true, calibration_n: 400, input_dim: 5 });
    const mark = routed;
    await expect.poll(() => routed, { timeout: 10_000 }).toBeGreaterThan(mark + 20);

    const r3 = await admin.reloadModel({ bytes: v3bytes });
    expect(r3).toMatchObject({ previous_version: 'v2', calibrated: false });
    expect(r3.model?.source).toBe('bytes');
    expect(r3.notes.join(' ')).toMatch(/no conformal calibration/);
    const mark3 = routed;
    await expect.poll(() => routed, { timeout: 10_000 }).toBeGreaterThan(mark3 + 20);
    stop = true;
    await Promise.all(loops);

    expect(errors).toEqual([]);
    expect(versions).toEqual(new Set([DEFAULT_VERSION, 'v2', 'v3']));
    const after = await admin.route(request('after'));
    expect(after.decisions.every((d) => d.model_version === 'v3')).toBe(true);
    const s = await admin.getStats();
    expect(s.model?.version).toBe('v3');
    expect(s.model!.loaded_at_unix_ms).toBeGreaterThan(s.started_at_unix_ms);
    expect(s.totals!.failed).toBe(0);
    expect(s.totals!.requests).toBe(routed + 1);
  });

  it('refuses broken models with precise statuses and keeps serving the old one', async () => {
    const { client } = await start();
    const c = client(TOKEN);
    const good = validModel('good-1');
    const cases: Array<[string, () => Promise<unknown>, string, RegExp]> = [
      ['garbage bytes', () => c.reloadModel({ bytes: new TextEncoder().encode('this is not a safetensors file at all') }), 'INVALID_ARGUMENT', /./],
      ['truncated', () => c.reloadModel({ bytes: good.subarray(0, good.length - 40) }), 'INVALID_ARGUMENT', /./],
      ['NaN weights', () => c.reloadModel({ bytes: nanModel() }), 'INVALID_ARGUMENT', /non-finite/],
      ['missing path', () => c.reloadModel({ path: join(dir, 'nope.safetensors') }), 'NOT_FOUND', /does not exist on the server/],
      ['a directory', () => c.reloadModel({ path: dir }), 'INVALID_ARGUMENT', /not a regular file/],
      [
        'another feature set',
        () => c.reloadModel({ bytes: validModel('wide-1', { features: [...['a', 'b', 'c', 'd', 'e', 'f', 'g']] }) }),
        'FAILED_PRECONDITION',
        /expects 7 inputs .* this router extracts 5/,
      ],
    ];
    for (const [what, p, status, message] of cases) {
      const err = await failure(p());
      expect(err.status, what).toBe(status);
      expect(err.details, what).toMatch(message);
    }
    expect(await c.health()).toBe('SERVING');
    const res = await c.route(request('still'));
    expect(res.decisions.every((d) => d.model_version === DEFAULT_VERSION)).toBe(true);
    expect((await c.getStats()).model?.version).toBe(DEFAULT_VERSION);
  });

  it('the breaker falls back to heavyweight when the engine fails, and ResetCircuitBreaker closes it', async () => {
    const pool = await RouterPool.create({ workers: 1, testHooks: true });
    const { app, client } = await start({ pool, breaker: { volumeThreshold: 1, errorThresholdPercentage: 1, resetTimeoutMs: 60_000 } });
    const c = client(TOKEN);
    // Crash the only worker while requests are on it until a failure opens the breaker.
    for (let i = 0; i < 50 && (await c.getCircuitBreaker()).state !== 'BREAKER_STATE_OPEN'; i++) {
      pool.crashWorkerForTest(0, 13);
      await Promise.allSettled([0, 1, 2].map((k) => c.route(request(`crash-${i}-${k}`))));
    }
    const open = await c.getCircuitBreaker();
    expect(open.state).toBe('BREAKER_STATE_OPEN');
    expect(open.trips).toBe(1);
    expect(open.opened_at_unix_ms).toBeGreaterThan(0);

    // Open: answered at once, every candidate heavyweight with reason breaker_open.
    const fb = await c.route(request('while-open'));
    expect(fb.decisions).toHaveLength(3);
    expect(fb.decisions.every((d) => !d.use_lightweight && d.reason === 'breaker_open')).toBe(true);
    // Invalid input is still refused, not answered by the fallback.
    expect((await failure(c.route({ ...request('bad'), request_id: '' }))).status).toBe('INVALID_ARGUMENT');

    const s = await c.getStats();
    expect(s.breaker?.state).toBe('BREAKER_STATE_OPEN');
    expect(s.totals!.reasons.breaker_open).toBeGreaterThanOrEqual(3);
    expect(s.pool!.crashes).toBeGreaterThanOrEqual(1);

    expect((await failure(client().resetCircuitBreaker())).status).toBe('UNAUTHENTICATED');
    expect((await c.getCircuitBreaker()).state).toBe('BREAKER_STATE_OPEN');
    expect((await c.resetCircuitBreaker()).state).toBe('BREAKER_STATE_CLOSED');
    await expect.poll(async () => (await c.route(request('after-reset'))).decisions[0]!.reason, { timeout: 10_000 }).not.toBe('breaker_open');
    expect(app.target.breaker().trips).toBe(1);
  });

  it('drain: health goes NOT_SERVING (Watch sees it), admin changes are refused, Route still answers', async () => {
    const { app, client } = await start();
    const c = client(TOKEN);
    const { healthClientConstructor } = await import('../../../src/control/proto.js');
    const { credentials } = await import('@grpc/grpc-js');
    const Health = healthClientConstructor();
    const hc = new Health(app.server.address, credentials.createInsecure()) as unknown as {
      watch(req: unknown): NodeJS.EventEmitter & { cancel(): void };
      close(): void;
    };
    const seen: string[] = [];
    const stream = hc.watch({ service: '' });
    stream.on('data', (m: { status: string }) => seen.push(m.status));
    stream.on('error', () => {});
    await expect.poll(() => seen).toEqual(['SERVING']);

    app.target.drain();
    await expect.poll(() => seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect(await c.health()).toBe('NOT_SERVING');
    const v2 = writeModel(dir, 'drain.safetensors', validModel('drain-2'));
    const err = await failure(c.reloadModel({ path: v2 }));
    expect(err.status).toBe('FAILED_PRECONDITION');
    expect(err.details).toMatch(/draining/);
    expect((await c.route(request('during-drain'))).decisions).toHaveLength(3);
    expect((await c.getStats()).model?.version).toBe(DEFAULT_VERSION);
    stream.cancel();
    hc.close();
  });
});
