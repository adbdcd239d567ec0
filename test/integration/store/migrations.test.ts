// Migrations on the real Postgres: idempotent, safe when several instances start together,
// all-or-nothing, and `tiny-dancer migrate` reports what it did.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { run as migrateCommand } from '../../../src/cli/commands/migrate.js';
import { DecisionLog } from '../../../src/store/decision-log.js';
import { MIGRATIONS, migrate, type Migration } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { databaseUrl, decisions, testDb, type TestDb } from './helpers.js';

const dbs: TestDb[] = [];
function fresh(max = 2): TestDb {
  const db = testDb({ max });
  dbs.push(db);
  return db;
}

afterEach(async () => {
  vi.restoreAllMocks();
  for (const db of dbs.splice(0)) await db.cleanup();
});

describe('migrate', () => {
  it('creates the schema and every table, and records each version once', async () => {
    const { pool, schema } = fresh();
    const first = await migrate(pool, { schema });
    expect(first.applied.map((m) => m.version)).toEqual(MIGRATIONS.map((m) => m.version));
    expect(first.version).toBe(MIGRATIONS.at(-1)!.version);

    const tables = await pool.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    );
    expect(tables.rows.map((r) => r.table_name)).toEqual(['control_history', 'model_registry', 'routing_decisions', 'routing_outcomes', 'td_schema_migrations']);

    const cols = await pool.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'routing_decisions'`,
      [schema],
    );
    expect(cols.rows.map((r) => r.column_name)).toEqual(
      expect.arrayContaining([
        'request_id', 'candidate_id', 'confidence', 'uncertainty', 'use_lightweight', 'reason', 'model_version',
        'inference_time_us', 'decided_at', 'rank', 'features', 'source_topic', 'source_partition', 'source_offset',
      ]),
    );

    const again = await migrate(pool, { schema });
    expect(again.applied).toEqual([]);
    expect(again.version).toBe(MIGRATIONS.at(-1)!.version);
    const recorded = await pool.query(`SELECT version FROM "${schema}".td_schema_migrations ORDER BY version`);
    expect(recorded.rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
  });

  it('lets four instances migrate the same fresh schema at once: one applies, the others find it done', async () => {
    const { schema } = fresh();
    const pools = Array.from({ length: 4 }, () => createPool({ url: databaseUrl(), max: 1 }));
    try {
      const results = await Promise.all(pools.map((p) => migrate(p, { schema })));
      const appliedCounts = results.map((r) => r.applied.length).sort();
      expect(appliedCounts).toEqual([0, 0, 0, MIGRATIONS.length]);
      for (const r of results) expect(r.version).toBe(MIGRATIONS.at(-1)!.version);
      const recorded = await pools[0]!.query(`SELECT count(*)::int AS n FROM "${schema}".td_schema_migrations`);
      expect(recorded.rows[0].n).toBe(MIGRATIONS.length);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('is all or nothing: a failing migration leaves no trace of the batch it was in', async () => {
    const { pool, schema } = fresh();
    const broken: Migration[] = [
      { version: 1, name: 'ok', sql: 'CREATE TABLE {{schema}}.first_table (id int)' },
      { version: 2, name: 'broken', sql: 'CREATE TABLE {{schema}}.second_table (id int' },
    ];
    await expect(migrate(pool, { schema, migrations: broken })).rejects.toThrow(/migrating schema .* failed: syntax error/);
    const left = await pool.query(`SELECT to_regclass($1) AS t`, [`"${schema}".first_table`]);
    expect(left.rows[0].t).toBeNull();
  });

  it('applies only what is new, and reports edited or unknown versions', async () => {
    const { pool, schema } = fresh();
    const v1: Migration = { version: 1, name: 'one', sql: 'CREATE TABLE {{schema}}.one (id int)' };
    const v2: Migration = { version: 2, name: 'two', sql: 'CREATE TABLE {{schema}}.two (id int)' };
    expect((await migrate(pool, { schema, migrations: [v1] })).applied).toEqual([{ version: 1, name: 'one' }]);
    const second = await migrate(pool, { schema, migrations: [v1, v2] });
    expect(second.applied).toEqual([{ version: 2, name: 'two' }]);

    const edited = await migrate(pool, { schema, migrations: [{ ...v1, sql: `${v1.sql} -- edited` }, v2] });
    expect(edited.applied).toEqual([]);
    expect(edited.checksumMismatches).toEqual([1]);

    const older = await migrate(pool, { schema, migrations: [v1] });
    expect(older.unknownVersions).toEqual([2]);
    expect(older.version).toBe(2);
  });

  it('refuses a migration list whose versions do not increase (gaps are allowed: reserved numbers land in any order)', async () => {
    const { pool, schema } = fresh();
    await expect(migrate(pool, { schema, migrations: [{ version: 2, name: 'x', sql: 'SELECT 1' }, { version: 2, name: 'y', sql: 'SELECT 1' }] })).rejects.toThrow(/out of order/);
  });

  it('adds a nullable trace_id to a table that has rows: old rows get NULL, new rows keep theirs', async () => {
    const { pool, schema } = fresh();
    await migrate(pool, { schema, migrations: MIGRATIONS.slice(0, 3) });
    const [old] = decisions(1, 1, 'before');
    await pool.query(
      `INSERT INTO "${schema}".routing_decisions (request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version, inference_time_us, decided_at)
       VALUES ($1, $2, 0, 0.5, 0.1, true, 'model', 'v1', 3, now())`,
      [old!.request_id, old!.candidate_id],
    );
    const upgraded = await migrate(pool, { schema });
    expect(upgraded.applied.map((m) => m.version)).toEqual(MIGRATIONS.slice(3).map((m) => m.version));
    expect(upgraded.applied[0]).toEqual({ version: 4, name: 'routing_decisions_trace_id' });

    const log = new DecisionLog({ pool, schema, flushIntervalMs: 5 });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const rows = decisions(2, 1, 'after');
    await log.flushed(log.append([{ ...rows[0]!, trace_id: traceId }, rows[1]!]));
    await log.close();
    const got = await pool.query<{ request_id: string; trace_id: string | null }>(`SELECT request_id, trace_id FROM "${schema}".routing_decisions ORDER BY request_id`);
    expect(got.rows).toEqual([
      { request_id: rows[0]!.request_id, trace_id: traceId },
      { request_id: rows[1]!.request_id, trace_id: null },
      { request_id: old!.request_id, trace_id: null },
    ]);
    // Only a trace id's own form is stored.
    await expect(pool.query(`UPDATE "${schema}".routing_decisions SET trace_id = 'ABC' WHERE trace_id IS NULL`)).rejects.toMatchObject({ code: '23514' });
  });

  it('enforces at most one active model in the registry', async () => {
    const { pool, schema } = fresh();
    await migrate(pool, { schema });
    const sha = 'a'.repeat(64);
    await pool.query(`INSERT INTO "${schema}".model_registry (version, sha256, active) VALUES ('v1', $1, true), ('v2', $1, false)`, [sha]);
    await expect(pool.query(`UPDATE "${schema}".model_registry SET active = true WHERE version = 'v2'`)).rejects.toMatchObject({ code: '23505' });
  });
});

describe('tiny-dancer migrate', () => {
  function capture() {
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (out.push(String(chunk)), true));
    return out;
  }

  it('prints each migration it applies, then says the schema is up to date', async () => {
    const { schema } = fresh();
    const out = capture();
    expect(await migrateCommand(['--database-url', databaseUrl(), '--schema', schema])).toBe(0);
    const text = out.join('');
    for (const m of MIGRATIONS) expect(text).toContain(`applied ${m.version} ${m.name}`);
    expect(text).toContain(`${MIGRATIONS.length} migration(s) applied, now at version ${MIGRATIONS.at(-1)!.version}`);
    out.length = 0;
    expect(await migrateCommand(['--database-url', databaseUrl(), '--schema', schema])).toBe(0);
    expect(out.join('')).toMatch(new RegExp(`schema ${schema}: up to date at version ${MIGRATIONS.at(-1)!.version}`));
  });

  it('fails with the address but never the password when Postgres is unreachable', async () => {
    capture();
    const err = await migrateCommand(['--database-url', 'postgres://app:hunter2@127.0.0.1:1/db']).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('postgres://app:***@127.0.0.1:1/db');
    expect((err as Error).message).not.toContain('hunter2');
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
  });

  it('rejects a bad schema name as a usage error before connecting', async () => {
    await expect(migrateCommand(['--schema', 'Robert"); DROP TABLE x;--'])).rejects.toMatchObject({ name: 'ConfigError' });
  });
});
