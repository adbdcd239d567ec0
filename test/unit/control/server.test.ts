// The control server's own behaviour, over real gRPC on loopback with a real grpc-js client:
// every RPC, authorization, status mapping, limits, WatchStats clean-up, health and reflection.
// The target is a recording double (no Kafka/Postgres involved); the route-only adapter over a
// real RouterPool is tested in test/integration/control/.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { credentials, loadPackageDefinition, type Client, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ModelError } from '../../../src/errors.js';
import { ControlClient, RpcError } from '../../../src/control/client.js';
import { startControlServer, type ControlServer, type ControlServerOptions } from '../../../src/control/server.js';
import { ControlError } from '../../../src/control/target.js';
import { FakeTarget } from './fake-target.js';

const TOKEN = 'test-admin-token-0123456789';

const open: Array<{ server: ControlServer; clients: ControlClient[] }> = [];

async function start(opts: Partial<ControlServerOptions> & { target?: FakeTarget } = {}) {
  const target = opts.target ?? new FakeTarget();
  const server = await startControlServer({ address: '127.0.0.1:0', adminToken: TOKEN, ...opts, target });
  const entry = { server, clients: [] as ControlClient[] };
  open.push(entry);
  const client = (token?: string, extra: { maxMessageBytes?: number } = {}) => {
    const c = new ControlClient({ address: server.address, ...(token === undefined ? {} : { token }), deadlineMs: 5000, ...extra });
    entry.clients.push(c);
    return c;
  };
  return { target, server, client };
}

afterEach(async () => {
  for (const { server, clients } of open.splice(0)) {
    for (const c of clients) c.close();
    await server.close({ timeoutMs: 200 });
  }
});

async function rpcFailure(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RpcError);
    return err as RpcError;
  }
  throw new Error('the call was expected to fail');
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const request = {
  request_id: 'r-1',
  query_embedding: [1, 0, 0],
  candidates: [
    { id: 'a', embedding: [1, 0, 0], metadata: { tier: 'small' }, created_at: 1_700_000_000, access_count: 3, success_rate: 0.9 },
    { id: 'b', embedding: [0, 1, 0] },
  ],
  metadata: { lang: 'en' },
};

describe('read-only calls (open, no token)', () => {
  it('GetStats maps every section of the snapshot', async () => {
    const { target, client } = await start();
    target.requests = 10;
    target.decisions = 20;
    target.lightweight = 5;
    const s = await client().getStats();
    expect(s.mode).toBe('fake');
    expect(s.health).toBe('SERVING');
    expect(s.model?.version).toBe('v1');
    expect(s.model?.input_dim).toBe(5);
    expect(s.model?.calibrated).toBe(false);
    expect(s.totals).toMatchObject({ requests: 10, decisions: 20, lightweight: 5, heavyweight: 15, failed: 1, rejected: 2, reasons: { model: 20 } });
    expect(s.lightweight_share).toBeCloseTo(0.25);
    expect(s.uptime_seconds).toBeGreaterThanOrEqual(9.9);
    // Lifetime rates when the target gives none: 10 requests over ~10 s.
    expect(s.rates?.requests_per_second).toBeGreaterThan(0.8);
    expect(s.rates?.requests_per_second).toBeLessThan(1.01);
    expect(s.engine_latency).toMatchObject({ count: 3, p50_us: 10, p99_us: 30 });
    expect(s.end_to_end_latency?.p90_us).toBe(200);
    expect(s.breaker?.state).toBe('BREAKER_STATE_OPEN');
    expect(s.breaker?.trips).toBe(3);
    expect(s.pool?.workers).toBe(2);
    expect(s.stream).toMatchObject({ connected: true, consumed: 7, dlq: 4, consumer_lag: 12 });
    expect(s.decision_log).toMatchObject({ backlog: 6, healthy: true });
    expect(s.store).toMatchObject({ available: true, decisions: 50, model_versions: { v1: 50 } });
  });

  it('GetCircuitBreaker, GetConfig (secrets redacted) and Route', async () => {
    const { client } = await start();
    const c = client();
    const b = await c.getCircuitBreaker();
    expect(b).toMatchObject({ state: 'BREAKER_STATE_OPEN', trips: 3, fallbacks: 17 });
    expect(b.window?.rejects).toBe(9);
    expect(b.settings?.reset_timeout_ms).toBe(10_000);

    const cfg = await c.getConfig();
    expect(cfg.mode).toBe('fake');
    expect(cfg.model_path).toBe('/models/a.safetensors');
    expect(cfg.model_version).toBe('v1');
    expect(cfg.thresholds).toEqual({ confidence: 0.85, max_uncertainty: 0.15 });
    expect(cfg.settings.groupId).toBe('tiny-dancer');
    expect(cfg.settings.workers).toBe('2');
    expect(JSON.parse(cfg.settings.topics!)).toEqual({ requests: 'routing.requests' });
    expect(cfg.settings.adminToken).toBe('[redacted]');
    expect(cfg.settings.databaseUrl).toBe('postgres://app:***@db:5432/x');
    expect(JSON.stringify(cfg)).not.toContain('must-not-leak');
    expect(JSON.stringify(cfg)).not.toContain('hunter2');

    const res = await c.route(request);
    expect(res.candidates_processed).toBe(2);
    expect(res.decisions.map((d) => d.candidate_id)).toEqual(['a', 'b']);
    expect(res.decisions[0]!.metadata).toEqual({ tier: 'small' });
    expect(res.decisions[0]!.reason).toBe('model');
  });

  it('Route answers INVALID_ARGUMENT with the validation message', async () => {
    const { client } = await start();
    const err = await rpcFailure(client().route({ ...request, request_id: '' }));
    expect(err.status).toBe('INVALID_ARGUMENT');
    expect(err.message).toBe('INVALID_ARGUMENT: request_id: required');
  });

  it('stats that do not answer fail with UNAVAILABLE instead of hanging', async () => {
    const { target, client } = await start({ statsTimeoutMs: 100 });
    target.statsHang = true;
    const err = await rpcFailure(client().getStats());
    expect(err.status).toBe('UNAVAILABLE');
    expect(err.details).toMatch(/did not answer within 100 ms/);
  });
});

