// The feedback loop end to end, on the real broker and Postgres, through `serve`'s App and its
// gRPC control plane (issue 8, "Done when"):
//
//   drift injected   a traffic mix whose ground truth changed is routed by M0 (trained on the
//                    old mix); the pipelines report outcomes on the outcomes topic
//   detected         M0's rolling conformal coverage falls below 1 − α − ε: the drift gauge is
//                    1, the drift counter counts, one warning is logged
//   retrained        `tiny-dancer retrain --promote` trains M1 on the logged decisions (their
//                    feature vectors) and outcomes, and the gate passes it
//   promoted         the control plane serves M1 (metrics: td_model_info), the registry has it
//                    active with who promoted it
//   coverage back    on fresh drifted traffic, M1's rolling coverage is within 1 point of 1 − α
//                    (metrics and GetStats), with no drift
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { App } from '../../../src/app.js';
import { main } from '../../../src/cli/index.js';
import { Secret } from '../../../src/config.js';
import { ControlClient } from '../../../src/control/client.js';
import { startControlServer, type ControlServer } from '../../../src/control/server.js';
import { encodeOutcome } from '../../../src/feedback/codec.js';
import { ModelRegistry } from '../../../src/feedback/registry.js';
import { feedbackSettingsFromEnv } from '../../../src/feedback/service.js';
import { createPool } from '../../../src/store/pg.js';
import type pg from 'pg';
import { CONTENT_TYPES, encodeRequest } from '../../../src/wire/index.js';
import type { SyntheticRequest } from '../../../src/train/synthetic.js';
import {
  bufferLogger, deleteTopics, dropSchema, names, produce, startApp, testConfig, waitFor, type Names,
} from '../stream/helpers.js';
import { metricValue } from './helpers.js';
import { driftTruth, labelOf, outcomeFor, traffic, trainOn } from './traffic.js';

const TOKEN = 'feedback-loop-token-0123';
const ALPHA = 0.1;
let n: Names;
let dir: string;
let app: App;
let control: ControlServer;
let client: ControlClient;
let pool: pg.Pool;
let logLines: string[];
let m0: string;
const savedEnv = { ...process.env };

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

async function metrics(): Promise<string> {
  const res = await fetch(`${app.httpUrl}/metrics`);
  return res.text();
}

async function count(sql: string): Promise<number> {
  return Number((await pool.query<{ n: string }>(sql)).rows[0]!.n);
}

/** Routes `requests` through serve, then reports the outcome of every decision; returns how many. */
async function routeAndReport(requests: SyntheticRequest[]): Promise<number> {
  const before = await count(`SELECT count(*) AS n FROM "${n.schema}".routing_decisions`);
  const candidates = requests.reduce((s, r) => s + r.candidates.length, 0);
  await produce(
    n.requests,
    requests.map((r, i) => {
      const encoding = i % 2 === 0 ? 'protobuf' : 'json';
      return { key: r.request_id, value: encodeRequest(r, encoding), headers: { 'content-type': CONTENT_TYPES[encoding] } };
    }),
  );
  await waitFor(
    async () => (await count(`SELECT count(*) AS n FROM "${n.schema}".routing_decisions`)) === before + candidates,
    120_000,
    `${candidates} decisions in Postgres`,
  );
  // The pipelines' reports: the label is drawn from the DRIFTED truth of the very features the
  // engine used (kept in the decision log), so the outcome is what the new world says.
  const ids = requests.map((r) => r.request_id);
  const { rows } = await pool.query<{ request_id: string; candidate_id: string; use_lightweight: boolean; features: number[] }>(
    `SELECT request_id, candidate_id, use_lightweight, features FROM "${n.schema}".routing_decisions WHERE request_id = ANY($1::text[])`,
    [ids],
  );
  expect(rows.every((r) => Array.isArray(r.features) && r.features.length === 5)).toBe(true);
  const outcomes = rows.map((r) => {
    const o = outcomeFor(r.request_id, r.candidate_id, r.use_lightweight, labelOf(r.request_id, r.candidate_id, driftTruth(r.features)));
    return { key: r.request_id, value: encodeOutcome(o, 'json'), headers: { 'content-type': 'application/json' } };
  });
  const stored = await count(`SELECT count(*) AS n FROM "${n.schema}".routing_outcomes`);
  await produce(n.outcomes, outcomes);
  await waitFor(
    async () => (await count(`SELECT count(*) AS n FROM "${n.schema}".routing_outcomes`)) === stored + outcomes.length,
    120_000,
    `${outcomes.length} outcomes stored`,
  );
  return outcomes.length;
}

beforeAll(async () => {
  n = names('fbloop');
  dir = await mkdtemp(join(tmpdir(), 'td-loop-'));
  const now = Math.floor(Date.now() / 1000);
  const base = trainOn(traffic(31, 600, now, 'base'), 'base');
  m0 = base.model.version;
  const m0Path = join(dir, 'm0.safetensors');
  await writeFile(m0Path, base.bytes);
  const log = bufferLogger();
  logLines = log.lines;
  const config = testConfig(n, { modelPath: m0Path, adminToken: new Secret(TOKEN) }, { TD_WORKERS: '1' });
  app = await startApp(config, {
    logger: log.logger,
    // Big enough to hold every outcome of a phase: coverage is measured over all of them.
    feedback: feedbackSettingsFromEnv({ TD_FEEDBACK_WINDOW: '50000', TD_DRIFT_MIN_SAMPLES: '500', TD_DRIFT_EPSILON: '0.05' }),
  });
  control = await startControlServer({ target: app.control, address: '127.0.0.1:0', adminToken: TOKEN });
  client = new ControlClient({ address: control.address });
  pool = createPool({ url: process.env.DATABASE_URL!, max: 2 });
  process.env.TD_ADMIN_TOKEN = TOKEN;
}, 180_000);

