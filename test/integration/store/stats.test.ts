// Statistics against values computed by hand from the rows the test inserts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionLog, type DecisionRow } from '../../../src/store/decision-log.js';
import { migrate } from '../../../src/store/migrations.js';
import { decisionStats } from '../../../src/store/stats.js';
import { testDb, type TestDb } from './helpers.js';

const REASONS = ['model', 'model', 'model', 'model', 'model', 'model', 'uncertain', 'uncertain', 'below_threshold', 'breaker_open'];

/**
 * In the window (decided an hour ago):
 *   v1 — 100 decisions (10 requests × 10 candidates), inference_time_us = 1..100,
 *        lightweight when the time is a multiple of 4 (25 of them), reasons by rank:
 *        0-5 model (60), 6-7 uncertain (20), 8 below_threshold (10), 9 breaker_open (10);
 *   v2 — 4 decisions of one request, times 10, 20, 30, 40, all lightweight, reason model.
 * Outside the default 24 h window (two days ago): 5 decisions of v1 with time 1 000 000.
 */
function rows(now: number): DecisionRow[] {
  const out: DecisionRow[] = [];
  const hourAgo = now - 3_600_000;
  for (let i = 1; i <= 100; i++) {
    const rank = (i - 1) % 10;
    out.push({
      request_id: `v1-req-${Math.floor((i - 1) / 10)}`,
      candidate_id: `c${rank}`,
      rank,
      confidence: 0.5,
      uncertainty: 0.1,
      use_lightweight: i % 4 === 0,
      reason: REASONS[rank]!,
      model_version: 'v1',
      inference_time_us: i,
      decided_at: hourAgo,
    });
  }
  [10, 20, 30, 40].forEach((t, rank) =>
    out.push({
      request_id: 'v2-req',
      candidate_id: `c${rank}`,
      rank,
      confidence: 0.9,
      uncertainty: 0.01,
      use_lightweight: true,
      reason: 'model',
      model_version: 'v2',
      inference_time_us: t,
      decided_at: hourAgo,
    }),
  );
  for (let k = 0; k < 5; k++) {
    out.push({
      request_id: 'old-req',
      candidate_id: `c${k}`,
      rank: k,
      confidence: 0.2,
      uncertainty: 0.3,
      use_lightweight: false,
      reason: 'model',
      model_version: 'v1',
      inference_time_us: 1_000_000,
      decided_at: now - 48 * 3_600_000,
    });
  }
  return out;
}

let db: TestDb;
const now = Date.now();

beforeAll(async () => {
  db = testDb();
  await migrate(db.pool, { schema: db.schema });
  const log = new DecisionLog({ pool: db.pool, schema: db.schema });
  await log.appendAndTrack(rows(now));
  await log.close();
});

afterAll(async () => {
  await db?.cleanup();
});