describe('authorization of state-changing calls', () => {
  const mutations = [
    ['ReloadModel', (c: ControlClient) => c.reloadModel({ path: '/tmp/x.safetensors' })],
    ['ResetCircuitBreaker', (c: ControlClient) => c.resetCircuitBreaker()],
    ['SetThresholds', (c: ControlClient) => c.setThresholds({ confidence: 0.5 })],
  ] as const;

  it.each(mutations)('%s is refused with PERMISSION_DENIED when the server has no token', async (name, call) => {
    const { target, client } = await start({ adminToken: undefined });
    const err = await rpcFailure(call(client(TOKEN)));
    expect(err.status).toBe('PERMISSION_DENIED');
    expect(err.details).toContain(name);
    expect(err.details).toMatch(/no admin token configured.*TD_ADMIN_TOKEN/);
    expect(target.changes).toEqual([]);
  });

  it.each(mutations)('%s without a token is UNAUTHENTICATED and changes nothing', async (_name, call) => {
    const { target, client } = await start();
    const err = await rpcFailure(call(client()));
    expect(err.status).toBe('UNAUTHENTICATED');
    expect(err.details).toMatch(/authorization: Bearer/);
    expect(target.changes).toEqual([]);
    expect(target.version).toBe('v1');
    expect(target.breakerState).toBe('open');
  });

  it.each(mutations)('%s with a wrong token is UNAUTHENTICATED and changes nothing', async (_name, call) => {
    const { target, client } = await start();
    for (const wrong of ['wrong-token', `${TOKEN}x`, TOKEN.slice(0, -1), TOKEN.toUpperCase()]) {
      const err = await rpcFailure(call(client(wrong)));
      expect(err.status).toBe('UNAUTHENTICATED');
      expect(err.details).toMatch(/not valid/);
      expect(err.message).not.toContain(wrong);
    }
    expect(target.changes).toEqual([]);
  });

  it('a malformed authorization header is UNAUTHENTICATED', async () => {
    const { target, server } = await start();
    const Ctor = (await import('../../../src/control/proto.js')).controlClientConstructor();
    const raw = new Ctor(server.address, credentials.createInsecure());
    try {
      const { Metadata } = await import('@grpc/grpc-js');
      const md = new Metadata();
      md.set('authorization', `Basic ${TOKEN}`);
      const err = await new Promise<{ code: number; details: string }>((res) => {
        (raw as unknown as Record<string, (...a: unknown[]) => void>).ResetCircuitBreaker!.call(raw, {}, md, (e: { code: number; details: string }) => res(e));
      });
      expect(err.code).toBe(16);
      expect(err.details).toMatch(/must be 'Bearer <token>'/);
    } finally {
      raw.close();
    }
    expect(target.changes).toEqual([]);
  });

  it('with the token every mutation goes through', async () => {
    const { target, client } = await start();
    const c = client(TOKEN);
    const r = await c.reloadModel({ path: '/models/b.safetensors' });
    expect(r.previous_version).toBe('v1');
    expect(r.model?.version).toBe('from-path:/models/b.safetensors');
    expect(r.calibrated).toBe(false);
    expect(r.notes.join(' ')).toMatch(/no conformal calibration/);
    expect(r.duration_ms).toBeGreaterThanOrEqual(0);
    const bytes = await c.reloadModel({ bytes: new Uint8Array(1234) });
    expect(bytes.model?.version).toBe('from-bytes:1234');
    expect((await c.resetCircuitBreaker()).state).toBe('BREAKER_STATE_CLOSED');
    expect(await c.setThresholds({ maxUncertainty: 0.3 })).toEqual({ confidence: 0.85, max_uncertainty: 0.3 });
    expect(target.changes).toEqual([
      'reload from-path:/models/b.safetensors',
      'reload from-bytes:1234',
      'reset',
      'thresholds {"maxUncertainty":0.3}',
    ]);
    // And the new model version is what stats report.
    expect((await c.getStats()).model?.version).toBe('from-bytes:1234');
  });
});

