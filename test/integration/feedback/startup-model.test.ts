// Which model `serve` starts with, against the real Postgres registry and broker: the registry's
// active version (what `retrain --promote` / `admin rollback` last made current) when
// TD_MODEL_PATH is not set; TD_MODEL_PATH when it is; and the packaged default — with a warning —
// when the active version's stored file no longer matches its recorded hash.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
  it('serves the registry\'s active version when TD_MODEL_PATH is not set', async () => {
    const { logger, lines } = bufferLogger();
    app = await startApp(testConfig(n, { modelPath: undefined }), { logger });
    expect(app.stats().model.version).toBe(PROMOTED);
    expect(lines.join('')).toMatch(/serving the model registry's active version/);
    expect((await registry.active())?.version).toBe(PROMOTED);
  });

  it('serves TD_MODEL_PATH when it is set, whatever the registry says', async () => {
    app = await startApp(testConfig(n, { modelPath: defaultModelPath() }));
    expect(app.stats().model.version).toBe(defaultVersion);
  });

  it('falls back to the default model, with a warning, when the stored file was changed', async () => {
    await registry.markActive(PROMOTED, 'test'); // the previous case made the default active
    await writeFile(promotedPath, Buffer.concat([await readFile(promotedPath), Buffer.from(' ')]));
    const { logger, lines } = bufferLogger();
    app = await startApp(testConfig(n, { modelPath: undefined }), { logger });
    expect(app.stats().model.version).toBe(defaultVersion);
    expect(lines.join('')).toMatch(/active version cannot be served.*refusing a changed file/);
  });
});
