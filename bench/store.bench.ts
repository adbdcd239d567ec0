// Decision-log throughput and statistics cost on a real Postgres.
//
//   node --import tsx bench/store.bench.ts [--rows 200000] [--stats-rows 2000000] [--url URL]
//
// 1. Batched log: DecisionLog.append() of `--rows` decisions (10 per request, 16 features each),
//    timed until flushed() says all are in Postgres; rows/s.
// 2. Baseline in the same run: one INSERT ... ON CONFLICT DO NOTHING per row through the same pool
//    (what a naive logger does), on a slice of the rows; the ratio is the point.
// 3. Statistics: decisionStats() over a table of `--stats-rows` decisions spread over 7 days,
//    with the default 24 h window and over all time.
// Everything lives in a throw-away schema, dropped at the end.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { DecisionLog, type DecisionRow } from '../src/store/decision-log.js';
import { migrate } from '../src/store/migrations.js';
import { createPool, redactUrl } from '../src/store/pg.js';
import { decisionStats } from '../src/store/stats.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '2' },
    features: { type: 'string', default: '16' },
    'baseline-rows': { type: 'string', default: '5000' },
    'stats-rows': { type: 'string', default: '2000000' },
    url: { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const N = Number(values.rows);
const BATCH = Number(values.batch);
const CONCURRENCY = Number(values.concurrency);
const FEATURES = Number(values.features);
const BASE_N = Number(values['baseline-rows']);
const STATS_N = Number(values['stats-rows']);
const url = values.url!;
const schema = `td_bench_${randomBytes(4).toString('hex')}`;

function rows(n: number, prefix: string): DecisionRow[] {
  const out: DecisionRow[] = new Array(n);
  // As the engine hands them over: a Float32Array per candidate.
  const features = FEATURES > 0 ? Float32Array.from({ length: FEATURES }, () => Math.random()) : null;
  for (let i = 0; i < n; i++) {
    out[i] = {
      request_id: `${prefix}-${Math.floor(i / 10)}`,
      candidate_id: `cand-${i % 10}`,
      rank: i % 10,
      confidence: (i % 100) / 100,
      uncertainty: (i % 17) / 100,
      use_lightweight: i % 3 === 0,
      reason: 'model',
      model_version: 'bench-v1',
      inference_time_us: 5 + (i % 200),
      features,
      source_topic: 'routing.requests',
      source_partition: i % 12,
      source_offset: String(i),
    };
  }
  return out;
}

// Bulk loading the statistics table takes longer than the service's statement timeout.
// Bulk loading the statistics table takes longer than the service's statement timeout.
const pool = createPool({ url, max: 4, statementTimeoutMs: 0, queryTimeoutMs: 0 });

async function batched(): Promise<number> {
  const data = rows(N, 'b');
  const log = new DecisionLog({ pool, schema, batchSize: BATCH, maxBuffered: Math.max(N, 50_000), concurrency: CONCURRENCY });
  const t0 = performance.now();
  let token = 0;
  for (let i = 0; i < N; i += 1_000) token = log.append(data.slice(i, i + 1_000));
  await log.flushed(token);
  const seconds = (performance.now() - t0) / 1000;
  await log.close();
  const rate = N / seconds;
  console.log(`batched (unnest, ${BATCH}/stmt, ${CONCURRENCY} in flight, ${FEATURES} features): ${N} rows in ${seconds.toFixed(2)} s = ${Math.round(rate)} rows/s`);
  return rate;
}

async function rowByRow(): Promise<number> {
  const single = rows(BASE_N, 's');
  const sql = `INSERT INTO "${schema}".routing_decisions (request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version, inference_time_us, decided_at, features, source_topic, source_partition, source_offset)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), $10::real[], $11, $12, $13) ON CONFLICT (request_id, candidate_id) DO NOTHING`;
  const t0 = performance.now();
  for (const r of single) {
    await pool.query(sql, [
      r.request_id, r.candidate_id, r.rank, r.confidence, r.uncertainty, r.use_lightweight, r.reason, r.model_version,
      r.inference_time_us, r.features ? Array.from(r.features) : null, r.source_topic, r.source_partition, r.source_offset,
    ]);
  }
  const seconds = (performance.now() - t0) / 1000;
  const rate = BASE_N / seconds;
  console.log(`baseline (one INSERT per row): ${BASE_N} rows in ${seconds.toFixed(2)} s = ${Math.round(rate)} rows/s`);
  return rate;
}

async function statistics(): Promise<void> {
  let t0 = performance.now();
  await pool.query(`TRUNCATE "${schema}".routing_decisions`);
  await pool.query(
    `INSERT INTO "${schema}".routing_decisions (request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version, inference_time_us, decided_at)
     SELECT 'r' || (g / 10), 'c' || (g % 10), g % 10, random(), random() * 0.2, g % 3 = 0,
            (ARRAY['model','uncertain','below_threshold','breaker_open'])[1 + g % 4],
            'v' || (g % 3), 5 + random() * 200, now() - (g::float8 / $1) * interval '7 days'
     FROM generate_series(0, $1 - 1) g`,
    [STATS_N],
  );
  await pool.query(`ANALYZE "${schema}".routing_decisions`);
  console.log(`stats table: ${STATS_N} rows over 7 days, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  for (const [label, window] of [['default 24 h window', {}], ['all time', { from: null }]] as const) {
    await decisionStats(pool, { schema, ...window }); // warm the cache
    t0 = performance.now();
    const s = await decisionStats(pool, { schema, ...window });
    console.log(`decisionStats ${label}: ${s.decisions} decisions, ${s.byModelVersion.length} versions, ${(performance.now() - t0).toFixed(0)} ms`);
  }
}

try {
  console.log(`Postgres ${redactUrl(url)}, schema ${schema}`);
  await migrate(pool, { schema });
  const batchedRate = N > 0 ? await batched() : 0;
  const singleRate = BASE_N > 0 ? await rowByRow() : 0;
  if (batchedRate > 0 && singleRate > 0) console.log(`ratio batched / row-by-row: ${(batchedRate / singleRate).toFixed(1)}x`);
  if (STATS_N > 0) await statistics();
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
  await pool.end();
}