describe('argument checks and status mapping', () => {
  it('SetThresholds refuses values outside [0, 1] and an empty update', async () => {
    const { target, client } = await start();
    const c = client(TOKEN);
    for (const bad of [{ confidence: 1.5 }, { maxUncertainty: -0.1 }, { confidence: Number.NaN }, {}]) {
      const err = await rpcFailure(c.setThresholds(bad));
      expect(err.status).toBe('INVALID_ARGUMENT');
    }
    expect(target.changes).toEqual([]);
  });

  it('ReloadModel needs a source', async () => {
    const { client } = await start();
    const c = client(TOKEN);
    expect((await rpcFailure(c.reloadModel({ path: '' }))).status).toBe('INVALID_ARGUMENT');
    expect((await rpcFailure(c.reloadModel({ bytes: new Uint8Array(0) }))).status).toBe('INVALID_ARGUMENT');
  });

  it.each([
    [new ControlError('not_found', 'model file /nope does not exist on the server'), 'NOT_FOUND'],
    [new ControlError('failed_precondition', 'model expects 7 inputs'), 'FAILED_PRECONDITION'],
    [new ModelError('model bytes: canary forward pass is not finite'), 'INVALID_ARGUMENT'],
    [Object.assign(new Error('open /x: no such file'), { code: 'ENOENT' }), 'NOT_FOUND'],
    [new ModelError('wrapped', { cause: Object.assign(new Error('EACCES'), { code: 'EACCES' }) }), 'FAILED_PRECONDITION'],
    [new Error('something broke'), 'INTERNAL'],
  ])('a reload failure %# is reported as %s with its message', async (error, status) => {
    const { target, client } = await start();
    target.reloadError = error;
    const err = await rpcFailure(client(TOKEN).reloadModel({ path: '/models/x.safetensors' }));
    expect(err.status).toBe(status);
    expect(err.details).toBe((error as Error).message);
    expect(target.version).toBe('v1');
  });

  it('a second reload while one is running is ABORTED', async () => {
    const { target, client } = await start();
    let open!: () => void;
    target.reloadGate = new Promise<void>((r) => (open = r));
    const c = client(TOKEN);
    const first = c.reloadModel({ path: '/models/one' });
    await until(() => true);
    await new Promise((r) => setTimeout(r, 50));
    const err = await rpcFailure(c.reloadModel({ path: '/models/two' }));
    expect(err.status).toBe('ABORTED');
    open();
    expect((await first).model?.version).toBe('from-path:/models/one');
  });

  it('a bytes reload over the message limit is RESOURCE_EXHAUSTED and nothing changes', async () => {
    const { target, client } = await start({ maxMessageBytes: 64 * 1024 });
    const c = client(TOKEN, { maxMessageBytes: 1024 * 1024 });
    const err = await rpcFailure(c.reloadModel({ bytes: new Uint8Array(100 * 1024) }));
    expect(err.status).toBe('RESOURCE_EXHAUSTED');
    expect(target.changes).toEqual([]);
    // The server is still up and the connection usable.
    expect((await c.getStats()).model?.version).toBe('v1');
    // Just under the limit is fine.
    expect((await c.reloadModel({ bytes: new Uint8Array(60 * 1024) })).model?.version).toBe(`from-bytes:${60 * 1024}`);
  });
});