afterAll(async () => {
  process.env = savedEnv;
  client?.close();
  await control?.close();
  await app?.stop({ timeoutMs: 5000 });
  await pool?.end();
  await dropSchema(n.schema);
  await deleteTopics(n);
  await rm(dir, { recursive: true, force: true });
});

describe('the feedback loop', () => {
  it('drift injected → detected → retrained → promoted → coverage back within 1 point of 1 − α', async () => {
    // ---- drift injected: M0 routes the drifted mix, outcomes come back
    const reportedA = await routeAndReport(traffic(32, 2500, Math.floor(Date.now() / 1000), 'a'));
    expect(reportedA).toBeGreaterThan(20_000);

    // ---- detected
    await waitFor(async () => metricValue(await metrics(), 'td_calibration_drift', { version: m0 }) === 1, 30_000, 'the drift gauge of M0');
    let text = await metrics();
    expect(metricValue(text, 'td_calibration_drift_events_total', { version: m0 })).toBe(1);
    const coverage0 = metricValue(text, 'td_conformal_coverage', { version: m0 })!;
    expect(coverage0).toBeLessThan(1 - ALPHA - 0.05);
    expect(metricValue(text, 'td_feedback_window_samples', { version: m0 })).toBe(reportedA);
    expect(metricValue(text, 'td_model_info', { version: m0 })).toBe(1);
    const driftLogs = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.msg).startsWith('calibration drift:'));
    expect(driftLogs).toHaveLength(1);
    expect(driftLogs[0]).toMatchObject({ level: 'warn', version: m0 });
    const stats0 = (await client.getStats()) as unknown as { feedback?: { versions: { version: string; drifting: boolean; coverage: number }[] } };
    expect(stats0.feedback?.versions.find((v) => v.version === m0)).toMatchObject({ drifting: true, coverage: expect.closeTo(coverage0, 6) });

    // ---- retrained and promoted
    const r = await cli([
      // A large calibration part keeps q̂'s own sampling error (sd ≈ 0.003 here) well inside the 1-point budget.
      'retrain', '--window', '1h', '--min-count', '5000', '--holdout', '0.2', '--cal-fraction', '0.4', '--promote', '--addr', control.address,
      '--database-url', process.env.DATABASE_URL!, '--schema', n.schema, '--candidates-dir', dir, '--promoted-by', 'e2e', '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { candidate: { version: string }; gates: { passed: boolean }; promotion: { promoted: boolean } };
    const m1 = report.candidate.version;
    expect(report.gates.passed).toBe(true);
    expect(report.promotion.promoted).toBe(true);
    text = await metrics();
    expect(metricValue(text, 'td_model_info', { version: m1 })).toBe(1);
    expect(metricValue(text, 'td_model_info', { version: m0 })).toBeUndefined();
    const registry = new ModelRegistry(pool, n.schema);
    expect(await registry.active()).toMatchObject({
      version: m1,
      promoted_by: 'e2e',
      metrics: { promotion: { replaced: m0 }, retrain: { gates: { passed: true, failed: [] } }, calibration: { alpha: ALPHA } },
    });
    expect(await registry.get(m0)).toMatchObject({ active: false, promoted_by: expect.any(String) });

    // ---- coverage back: fresh drifted traffic, decided by M1
    const reportedB = await routeAndReport(traffic(33, 2000, Math.floor(Date.now() / 1000), 'b'));
    await waitFor(async () => metricValue(await metrics(), 'td_feedback_window_samples', { version: m1 }) === reportedB, 30_000, 'all of M1\'s outcomes in the monitor');
    text = await metrics();
    const coverage1 = metricValue(text, 'td_conformal_coverage', { version: m1 })!;
    expect(Math.abs(coverage1 - (1 - ALPHA))).toBeLessThanOrEqual(0.01);
    expect(metricValue(text, 'td_calibration_drift', { version: m1 })).toBe(0);
    expect(metricValue(text, 'td_calibration_drift_events_total', { version: m1 }) ?? 0).toBe(0);
    expect(metricValue(text, 'td_conformal_coverage_target', { version: m1 })).toBeCloseTo(1 - ALPHA, 9);
    const stats1 = (await client.getStats()) as unknown as { model: { version: string }; feedback?: { versions: { version: string; coverage: number; drifting: boolean }[] } };
    expect(stats1.model.version).toBe(m1);
    expect(stats1.feedback?.versions.find((v) => v.version === m1)).toMatchObject({ drifting: false, coverage: expect.closeTo(coverage1, 6) });
    const admin = await cli(['admin', 'stats', '--addr', control.address]);
    expect(admin.code, admin.stderr).toBe(0);
    expect(admin.stdout).toMatch(new RegExp(`feedback +${m1}: coverage ${(coverage1 * 100).toFixed(1)}% \\(target 90\\.0%\\)`));
    expect(admin.stdout).toMatch(new RegExp(`feedback +${m0}: coverage .*DRIFTING`));
    process.stderr.write(`feedback loop: M0 ${m0} coverage ${coverage0.toFixed(4)} on the drifted mix → M1 ${m1} coverage ${coverage1.toFixed(4)} (target ${1 - ALPHA})\n`);
  });
});
