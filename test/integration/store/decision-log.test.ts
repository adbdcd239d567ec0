// The decision log on the real Postgres: every row written with its values, replays add nothing,
// flushed() means "in Postgres", bad rows are set aside without losing their neighbours, a broken
// deployment keeps the rows, and close() is bounded.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { DecisionLog, type DecisionRow, type RejectedRow, type RetryInfo } from '../../../src/store/decision-log.js';
import { DecisionLogClosedError, DecisionLogFullError } from '../../../src/store/errors.js';
import { migrate } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { countRows, decisions, eventually, testDb, type TestDb } from './helpers.js';

const dbs: TestDb[] = [];
const logs: DecisionLog[] = [];

async function migrated(): Promise<TestDb> {
  const db = testDb({ max: 4 });
  dbs.push(db);
  await migrate(db.pool, { schema: db.schema });
  return db;
}

function open(db: TestDb, options: Partial<ConstructorParameters<typeof DecisionLog>[0]> = {}): DecisionLog {
  const log = new DecisionLog({ pool: db.pool, schema: db.schema, ...options });
  logs.push(log);
  return log;
}

afterEach(async () => {
  for (const log of logs.splice(0)) await log.close({ timeout: 1_000 });
  for (const db of dbs.splice(0)) await db.cleanup();
});

