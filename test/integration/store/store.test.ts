// openStore(): what `serve` calls at start — migrations applied, decision log open, statistics
// readable, a Postgres that is still starting waited for (boundedly), and a clean close.
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../../../src/store/store.js';
import { countRows, databaseUrl, decisions, testDb, type TestDb } from './helpers.js';
import { TcpProxy } from './tcp-proxy.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function fresh(): TestDb {
  const db = testDb({ max: 1 });
  cleanups.push(() => db.cleanup());
  return db;
}

describe('openStore', () => {
  it('migrates, logs decisions, answers statistics and closes', async () => {
    const db = fresh();
    const store = await openStore({ databaseUrl: databaseUrl(), dataDir: '/nonexistent', schema: db.schema });
    cleanups.push(() => store.close());
    expect(store.embedded).toBe(false);
    expect(store.migrations.applied.length).toBeGreaterThan(0);
    const rows = decisions(20, 5);
    await store.decisionLog.appendAndTrack(rows);
    const s = await store.stats();
    expect(s.decisions).toBe(100);
    expect(s.requests).toBe(20);
    expect(await store.close()).toEqual({ settled: 100, unwritten: 0 });
    expect(await countRows(db.pool, db.schema)).toEqual({ rows: 100, distinct: 100 });
  });

  it('waits for a Postgres that comes up a little late', async () => {
    const db = fresh();
    const target = new URL(databaseUrl());
    const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
    await proxy.start();
    await proxy.refuse(); // the port is known, nothing listens yet
    cleanups.push(() => proxy.close());
    const viaProxy = new URL(databaseUrl());
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const warnings: string[] = [];
    setTimeout(() => void proxy.restore(), 1_200);
    const t0 = performance.now();
    const store = await openStore({
      databaseUrl: viaProxy.toString(),
      dataDir: '/nonexistent',
      schema: db.schema,
      log: { info: () => {}, warn: (m) => warnings.push(m) },
    });
    cleanups.push(() => store.close());
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1_000);
    expect(warnings).toEqual(['Postgres not reachable yet; retrying the migrations']);
    expect(store.migrations.applied.length).toBeGreaterThan(0);
  });

  it('gives up at once on an error waiting cannot fix, and after startTimeoutMs on one it could', async () => {
    const missingDb = new URL(databaseUrl());
    missingDb.pathname = '/td_no_such_database';
    missingDb.password = 'hunter2';
    const t0 = performance.now();
    const err = (await openStore({ databaseUrl: missingDb.toString(), dataDir: '/nonexistent', startTimeoutMs: 20_000 }).catch((e: Error) => e)) as Error & { retriable: boolean };
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(err.message).toMatch(/td_no_such_database/);
    expect(err.message).not.toContain('hunter2');
    expect(err.retriable).toBe(false);

    const t1 = performance.now();
    const down = (await openStore({ databaseUrl: 'postgres://postgres@127.0.0.1:1/x', dataDir: '/nonexistent', startTimeoutMs: 1_000 }).catch((e: Error) => e)) as Error & { retriable: boolean };
    expect(performance.now() - t1).toBeLessThan(5_000);
    expect(down.message).toMatch(/ECONNREFUSED/);
    expect(down.retriable).toBe(true);
  });
});