describe('decisionStats', () => {
  it('totals, lightweight share, reasons and latency percentiles over the default 24 h window', async () => {
    const s = await decisionStats(db.pool, { schema: db.schema, to: new Date(now + 1_000) });
    expect(s.window.to.getTime() - s.window.from!.getTime()).toBe(24 * 3_600_000);
    expect(s.decisions).toBe(104);
    expect(s.requests).toBe(11);
    expect(s.lightweight).toBe(29);
    expect(s.heavyweight).toBe(75);
    expect(s.lightweightShare).toBeCloseTo(29 / 104, 12);
    expect(s.byReason).toEqual({ model: 64, uncertain: 20, below_threshold: 10, breaker_open: 10 });
    // 104 sorted times: 1..100 plus a second 10, 20, 30 and 40. percentile_cont at p interpolates at
    // position p·(n−1) = p·103: p50 → 51.5 → between 48 and 49; p95 → 97.85 → between 94 and 95;
    // p99 → 101.97 → between 98 and 99.
    expect(s.latencyUs!.p50).toBeCloseTo(48.5, 9);
    expect(s.latencyUs!.p95).toBeCloseTo(94.85, 9);
    expect(s.latencyUs!.p99).toBeCloseTo(98.97, 9);
    expect(s.latencyUs!.mean).toBeCloseTo(5_150 / 104, 9);
    expect(s.latencyUs!.max).toBe(100);
    // 100 decisions at 0.5 / 0.1 and 4 at 0.9 / 0.01 (stored as real: 6 digits).
    expect(s.meanConfidence).toBeCloseTo((100 * 0.5 + 4 * 0.9) / 104, 6);
    expect(s.meanUncertainty).toBeCloseTo((100 * 0.1 + 4 * 0.01) / 104, 6);
    expect(s.firstDecidedAt!.getTime()).toBe(now - 3_600_000);
  });

  it('per model version, most decisions first', async () => {
    const s = await decisionStats(db.pool, { schema: db.schema, to: new Date(now + 1_000) });
    expect(s.byModelVersion.map((v) => v.modelVersion)).toEqual(['v1', 'v2']);
    const [v1, v2] = s.byModelVersion;
    expect(v1).toMatchObject({ decisions: 100, requests: 10, lightweight: 25, byReason: { model: 60, uncertain: 20, below_threshold: 10, breaker_open: 10 } });
    expect(v1!.lightweightShare).toBeCloseTo(0.25, 12);
    // 1..100: positions 49.5, 94.05, 98.01.
    expect(v1!.latencyUs!.p50).toBeCloseTo(50.5, 9);
    expect(v1!.latencyUs!.p95).toBeCloseTo(95.05, 9);
    expect(v1!.latencyUs!.p99).toBeCloseTo(99.01, 9);
    expect(v2).toMatchObject({ decisions: 4, requests: 1, lightweight: 4, lightweightShare: 1 });
    expect(v2!.meanConfidence).toBeCloseTo(0.9, 6);
    expect(v1!.meanUncertainty).toBeCloseTo(0.1, 6);
    // 10, 20, 30, 40: positions 1.5, 2.85, 2.97.
    expect(v2!.latencyUs!.p50).toBeCloseTo(25, 9);
    expect(v2!.latencyUs!.p95).toBeCloseTo(38.5, 9);
    expect(v2!.latencyUs!.p99).toBeCloseTo(39.7, 9);
  });

  it('all time when from is null; one model version when asked', async () => {
    const all = await decisionStats(db.pool, { schema: db.schema, from: null, to: new Date(now + 1_000) });
    expect(all.decisions).toBe(109);
    expect(all.latencyUs!.max).toBe(1_000_000);
    expect(all.byModelVersion.find((v) => v.modelVersion === 'v1')!.decisions).toBe(105);

    const v2 = await decisionStats(db.pool, { schema: db.schema, to: new Date(now + 1_000), modelVersion: 'v2' });
    expect(v2.decisions).toBe(4);
    expect(v2.byModelVersion.map((v) => v.modelVersion)).toEqual(['v2']);
  });

  it('an empty window gives zeros and no latency', async () => {
    const s = await decisionStats(db.pool, { schema: db.schema, from: new Date(now - 60_000), to: new Date(now) });
    expect(s).toMatchObject({ decisions: 0, requests: 0, lightweight: 0, lightweightShare: 0, latencyUs: null, meanConfidence: 0, meanUncertainty: 0, byModelVersion: [] });
    expect(s.byReason).toEqual({ model: 0, uncertain: 0, below_threshold: 0, breaker_open: 0 });
  });

  it('reads the window through the decided_at index', async () => {
    await db.pool.query(`ANALYZE "${db.schema}".routing_decisions`);
    const client = await db.pool.connect();
    try {
      // With 109 rows a sequential scan is cheaper; forbid it to prove an index serves the window.
      await client.query('SET enable_seqscan = off');
      const plan = await client.query(
        `EXPLAIN SELECT count(*) FROM "${db.schema}".routing_decisions WHERE decided_at >= $1 AND decided_at < $2`,
        [new Date(now - 86_400_000), new Date(now)],
      );
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/routing_decisions_decided_at_idx|routing_decisions_model_version_idx/);
    } finally {
      await client.query('RESET enable_seqscan');
      client.release();
    }
  });
});