describe('DecisionLog', () => {
  it('writes every row with its values, in batches, and flushed() resolves only once they are in Postgres', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 100, flushIntervalMs: 20 });
    const batches: number[] = [];
    log.on('flushed', (f) => batches.push(f.rows));
    const rows = decisions(120, 10); // 1 200 rows
    const decidedAt = new Date('2026-03-01T12:00:00.123Z');
    rows[0] = { ...rows[0]!, decided_at: decidedAt, metadata: { tier: 'gold', 'x-y': 'z' }, features: new Float32Array([0.5, -2, 1e-3]) };
    rows[1] = { ...rows[1]!, source_offset: '9007199254740993' }; // beyond 2^53: kept exactly

    const token = log.append(rows);
    expect(token).toBe(1_200);
    expect(log.backlog()).toBe(1_200);
    await log.flushed(token);
    // Resolved means visible to a different connection right now.
    expect(await countRows(db.pool, db.schema)).toEqual({ rows: 1_200, distinct: 1_200 });
    expect(log.backlog()).toBe(0);
    expect(Math.max(...batches)).toBeLessThanOrEqual(100);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(1_200);

    const { rows: back } = await db.pool.query(
      `SELECT *, source_offset::text AS offset_text FROM "${db.schema}".routing_decisions WHERE request_id = $1 ORDER BY rank`,
      [rows[0]!.request_id],
    );
    expect(back).toHaveLength(10);
    const first = back[0];
    expect(first).toMatchObject({
      request_id: rows[0]!.request_id,
      candidate_id: 'cand-0',
      rank: 0,
      use_lightweight: rows[0]!.use_lightweight,
      reason: 'model',
      model_version: 'v1',
      metadata: { tier: 'gold', 'x-y': 'z' },
      source_topic: 'routing.requests',
    });
    expect(first.confidence).toBeCloseTo(rows[0]!.confidence, 6);
    expect(first.inference_time_us).toBe(rows[0]!.inference_time_us);
    expect(first.decided_at.toISOString()).toBe(decidedAt.toISOString());
    expect(first.features).toEqual([0.5, -2, 0.001]);
    expect(back[1].offset_text).toBe('9007199254740993');
    // decided_at defaults to the time of append.
    expect(Math.abs(back[2].decided_at.getTime() - Date.now())).toBeLessThan(60_000);

    const m = log.metrics();
    expect(m).toMatchObject({ appended: 1_200, inserted: 1_200, duplicates: 0, rejected: 0, backlog: 0, durable: 1_200 });
  });

  it('is idempotent: the same rows appended again (and twice within one batch) add no row', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 500 });
    const rows = decisions(30, 10);
    await log.appendAndTrack(rows);
    await log.appendAndTrack(rows); // a replay after a crash
    await log.appendAndTrack([...rows.slice(0, 50), ...rows.slice(0, 50)]); // duplicates inside one statement
    expect(await countRows(db.pool, db.schema)).toEqual({ rows: 300, distinct: 300 });
    expect(log.metrics()).toMatchObject({ appended: 700, inserted: 300, duplicates: 400 });
  });

  it('stores any string exactly: quotes, backslashes, braces, commas, "NULL", empty, unicode', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 100, flushIntervalMs: 10 });
    const hostile = ['a"b', 'back\\slash', '{brace}', 'comma,sep', 'NULL', '', ' lead and trail ', 'tab\tnew\nline', 'ünïcødé 🚀', '\\"', '"\\'];
    const rows: DecisionRow[] = hostile.map((h, i) => ({
      request_id: `req ${h}`,
      candidate_id: h,
      rank: i,
      confidence: 0.5,
      uncertainty: 0.25,
      use_lightweight: i % 2 === 0,
      reason: 'model',
      model_version: `v"${h}`,
      inference_time_us: 1,
      metadata: { [h || 'k']: h },
      source_topic: `t${h}`,
      source_partition: i,
      source_offset: String(i),
    }));
    await log.appendAndTrack(rows);
    const { rows: back } = await db.pool.query(`SELECT request_id, candidate_id, model_version, metadata, source_topic FROM "${db.schema}".routing_decisions ORDER BY rank`);
    expect(back).toEqual(rows.map((r) => ({ request_id: r.request_id, candidate_id: r.candidate_id, model_version: r.model_version, metadata: r.metadata, source_topic: r.source_topic })));
  });

  it('flushes a partial batch once its oldest row is flushIntervalMs old', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 10_000, flushIntervalMs: 40 });
    const t0 = performance.now();
    await log.appendAndTrack(decisions(1, 3));
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(35);
    expect(waited).toBeLessThan(5_000);
    expect((await countRows(db.pool, db.schema)).rows).toBe(3);
  });

  it('resolves flushed() tokens in order, each once its own rows (and all before) are written', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 50, flushIntervalMs: 10, concurrency: 3 });
    const tokens: number[] = [];
    for (let i = 0; i < 20; i++) tokens.push(log.append(decisions(3, 10, `t${i}`)));
    const settled: number[] = [];
    await Promise.all(
      tokens.map((t) =>
        log.flushed(t).then(async () => {
          settled.push(t);
          // Everything up to t is there when t resolves.
          expect((await countRows(db.pool, db.schema)).rows).toBeGreaterThanOrEqual(t);
        }),
      ),
    );
    expect(settled).toEqual(tokens);
    await expect(log.flushed(10_000)).rejects.toThrow(RangeError);
  });

  it('sets bad rows aside and writes every healthy row beside them', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 500 });
    const rejected: RejectedRow[] = [];
    log.on('rejected', (r) => rejected.push(r));
    const rows = decisions(100, 10); // 1 000 healthy rows
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const bad: DecisionRow[] = [
      { ...rows[0]!, request_id: 'nul\u0000byte', candidate_id: 'bad-1' }, // 22021: text cannot hold NUL
      { ...rows[0]!, candidate_id: 'bad-2', confidence: Number.NaN }, // 23514: check
      { ...rows[0]!, candidate_id: 'bad-3', reason: 'coin_flip' }, // 23514: check
      { ...rows[0]!, candidate_id: 'bad-4', rank: 1.5 }, // 22P02: not an integer
      { ...rows[0]!, candidate_id: 'bad-5', metadata: circular as Record<string, string> }, // cannot encode
      { ...rows[0]!, candidate_id: 'bad-6', model_version: undefined as unknown as string }, // 23502: not null
      // 54000: too long for a btree entry (random, so compression cannot shrink it).
      { ...rows[0]!, candidate_id: `bad-7-${randomBytes(6_000).toString('base64')}` },
    ];
    const mixed = [...rows];
    bad.forEach((b, i) => mixed.splice(97 + i * 173, 0, b)); // spread over both batches
    await log.appendAndTrack(mixed);

    expect(await countRows(db.pool, db.schema)).toEqual({ rows: 1_000, distinct: 1_000 });
    expect(rejected.map((r) => r.row.candidate_id.slice(0, 5)).sort()).toEqual(['bad-1', 'bad-2', 'bad-3', 'bad-4', 'bad-5', 'bad-6', 'bad-7']);
    const codes = Object.fromEntries(rejected.map((r) => [r.row.candidate_id.slice(0, 5), r.code]));
    expect(codes).toMatchObject({ 'bad-2': '23514', 'bad-3': '23514', 'bad-4': '22P02', 'bad-5': 'ROW_ENCODING', 'bad-6': '23502', 'bad-7': '54000' });
    expect(codes['bad-1']).toMatch(/^22/);
    expect(log.metrics()).toMatchObject({ inserted: 1_000, rejected: 7, backlog: 0 });
  });

  it('keeps the rows when the failure is not theirs (table missing) and writes them once it is fixed', async () => {
    const db = testDb();
    dbs.push(db);
    await db.pool.query(`CREATE SCHEMA "${db.schema}"`); // not migrated: routing_decisions is missing
    const log = open(db, { backoff: { initialMs: 20, maxMs: 100 }, breaker: { resetTimeoutMs: 100 } });
    const retries: RetryInfo[] = [];
    const rejected: RejectedRow[] = [];
    log.on('retry', (r) => retries.push(r));
    log.on('rejected', (r) => rejected.push(r));
    const done = log.appendAndTrack(decisions(5, 10));
    let resolved = false;
    void done.then(() => (resolved = true));
    await eventually(() => retries.length >= 3, 10_000, 'retries');
    expect(retries[0]).toMatchObject({ kind: 'fatal', code: '42P01' });
    expect(resolved).toBe(false);
    expect(log.backlog()).toBe(50);

    await migrate(db.pool, { schema: db.schema });
    await done;
    expect(rejected).toEqual([]);
    expect((await countRows(db.pool, db.schema)).rows).toBe(50);
  });

  it('refuses appends past maxBuffered (nothing appended), signals pressure, and close() is bounded', async () => {
    // Nothing listens on port 1: every write fails to connect.
    const pool = createPool({ url: 'postgres://postgres@127.0.0.1:1/none', max: 2, connectionTimeoutMs: 500 });
    const log = new DecisionLog({
      pool,
      batchSize: 100,
      maxBuffered: 1_000,
      highWaterMark: 600,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    const events: string[] = [];
    log.on('pressure', () => events.push('pressure'));
    log.on('breaker', (s) => events.push(`breaker:${s}`));
    try {
      const t1 = log.append(decisions(50, 10)); // 500
      expect(log.hasCapacity()).toBe(true);
      const t2 = log.append(decisions(20, 10)); // 700 ≥ 600: pressure
      expect(events).toContain('pressure');
      expect(log.hasCapacity()).toBe(false);
      let capacity = false;
      void log.waitForCapacity().then(
        () => (capacity = true),
        () => {},
      );
      expect(() => log.append(decisions(40, 10))).toThrow(DecisionLogFullError); // 700 + 400 > 1 000
      expect(() => log.append(decisions(101, 10))).toThrow(/at most 1000/); // can never fit
      expect(log.backlog()).toBe(700);
      const t3 = log.append(decisions(30, 10)); // exactly 1 000 fits
      expect(log.backlog()).toBe(1_000);
      await eventually(() => events.includes('breaker:open'), 15_000, 'the breaker to open');

      const pending = [log.flushed(t1), log.flushed(t2), log.flushed(t3)].map((p) => p.then(() => 'ok', (e: Error) => e));
      const t0 = performance.now();
      const result = await log.close({ timeout: 300 });
      const took = performance.now() - t0;
      expect(took).toBeLessThan(1_500);
      expect(result.unwritten).toBe(1_000);
      for (const outcome of await Promise.all(pending)) expect(outcome).toBeInstanceOf(DecisionLogClosedError);
      expect(capacity).toBe(false);
      expect(() => log.append(decisions(1, 1))).toThrow(DecisionLogClosedError);
      await expect(log.waitForCapacity()).rejects.toThrow(DecisionLogClosedError);
    } finally {
      await log.close();
      await pool.end();
    }
  });

  it('close() drains what is buffered when Postgres is healthy', async () => {
    const db = await migrated();
    const log = open(db, { batchSize: 10_000, flushIntervalMs: 60_000 }); // never flushes by itself
    const token = log.append(decisions(40, 10));
    const tracked = log.flushed(token);
    const result = await log.close({ timeout: 10_000 });
    expect(result).toEqual({ settled: 400, unwritten: 0 });
    await tracked;
    expect((await countRows(db.pool, db.schema)).rows).toBe(400);
  });
});