describe('WatchStats', () => {
  it('streams at the (clamped) interval with interval rates, and the server cleans up when the client cancels', async () => {
    const { target, server, client } = await start({ watch: { minIntervalMs: 50 } });
    const received: Array<{ at: number; requests: number; window: number; rps: number }> = [];
    const w = client().watchStats(1, (s) => {
      received.push({ at: s.time_unix_ms, requests: s.totals!.requests, window: s.rates!.window_seconds, rps: s.rates!.requests_per_second });
      target.requests += 10;
    });
    await until(() => received.length >= 4);
    expect(server.watchers).toBe(1);
    w.cancel();
    await w.done;
    await until(() => server.watchers === 0);
    // The timer is gone: no more stats() calls once the stream is closed.
    const calls = target.statsCalls;
    await new Promise((r) => setTimeout(r, 200));
    expect(target.statsCalls).toBe(calls);
    // Clamped to 50 ms (asked 1 ms): the server stamped consecutive messages ≥ 50 ms apart
    // (arrival times at the client may bunch up on a busy machine, send times do not).
    for (let i = 1; i < received.length; i++) expect(received[i]!.at - received[i - 1]!.at).toBeGreaterThanOrEqual(49);
    // From the second message on, rates are over the interval: 10 requests per ~50 ms.
    const later = received[2]!;
    expect(later.window).toBeGreaterThan(0.03);
    expect(later.window).toBeLessThan(1);
    expect(later.rps).toBeGreaterThan(10 / 1);
  });

  it('refuses more streams than its limit with RESOURCE_EXHAUSTED', async () => {
    const { client } = await start({ watch: { minIntervalMs: 50, maxWatchers: 1 } });
    const c = client();
    const first = c.watchStats(50, () => {});
    await new Promise((r) => setTimeout(r, 100));
    const second = c.watchStats(50, () => {});
    const err = await second.done.then(
      () => undefined,
      (e: unknown) => e as RpcError,
    );
    expect(err?.status).toBe('RESOURCE_EXHAUSTED');
    first.cancel();
    await first.done;
  });

  it('closing the server ends open streams', async () => {
    const { server, client } = await start({ watch: { minIntervalMs: 50 } });
    let n = 0;
    const w = client().watchStats(50, () => n++);
    await until(() => n >= 1);
    await server.close({ timeoutMs: 500 });
    await w.done;
    expect(server.watchers).toBe(0);
  });
});

describe('health', () => {
  it('follows the target (SERVING ⇄ NOT_SERVING), for "" and the service name, and goes NOT_SERVING on close', async () => {
    const { target, server, client } = await start();
    const c = client();
    expect(await c.health()).toBe('SERVING');
    expect(await c.health('tiny_dancer.v1.ControlPlane')).toBe('SERVING');
    expect((await rpcFailure(c.health('no.such.Service'))).status).toBe('NOT_FOUND');

    // A Watch stream sees every transition.
    const Health = (await import('../../../src/control/proto.js')).healthClientConstructor();
    const hc = new Health(server.address, credentials.createInsecure()) as Client & Record<string, (...a: unknown[]) => NodeJS.EventEmitter & { cancel(): void }>;
    const seen: string[] = [];
    const stream = hc.watch!.call(hc, { service: '' });
    stream.on('data', (m: { status: string }) => seen.push(m.status));
    stream.on('error', () => {});
    await until(() => seen.length === 1);

    target.setHealth('NOT_SERVING');
    expect(await c.health()).toBe('NOT_SERVING');
    expect((await c.getStats()).health).toBe('NOT_SERVING');
    target.setHealth('SERVING');
    expect(await c.health()).toBe('SERVING');
    await until(() => seen.length === 3);

    const closing = server.close({ timeoutMs: 300 });
    await until(() => seen.length === 4);
    await closing;
    stream.cancel();
    hc.close();
    expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING', 'NOT_SERVING']);
    expect(target.listenerCount).toBe(0);
  });

  it('starts NOT_SERVING when the target is not ready', async () => {
    const target = new FakeTarget();
    target.setHealth('NOT_SERVING');
    const { client } = await start({ target });
    expect(await client().health()).toBe('NOT_SERVING');
  });
});

