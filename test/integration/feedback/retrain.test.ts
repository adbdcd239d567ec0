// `tiny-dancer retrain` and `tiny-dancer admin models|rollback` on the real Postgres and a real
// control plane (a RouterPool served over gRPC): the decision log holds decisions (with their
// feature vectors) made by the serving model M0 on a DRIFTED traffic mix, and their outcomes.
// Retraining on them yields a candidate the gate promotes; a deliberately worse model is refused
// with the failing gate named and nothing changed; rollback restores the previous version.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/index.js';
import { ControlClient } from '../../../src/control/client.js';
import { startControlOnly, type ControlOnly } from '../../../src/control/standalone.js';
import { FEATURE_COUNT } from '../../../src/engine/features.js';
import { parseModel } from '../../../src/engine/model.js';
import { Router } from '../../../src/engine/router.js';
import { OutcomeStore } from '../../../src/feedback/outcome-store.js';
import { ModelRegistry } from '../../../src/feedback/registry.js';
import { DecisionLog, type DecisionRow } from '../../../src/store/decision-log.js';
import type { Outcome } from '../../../src/wire/types.js';
import { migratedDb, type FeedbackDb } from './helpers.js';
import { driftTruth, featuresOf, labelOf, outcomeFor, traffic, trainOn } from './traffic.js';

const TOKEN = 'feedback-test-token-0123';
let db: FeedbackDb;
let dir: string;
let control: ControlOnly;
let client: ControlClient;
let m0: { version: string; path: string };
let worsePath: string;
const savedEnv = { ...process.env };

