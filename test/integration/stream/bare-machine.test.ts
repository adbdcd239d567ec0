// First run on a bare machine: no DATABASE_URL and no Postgres answering at the default address
// → the decision log goes to the embedded Postgres (PGlite over pglite-socket), announced in one
// log line, and the stream works the same.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/app.js';
import { freePort } from './child.js';
import { bufferLogger, collect, deleteTopics, makeRequest, names, produce, record, startApp, testConfig, waitFor } from './helpers.js';

const n = names('bare');
const dataDir = mkdtempSync(join(tmpdir(), 'td-pglite-'));
let app: App | undefined;

afterAll(async () => {
  await app?.stop({ timeoutMs: 5000 });
  rmSync(dataDir, { recursive: true, force: true });
  await deleteTopics(n);
});

describe('bare machine', () => {
  it('logs to the embedded Postgres when DATABASE_URL is not set and nothing answers', async () => {
    const closed = await freePort(); // nothing listens there
    const base = testConfig(n);
    const config = testConfig(n, { databaseUrlFromEnv: false, pgliteDir: dataDir, dbSchema: base.dbSchema });
    const { logger, lines } = bufferLogger();
    app = await startApp(config, { logger, defaultDatabaseUrl: `postgres://postgres@127.0.0.1:${closed}/postgres` });
    const db = app.database()!;
    expect(db.embedded).toBe(true);
    const announced = lines.filter((l) => l.includes('embedded Postgres (PGlite)'));
    expect(announced).toHaveLength(1);

    const out = await collect([n.lightweight, n.heavyweight]);
    try {
      const reqs = Array.from({ length: 10 }, (_, i) => makeRequest(`bare-${i}`, 3, 8));
      await produce(n.requests, reqs.map((r) => record(r, 'json')));
      await out.until((rs) => rs.length >= 30, 45_000, 'decisions');
      // Every decision is a row of the embedded database (no password there: the URL is usable).
      const count = async () => {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        try {
          return Number((await client.query(`SELECT count(*) AS n FROM "${config.dbSchema}".routing_decisions`)).rows[0].n);
        } finally {
          await client.end();
        }
      };
      await waitFor(async () => (await count()) >= 30, 30_000, 'rows in the embedded Postgres');
      expect(await count()).toBe(30);
      expect((await fetch(`${app.httpUrl}/readyz`)).status).toBe(200);
    } finally {
      await out.stop();
    }
  });
});
