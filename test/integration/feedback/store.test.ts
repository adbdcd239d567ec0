// Outcomes and the model registry on the real Postgres: idempotent storage joined to the
// decision log, and a registry that names each model once and keeps one version active.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { OutcomeStore } from '../../../src/feedback/outcome-store.js';
import { ModelRegistry, RegistryError, sha256Hex, storeModelFile } from '../../../src/feedback/registry.js';
import { DecisionLog } from '../../../src/store/decision-log.js';
import { migrate } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { ModelError } from '../../../src/errors.js';
import { databaseUrl, uniqueSchema } from '../../support/infra.js';

let pool: pg.Pool;
const schema = uniqueSchema('td_fb');
let dir: string;

beforeAll(async () => {
  pool = createPool({ url: databaseUrl(), max: 4 });
  await migrate(pool, { schema });
  dir = await mkdtemp(join(tmpdir(), 'td-registry-'));
});

afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
  await rm(dir, { recursive: true, force: true });
});

describe('OutcomeStore', () => {
  it('stores outcomes once, joins them to their decisions, and reports duplicates', async () => {
    const log = new DecisionLog({ pool, schema, flushIntervalMs: 5 });
    const token = log.append([
      { request_id: 'r1', candidate_id: 'a', rank: 0, confidence: 0.9, uncertainty: 0.1, use_lightweight: true, reason: 'model', model_version: 'v1', inference_time_us: 5, features: [0.9, 0.1, 0.2, 0.8, 0.5] },
      { request_id: 'r1', candidate_id: 'b', rank: 1, confidence: 0.2, uncertainty: 0.4, use_lightweight: false, reason: 'below_threshold', model_version: 'v1', inference_time_us: 5 },
    ]);
    await log.flushed(token);
    await log.close({ timeout: 1000 });

    const store = new OutcomeStore(pool, schema);
    const first = await store.insert([
      { request_id: 'r1', candidate_id: 'a', ok: true, served_by: 'lightweight' },
      { request_id: 'r1', candidate_id: 'b', ok: true, quality: 0.25, served_by: 'heavyweight' },
      { request_id: 'r2', candidate_id: 'x', ok: false }, // its decision is not logged (yet)
      { request_id: 'r1', candidate_id: 'a', ok: false }, // repeated within the batch: the first wins
    ]);
    expect(first.duplicates).toBe(1);
    const byKey = new Map(first.inserted.map((o) => [`${o.request_id}/${o.candidate_id}`, o]));
    expect(byKey.size).toBe(3);
    expect(byKey.get('r1/a')).toMatchObject({ ok: true, served_by: 'lightweight', decision: { model_version: 'v1', use_lightweight: true, reason: 'model' } });
    expect(byKey.get('r1/a')!.decision!.confidence).toBeCloseTo(0.9, 6);
    expect(byKey.get('r1/b')).toMatchObject({ quality: 0.25, served_by: 'heavyweight', decision: { use_lightweight: false, reason: 'below_threshold' } });
    expect(byKey.get('r2/x')!.decision).toBeUndefined();
    expect(byKey.get('r2/x')!.received_at).toBeInstanceOf(Date);

    // Replay: nothing new, nothing changed.
    const again = await store.insert([{ request_id: 'r1', candidate_id: 'a', ok: false, served_by: 'heavyweight' }]);
    expect(again).toEqual({ inserted: [], duplicates: 1 });
    const { rows } = await pool.query(`SELECT request_id, candidate_id, ok, quality, served_by FROM "${schema}".routing_outcomes ORDER BY 1, 2`);
    expect(rows).toEqual([
      { request_id: 'r1', candidate_id: 'a', ok: true, quality: null, served_by: 'lightweight' },
      { request_id: 'r1', candidate_id: 'b', ok: true, quality: 0.25, served_by: 'heavyweight' },
      { request_id: 'r2', candidate_id: 'x', ok: false, quality: null, served_by: null },
    ]);

    // The early outcome joins once its decision is logged.
    expect((await store.decisionsFor([{ request_id: 'r2', candidate_id: 'x' }])).size).toBe(0);
    await pool.query(
      `INSERT INTO "${schema}".routing_decisions (request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version, inference_time_us, decided_at)
       VALUES ('r2', 'x', 0, 0.7, 0.2, true, 'model', 'v2', 3, now())`,
    );
    const late = await store.decisionsFor([{ request_id: 'r2', candidate_id: 'x' }, { request_id: 'nope', candidate_id: 'x' }]);
    expect([...late.values()]).toEqual([{ model_version: 'v2', confidence: expect.closeTo(0.7, 6), use_lightweight: true, reason: 'model' }]);
  });
});

describe('ModelRegistry', () => {
  it('registers versions by hash, keeps exactly one active, and verifies files before a restore', async () => {
    const reg = new ModelRegistry(pool, schema);
    const bytesA = new TextEncoder().encode('model A bytes');
    const bytesB = new TextEncoder().encode('model B bytes');
    const pathA = await storeModelFile(dir, 'm-a', bytesA);
    const pathB = await storeModelFile(dir, 'm-b', bytesB);
    expect(await storeModelFile(dir, 'm-a', bytesA)).toBe(pathA); // same bytes: fine
    await expect(storeModelFile(dir, 'm-a', bytesB)).rejects.toThrow(/already exists with other content/);
    await expect(storeModelFile(dir, '../evil', bytesB)).rejects.toThrow(/not usable as a registry key/);

    const a = await reg.register({ version: 'm-a', sha256: sha256Hex(bytesA), path: pathA, metrics: { auc: 0.8 } });
    expect(a).toMatchObject({ version: 'm-a', path: pathA, active: false, promoted_at: null, metrics: { auc: 0.8 } });
    // Same version and hash: metrics merge.
    expect((await reg.register({ version: 'm-a', sha256: sha256Hex(bytesA), metrics: { coverage: 0.9 } })).metrics).toEqual({ auc: 0.8, coverage: 0.9 });
    // Same version, other model: refused.
    await expect(reg.register({ version: 'm-a', sha256: sha256Hex(bytesB) })).rejects.toThrow(RegistryError);
    await reg.register({ version: 'm-b', sha256: sha256Hex(bytesB), path: pathB });

    expect(await reg.markActiveIfNone('m-a', 'serve')).toBe(true);
    expect(await reg.markActiveIfNone('m-b', 'serve')).toBe(false);
    expect((await reg.active())!.version).toBe('m-a');
    const b = await reg.markActive('m-b', 'alice', { promotion: { gates: 'passed' } });
    expect(b).toMatchObject({ version: 'm-b', active: true, promoted_by: 'alice', metrics: { promotion: { gates: 'passed' } } });
    expect(b.promoted_at).toBeInstanceOf(Date);
    const list = await reg.list();
    expect(list.filter((e) => e.active).map((e) => e.version)).toEqual(['m-b']);
    expect(list.map((e) => e.version).sort()).toEqual(['m-a', 'm-b']);
    await expect(reg.markActive('nope', 'alice')).rejects.toThrow(/not in the registry/);
    expect((await reg.active())!.version).toBe('m-b'); // the failed call changed nothing

    expect((await reg.readVerifiedFile('m-a')).bytes.equals(Buffer.from(bytesA))).toBe(true);
    await writeFile(pathA, 'tampered');
    await expect(reg.readVerifiedFile('m-a')).rejects.toThrow(ModelError);
    await expect(reg.readVerifiedFile('nope')).rejects.toThrow(/not in the registry/);
  });
});