describe('reflection', () => {
  it('lists the control plane and health services and describes ControlPlane', async () => {
    const { server } = await start();
    const require = createRequire(import.meta.url);
    const reflectionProto = resolve(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto');
    const def = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [reflectionProto], keepCase: true, longs: Number, defaults: true, oneofs: true });
    const pkg = loadPackageDefinition(def) as unknown as { grpc: { reflection: { v1: { ServerReflection: ServiceClientConstructor } } } };
    const rc = new pkg.grpc.reflection.v1.ServerReflection(server.address, credentials.createInsecure());
    try {
      const ask = (req: Record<string, unknown>) =>
        new Promise<Record<string, any>>((res, rej) => {
          const call = (rc as unknown as Record<string, () => NodeJS.EventEmitter & { write(m: unknown): void; end(): void }>).ServerReflectionInfo!.call(rc);
          call.on('data', (m: Record<string, any>) => res(m));
          call.on('error', rej);
          call.write(req);
          call.end();
        });
      const list = await ask({ list_services: '*' });
      const names = (list.list_services_response.service as Array<{ name: string }>).map((s) => s.name);
      expect(names).toContain('tiny_dancer.v1.ControlPlane');
      expect(names).toContain('grpc.health.v1.Health');
      const file = await ask({ file_containing_symbol: 'tiny_dancer.v1.ControlPlane' });
      const protos = file.file_descriptor_response.file_descriptor_proto as Buffer[];
      expect(protos.length).toBeGreaterThan(0);
      const text = Buffer.concat(protos).toString('latin1');
      for (const m of ['WatchStats', 'ReloadModel', 'SetThresholds', 'RoutingRequest']) expect(text).toContain(m);
    } finally {
      rc.close();
    }
  });
});

describe('binding', () => {
  it('defaults to loopback and refuses a bad address with a clear error', async () => {
    const { server } = await start();
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    await expect(startControlServer({ target: new FakeTarget(), address: 'nonsense' })).rejects.toThrow(/expected host:port/);
    await expect(startControlServer({ target: new FakeTarget(), address: server.address })).rejects.toThrow(/cannot listen on/);
  });
});

describe('GetFleet', () => {
  it('answers the target\'s fleet view, and FAILED_PRECONDITION for a target without one', async () => {
    const { FleetTable } = await import('../../../src/control/fleet-table.js');
    const { client } = await start();
    const err = await rpcFailure(client().getFleet());
    expect(err.message).toMatch(/FAILED_PRECONDITION: .*no fleet view/);

    const table = new FleetTable('me');
    const beat = {
      host: 'h', version: '0.1.0', modelVersion: 'v1', policyRevision: 4, partitions: [0, 2], requestsPerSecond: 1.5, decisionsPerSecond: 6,
      logBacklog: 0, breaker: 'closed' as const, lastApplyError: '', sentAt: 0, startedAt: 0, heartbeatMs: 1000, requests: 9, decisions: 36,
      lightweight: 20, ready: true, controlAddress: 'x:1',
    };
    const now = Date.now();
    table.upsert({ ...beat, instance: 'me' }, now, now);
    table.upsert({ ...beat, instance: 'gone', lastApplyError: 'bad model' }, now - 60_000, now);
    const target = Object.assign(new FakeTarget(), { fleet: (o: { includeStale: boolean }) => table.snapshot(Date.now(), o.includeStale, true) });
    const withFleet = await start({ target });
    const f = await withFleet.client().getFleet();
    expect(f.answered_by).toBe('me');
    expect(f.replicas.map((r) => [r.status!.instance, r.self, r.stale])).toEqual([['me', true, false]]);
    expect(f.replicas[0]!.status).toMatchObject({ policy_revision: 4, partitions: [0, 2], breaker: 'closed', requests: 9 });
    expect(f.totals).toMatchObject({ replicas: 1, stale: 1, partitions: 2, model_versions: { v1: 1 } });
    const all = await withFleet.client().getFleet(true);
    expect(all.replicas.map((r) => [r.status!.instance, r.stale, r.status!.last_apply_error])).toEqual([['me', false, ''], ['gone', true, 'bad model']]);
  });
});
