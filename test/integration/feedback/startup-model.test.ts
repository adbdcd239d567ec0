// Which model `serve` starts with, against the real Postgres registry and broker: the fleet's
// active model from the control topic (what the last reload, `retrain --promote` or `admin
// rollback` made current), over TD_MODEL_PATH; the registry is only the audit history (a
// version marked active there, never written to the topic, is not served).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/app.js';
import { defaultModelPath, parseModel } from '../../../src/engine/model.js';
import { readSafetensors, writeSafetensors } from '../../../src/engine/safetensors.js';
import { ModelRegistry, sha256Hex, storeModelFile } from '../../../src/feedback/registry.js';
import { migrate } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { databaseUrl } from '../../support/infra.js';
import { bufferLogger, deleteTopics, dropSchema, names, startApp, testConfig, type Names } from '../stream/helpers.js';

const PROMOTED = 'startup-promoted-v2';
let n: Names;
let dir: string;
let pool: pg.Pool;
let registry: ModelRegistry;
let promotedPath: string;
let defaultVersion: string;
let app: App | undefined;

beforeAll(async () => {
  n = names('startup');
  dir = await mkdtemp(join(tmpdir(), 'td-startup-'));
  pool = createPool({ url: databaseUrl(), max: 2 });
  await migrate(pool, { schema: n.schema });
  registry = new ModelRegistry(pool, n.schema);
  const packaged = await readFile(defaultModelPath());
  defaultVersion = parseModel(packaged, 'default').version;
  // The packaged model's weights under another version: what a promotion leaves behind.
  const { tensors, metadata } = readSafetensors(packaged);
  const bytes = writeSafetensors(tensors, { ...metadata, version: PROMOTED });
  promotedPath = await storeModelFile(dir, PROMOTED, bytes);
  await registry.register({ version: PROMOTED, sha256: sha256Hex(bytes), path: promotedPath });
  await registry.markActive(PROMOTED, 'test');
});

afterEach(async () => {
  await app?.stop();
  app = undefined;
});

afterAll(async () => {
  await deleteTopics(n);
  await dropSchema(n.schema);
  await pool.end();
  await rm(dir, { recursive: true, force: true });
});

describe('serve start-up model', () => {
  it('ignores the registry at start-up: with an empty control topic it serves TD_MODEL_PATH or the default', async () => {
    app = await startApp(testConfig(n, { modelPath: undefined }));
    expect(app.control.stats().model.version).toBe(defaultVersion);
  });

  it('comes back with the model a reload made the fleet\'s, even over TD_MODEL_PATH, and mirrors it into the registry', async () => {
    app = await startApp(testConfig(n, { modelPath: undefined }));
    const r = await app.control.reload({ path: promotedPath });
    expect(r.model.version).toBe(PROMOTED);
    expect(r.convergence?.revision).toBeGreaterThanOrEqual(0);
    await app.stop();
    const { logger, lines } = bufferLogger();
    app = await startApp(testConfig(n, { modelPath: defaultModelPath() }), { logger });
    expect(app.control.stats().model.version).toBe(PROMOTED);
    expect(lines.join('')).toMatch(/TD_MODEL_PATH is set, but the fleet's control topic names the active model/);
    const active = await registry.active();
    expect(active?.version).toBe(PROMOTED);
    expect(active?.promoted_by).toMatch(/^serve@/);
  });

  it('refuses a model over 4 MiB with a clear error, and nothing changes', async () => {
    app = await startApp(testConfig(n, { modelPath: undefined }));
    const before = app.control.stats().model.version;
    const packaged = await readFile(defaultModelPath());
    const { tensors, metadata } = readSafetensors(packaged);
    const big = writeSafetensors(tensors, { ...metadata, version: 'too-big', padding: 'x'.repeat(4 * 1024 * 1024) });
    await expect(app.control.reload({ bytes: big })).rejects.toThrow(/at most 4194304 bytes \(4 MiB\)/);
    expect(app.control.stats().model.version).toBe(before);
  });
});