/** Runs the CLI in-process; returns its exit status and what it printed. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

function storage(): string[] {
  return ['--database-url', process.env.DATABASE_URL!, '--schema', db.schema];
}

beforeAll(async () => {
  db = await migratedDb('td_fb_rt');
  dir = await mkdtemp(join(tmpdir(), 'td-retrain-'));
  const now = Math.floor(Date.now() / 1000);

  // M0: trained on the base mix; it serves.
  const base = trainOn(traffic(11, 600, now, 'base'), 'base');
  m0 = { version: base.model.version, path: join(dir, 'm0.safetensors') };
  await writeFile(m0.path, base.bytes);
  // A deliberately worse model: trained on the drifted mix with every label inverted.
  const worse = trainOn(traffic(12, 300, now, 'inv'), 'drift', { invert: true });
  worsePath = join(dir, 'worse.safetensors');
  await writeFile(worsePath, worse.bytes);

  control = await startControlOnly({ modelPath: m0.path, address: '127.0.0.1:0', adminToken: TOKEN, workers: 1 });
  client = new ControlClient({ address: control.server.address });

  // M0 decides a drifted mix; the decisions (with features) go to the log, the outcomes to theirs.
  const router = new Router({ model: parseModel(base.bytes), now: () => now });
  const log = new DecisionLog({ pool: db.pool, schema: db.schema, flushIntervalMs: 5 });
  const outcomes: Outcome[] = [];
  const requests = traffic(13, 1200, now, 'drift');
  for (const r of requests) {
    const f = featuresOf(r);
    const index = new Map(r.candidates.map((c, i) => [c.id, i]));
    const rows: DecisionRow[] = router.route(r).decisions.map((d) => {
      const i = index.get(d.candidate_id)!;
      const x = f.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT);
      outcomes.push(outcomeFor(d.request_id, d.candidate_id, d.use_lightweight, labelOf(d.request_id, d.candidate_id, driftTruth(x))));
      return { ...d, features: x };
    });
    log.append(rows);
  }
  await log.close({ timeout: 30_000 });
  const store = new OutcomeStore(db.pool, db.schema);
  for (let i = 0; i < outcomes.length; i += 2000) await store.insert(outcomes.slice(i, i + 2000));
  process.env.TD_ADMIN_TOKEN = TOKEN;
  process.env.TD_PROMOTED_BY = 'retrain-test';
}, 180_000);

afterAll(async () => {
  process.env = savedEnv;
  client?.close();
  await control?.close();
  await db?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe.sequential('retrain, the promotion gate, and rollback', () => {
  let candidate: string;

  it('refuses to train on too few outcomes', async () => {
    const r = await cli(['retrain', ...storage(), '--serving', m0.path, '--min-count', '100000', '--candidates-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not enough outcomes to retrain: \d+ labelled examples .* --min-count is 100000/);
  });

  it('without --promote: trains, compares on the most recent outcomes, writes the candidate and the report, registers it, changes nothing', async () => {
    const r = await cli(['retrain', ...storage(), '--window', '1h', '--min-count', '1000', '--holdout', '0.2', '--serving', m0.path, '--candidates-dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, any>;
    candidate = report.candidate.version;
    expect(candidate).not.toBe(m0.version);
    expect(report.serving).toEqual({ version: m0.version });
    expect(report.candidate.trained).toBe(true);
    expect(report.data.holdout).toBeGreaterThan(1000);
    expect(report.promotion).toEqual({ requested: false });
    // The drift hurts M0 and the candidate learned it: every gate passes.
    expect(report.gates.passed).toBe(true);
    expect(report.evaluation.candidate.auc).toBeGreaterThan(report.evaluation.serving.auc + 0.05);
    expect(report.evaluation.serving.coverage).toBeLessThan(0.85);
    expect(Math.abs(report.evaluation.candidate.coverage - 0.9)).toBeLessThan(0.02);
    // Files and registry.
    const bytes = await readFile(join(dir, `${candidate}.safetensors`));
    expect(parseModel(bytes).version).toBe(candidate);
    expect(JSON.parse(await readFile(join(dir, `${candidate}.report.json`), 'utf8')).candidate.version).toBe(candidate);
    const reg = new ModelRegistry(db.pool, db.schema);
    const entry = (await reg.get(candidate))!;
    expect(entry).toMatchObject({ active: false, promoted_at: null, path: join(dir, `${candidate}.safetensors`) });
    expect(entry.metrics).toMatchObject({ calibration: { alpha: 0.1 }, retrain: { gates: { passed: true, failed: [] } } });
    expect((await reg.get(m0.version))!.path).toBe(m0.path); // the serving model got registered too
    // Nothing changed in service.
    expect((await client.getStats()).model!.version).toBe(m0.version);
  });

  it('refuses a deliberately worse model, names the failed gates, and changes nothing', async () => {
    const reg = new ModelRegistry(db.pool, db.schema);
    const activeBefore = (await reg.active())?.version;
    const r = await cli([
      'retrain', ...storage(), '--window', '1h', '--min-count', '1000', '--candidate', worsePath, '--promote',
      '--addr', control.server.address, '--candidates-dir', dir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not promoted, nothing changed: gates? failed: auc — AUC 0\.[0-4]\d+ vs serving/);
    expect(r.stdout).toMatch(/gate auc\s+FAIL/);
    expect((await client.getStats()).model!.version).toBe(m0.version);
    expect((await reg.active())?.version).toBe(activeBefore);
  });

  it('with --promote: reloads the retrained candidate through the control plane and records who promoted it', async () => {
    const r = await cli([
      'retrain', ...storage(), '--window', '1h', '--min-count', '1000', '--promote', '--addr', control.server.address,
      '--candidates-dir', dir, '--promoted-by', 'alice',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`promoted ${candidate} (was ${m0.version}) by alice`);
    expect(r.stdout).toMatch(/gate coverage\s+PASS/);
    expect((await client.getStats()).model!.version).toBe(candidate); // same data, same seed: same model
    const active = (await new ModelRegistry(db.pool, db.schema).active())!;
    expect(active).toMatchObject({ version: candidate, promoted_by: 'alice', metrics: { promotion: { by: 'alice', replaced: m0.version } } });
    expect(Date.now() - active.promoted_at!.getTime()).toBeLessThan(60_000);
  });

  it('admin models lists every version, the active one marked', async () => {
    const r = await cli(['admin', 'models', ...storage()]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.find((l) => l.includes(candidate))).toMatch(new RegExp(`^\\* ${candidate}.* alice`));
    expect(lines.find((l) => l.includes(m0.version))).toMatch(/^ {2}/);
    const json = await cli(['admin', '--json', 'models', ...storage()]);
    const rows = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { version: string; sha256: string; active: boolean });
    expect(rows.filter((e) => e.active).map((e) => e.version)).toEqual([candidate]);
    expect(rows.every((e) => /^[0-9a-f]{64}$/.test(e.sha256))).toBe(true);
  });

  it('admin rollback restores the previous version through the validated reload', async () => {
    const r = await cli(['admin', 'rollback', m0.version, ...storage(), '--addr', control.server.address, '--promoted-by', 'bob']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`rolled back: now serving ${m0.version} (was ${candidate})`);
    expect((await client.getStats()).model!.version).toBe(m0.version);
    const active = (await new ModelRegistry(db.pool, db.schema).active())!;
    expect(active).toMatchObject({ version: m0.version, promoted_by: 'bob', metrics: { rollback: { by: 'bob' } } });

    // An unknown version is a usage error; a tampered file is refused and nothing changes.
    expect((await cli(['admin', 'rollback', 'no-such-version', ...storage(), '--addr', control.server.address])).code).toBe(2);
    await writeFile(join(dir, `${candidate}.safetensors`), 'tampered');
    const bad = await cli(['admin', 'rollback', candidate, ...storage(), '--addr', control.server.address]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/sha256 .* refusing a changed file/);
    expect((await client.getStats()).model!.version).toBe(m0.version);
  });
});
