// The embedded Postgres of a bare machine: PGlite served over the wire protocol, used through the
// same pg code as a real Postgres — migrations (also concurrent), the unnest insert with its
// conflict handling and bad-row isolation, percentile statistics — and its data persists.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DecisionLog, type RejectedRow } from '../../../src/store/decision-log.js';
import { resolveDatabase, startEmbeddedPostgres } from '../../../src/store/embedded.js';
import { StoreError } from '../../../src/store/errors.js';
import { MIGRATIONS, migrate } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { decisionStats } from '../../../src/store/stats.js';
import { countRows, databaseUrl, decisions } from './helpers.js';

const dir = await mkdtemp(join(tmpdir(), 'td-pglite-'));
const dataDir = join(dir, 'pgdata');

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('embedded Postgres (PGlite + pglite-socket)', () => {
  it('runs migrations, the batched insert and the statistics, and keeps its data across restarts', async () => {
    const pg1 = await startEmbeddedPostgres({ dataDir });
    expect(pg1.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    await expect(startEmbeddedPostgres({ dataDir })).rejects.toThrow(StoreError); // one owner per folder
    const pools = [createPool({ url: pg1.url, max: 2 }), createPool({ url: pg1.url, max: 2 })];
    try {
      const results = await Promise.all(pools.map((p) => migrate(p, { schema: 'td' })));
      expect(results.map((r) => r.applied.length).sort()).toEqual([0, MIGRATIONS.length]);

      const log = new DecisionLog({ pool: pools[0]!, schema: 'td', batchSize: 250 });
      const rejected: RejectedRow[] = [];
      log.on('rejected', (r) => rejected.push(r));
      const rows = decisions(100, 10, 'emb');
      const now = Date.now();
      rows.forEach((r, i) => {
        r.inference_time_us = (i % 100) + 1; // every value 1..100 ten times
        r.decided_at = now - 1_000;
      });
      await log.appendAndTrack(rows);
      await log.appendAndTrack(rows.slice(0, 300)); // replay: no new rows
      await log.appendAndTrack([{ ...rows[0]!, candidate_id: 'bad', confidence: 7 }]);
      expect(rejected.map((r) => r.code)).toEqual(['23514']);
      expect(await countRows(pools[1]!, 'td')).toEqual({ rows: 1_000, distinct: 1_000 });
      expect(log.metrics()).toMatchObject({ inserted: 1_000, duplicates: 300, rejected: 1 });
      await log.close();

      const s = await decisionStats(pools[1]!, { schema: 'td', to: new Date(now + 1_000) });
      expect(s.decisions).toBe(1_000);
      expect(s.requests).toBe(100);
      // 1..100 ten times each: p50 at position 499.5 → 50.5 (both neighbours 50 and 51 sit there).
      expect(s.latencyUs!.p50).toBeCloseTo(50.5, 9);
      expect(s.latencyUs!.max).toBe(100);
      expect(s.byModelVersion.map((v) => v.modelVersion).sort()).toEqual(['v1', 'v2']);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
      await pg1.close();
    }

    await expect(stat(`${dataDir}.lock`)).rejects.toMatchObject({ code: 'ENOENT' });
    const pg2 = await startEmbeddedPostgres({ dataDir });
    const pool = createPool({ url: pg2.url, max: 1 });
    try {
      expect(await countRows(pool, 'td')).toEqual({ rows: 1_000, distinct: 1_000 });
      expect((await migrate(pool, { schema: 'td' })).applied).toEqual([]);
    } finally {
      await pool.end();
      await pg2.close();
    }
  });

  it('resolveDatabase: DATABASE_URL as given; else the default Postgres when it answers; else embedded, said in one line', async () => {
    const lines: string[] = [];
    const log = { info: (msg: string) => lines.push(msg), warn: (msg: string) => lines.push(msg) };

    const given = await resolveDatabase({ databaseUrl: 'postgres://app:pw@db.invalid:5432/x', dataDir, log });
    expect(given).toMatchObject({ url: 'postgres://app:pw@db.invalid:5432/x', embedded: false });

    const real = await resolveDatabase({ dataDir, log, defaultUrl: databaseUrl() });
    expect(real).toMatchObject({ url: databaseUrl(), embedded: false });
    expect(lines).toEqual([]);

    const fallback = await resolveDatabase({ dataDir, log, defaultUrl: 'postgres://postgres:secret@127.0.0.1:1/postgres' });
    try {
      expect(fallback.embedded).toBe(true);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/embedded Postgres \(PGlite\)/);
      expect(lines[0]).toContain(dataDir);
      expect(lines[0]).toContain('127.0.0.1:1');
      expect(lines[0]).not.toContain('secret');
      const pool = createPool({ url: fallback.url, max: 1 });
      try {
        expect(await countRows(pool, 'td')).toEqual({ rows: 1_000, distinct: 1_000 });
      } finally {
        await pool.end();
      }
    } finally {
      await fallback.close();
    }
  });
});
