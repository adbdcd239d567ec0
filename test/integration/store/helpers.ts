// Shared set-up for the store's integration tests: a pool on the test Postgres and a fresh schema
// per test, dropped afterwards.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { createPool } from '../../../src/store/pg.js';
import type { DecisionRow } from '../../../src/store/decision-log.js';
import { databaseUrl, uniqueSchema } from '../../support/infra.js';

export { databaseUrl, uniqueSchema };

export interface TestDb {
  pool: pg.Pool;
  schema: string;
  /** Drops the schema and ends the pool. */
  cleanup(): Promise<void>;
}

/** A pool and a schema name of its own (the schema is created by migrate(), or by the test). */
export function testDb(options: { url?: string; max?: number } = {}): TestDb {
  const schema = uniqueSchema('td_store');
  const pool = createPool({ url: options.url ?? databaseUrl(), max: options.max ?? 4, applicationName: 'td-store-test' });
  return {
    pool,
    schema,
    cleanup: async () => {
      const admin = createPool({ url: databaseUrl(), max: 1 });
      try {
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await admin.end();
        await pool.end().catch(() => {});
      }
    },
  };
}

/** `n` decisions of `requests` requests (n / requests candidates each), deterministic content. */
export function decisions(requests: number, perRequest: number, prefix = randomBytes(3).toString('hex')): DecisionRow[] {
  const rows: DecisionRow[] = [];
  for (let r = 0; r < requests; r++) {
    for (let c = 0; c < perRequest; c++) {
      rows.push({
        request_id: `${prefix}-req-${r}`,
        candidate_id: `cand-${c}`,
        rank: c,
        confidence: ((r * 7 + c * 3) % 100) / 100,
        uncertainty: ((r + c) % 20) / 100,
        use_lightweight: (r + c) % 3 === 0,
        reason: c % 4 === 0 ? 'model' : c % 4 === 1 ? 'uncertain' : c % 4 === 2 ? 'below_threshold' : 'breaker_open',
        model_version: r % 2 === 0 ? 'v1' : 'v2',
        inference_time_us: 10 + ((r * perRequest + c) % 50),
        features: [r, c, 0.25],
        source_topic: 'routing.requests',
        source_partition: r % 3,
        source_offset: String(r),
      });
    }
  }
  return rows;
}

export async function countRows(pool: pg.Pool, schema: string): Promise<{ rows: number; distinct: number }> {
  const { rows } = await pool.query<{ rows: number; distinct: number }>(
    `SELECT count(*)::int AS rows, count(DISTINCT (request_id, candidate_id))::int AS distinct FROM "${schema}".routing_decisions`,
  );
  return rows[0]!;
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
