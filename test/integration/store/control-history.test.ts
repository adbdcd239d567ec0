// The control history against a real Postgres: rows in topic order, one per offset however many
// replicas mirror the same record, and an entry recorded while Postgres is unreachable is
// written once it answers again.
import { afterEach, describe, expect, it } from 'vitest';
import { ControlHistory, type ControlHistoryEntry } from '../../../src/store/control-history.js';
import { migrate } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { databaseUrl, eventually, testDb, type TestDb } from './helpers.js';
import { proxyToPostgres } from './tcp-proxy.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function migrated(): Promise<TestDb> {
  const db = testDb({ max: 2 });
  cleanups.push(() => db.cleanup());
  await migrate(db.pool, { schema: db.schema });
  return db;
}

const entries: ControlHistoryEntry[] = [
  { offset: 0, key: 'model', kind: 'model', detail: { version: 'v1', sha256: 'a'.repeat(64) }, writtenBy: 'alice', writtenAt: 1_700_000_000_000, outcome: 'applied' },
  { offset: 1, key: 'thresholds', kind: 'thresholds', detail: { confidence: 0.7, max_uncertainty: 0.2 }, writtenBy: 'bob', writtenAt: 1_700_000_001_000, outcome: 'applied' },
  { offset: 2, key: 'model', kind: 'model', detail: {}, outcome: 'refused', error: 'the SHA-256 of the bytes is 00...' },
  { offset: 3, key: 'policy/acme', kind: 'policy-delete', detail: { tenant: 'acme' }, outcome: 'applied' },
];

describe('ControlHistory', () => {
  it('writes every entry once, however many replicas mirror it', async () => {
    const db = await migrated();
    const replicas = [new ControlHistory({ pool: db.pool, schema: db.schema }), new ControlHistory({ pool: db.pool, schema: db.schema })];
    for (const e of entries) for (const h of replicas) h.record(e);
    await Promise.all(replicas.map((h) => h.close()));
    expect(replicas[0]!.written + replicas[1]!.written).toBe(entries.length);
    const { rows } = await db.pool.query(
      `SELECT control_offset::int AS o, record_key, kind, outcome, written_by, extract(epoch FROM written_at)::bigint AS at, detail, error FROM "${db.schema}".control_history ORDER BY control_offset`,
    );
    expect(rows.map((r) => [r.o, r.record_key, r.kind, r.outcome])).toEqual(entries.map((e) => [e.offset, e.key, e.kind, e.outcome]));
    expect(rows[0]).toMatchObject({ written_by: 'alice', at: '1700000000', detail: { version: 'v1' } });
    expect(rows[2]).toMatchObject({ written_by: null, error: 'the SHA-256 of the bytes is 00...' });
  });

  it('an entry recorded while Postgres is unreachable is written once it is back', async () => {
    const db = await migrated();
    const { proxy, url } = await proxyToPostgres(databaseUrl());
    cleanups.push(() => proxy.close());
    const pool = createPool({ url, max: 1, connectionTimeoutMs: 500 });
    cleanups.push(() => pool.end());
    const warnings: string[] = [];
    const history = new ControlHistory({ pool, schema: db.schema, attempts: 20, log: { info: () => {}, warn: (m) => warnings.push(m) } });
    await proxy.refuse();
    history.record(entries[0]!);
    history.record(entries[1]!);
    await new Promise((r) => setTimeout(r, 1_000));
    const count = async () => Number((await db.pool.query(`SELECT count(*) AS n FROM "${db.schema}".control_history`)).rows[0].n);
    expect(await count()).toBe(0);
    await proxy.restore();
    await eventually(async () => (await count()) === 2, 15_000, "both entries written");
    await history.close();
    expect(history.dropped).toBe(0);
    expect(warnings).toEqual([]);
  });

  it('gives up an entry Postgres refuses as bad data, says so, and goes on', async () => {
    const db = await migrated();
    const warnings: string[] = [];
    const history = new ControlHistory({ pool: db.pool, schema: db.schema, log: { info: () => {}, warn: (m) => warnings.push(m) } });
    history.record({ ...entries[0]!, kind: 'nonsense' as ControlHistoryEntry['kind'] });
    history.record(entries[1]!);
    await history.close();
    expect(history.dropped).toBe(1);
    expect(warnings[0]).toMatch(/control history entry at offset 0 not written: .*check constraint/);
    const { rows } = await db.pool.query(`SELECT control_offset::int AS o FROM "${db.schema}".control_history`);
    expect(rows).toEqual([{ o: 1 }]);
  });
});
