// Issue 5's acceptance check with a client we did not write: kcat (librdkafka) produces JSON
// requests, `serve` (a child process) decides them, and kcat reads every decision back exactly
// once, on the right topic, keyed by request id; every decision is one row in Postgres.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServe, type ServeChild } from './child.js';
import { deleteTopics, dropSchema, envFor, makeRequest, names, rowCounts, waitFor } from './helpers.js';
import { kcatAvailable, kcatConsume, kcatProduce } from './kcat.js';
const dir = mkdtempSync(join(tmpdir(), 'td-kcat-'));
let serve: ServeChild | undefined;
const n = names('kcat');

afterAll(async () => {
  if (serve) {
    serve.kill('SIGTERM');
    await serve.exited;
  }
  await dropSchema(n.schema);
  await deleteTopics(n);
  rmSync(dir, { recursive: true, force: true });
});

describe('kcat against serve', () => {
  it('kcat-produced JSON requests come back as decisions exactly once, and each is a row', async (ctx) => {
    if (!(await kcatAvailable())) {
      process.stderr.write('kcat test skipped: kcat is not installed (apt-get install kcat)\n');
      ctx.skip();
    }
    serve = await startServe(envFor(n), join(dir, 'serve.log'));
    const requests = Array.from({ length: 25 }, (_, i) => makeRequest(`kcat-${i}`, 4, 16));
    await kcatProduce(n.requests, requests.map((r) => `${r.request_id}\t${JSON.stringify(r)}`));

    const expected = requests.length * 4;
    let light: Awaited<ReturnType<typeof kcatConsume>> = [];
    let heavy: typeof light = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      [light, heavy] = await Promise.all([kcatConsume(n.lightweight), kcatConsume(n.heavyweight)]);
      if (light.length + heavy.length >= expected) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const all = [...light.map((r) => ({ ...r, topic: 'light' })), ...heavy.map((r) => ({ ...r, topic: 'heavy' }))];
    expect(all).toHaveLength(expected);

    const seen = new Set<string>();
    for (const rec of all) {
      const d = JSON.parse(rec.value) as { request_id: string; candidate_id: string; use_lightweight: boolean };
      expect(rec.key).toBe(d.request_id);
      expect(d.use_lightweight).toBe(rec.topic === 'light');
      expect(rec.headers).toMatch(/content-type=application\/json/);
      const id = `${d.request_id}/${d.candidate_id}`;
      expect(seen.has(id)).toBe(false);
      seen.add(id);
    }
    for (const r of requests) for (const c of r.candidates) expect(seen.has(`${r.request_id}/${c.id}`)).toBe(true);

    // The rows land a moment after the records (offsets are committed after both).
    await waitFor(async () => (await rowCounts(n.schema)).rows >= expected, 60_000, 'every decision as a row');
    expect(await rowCounts(n.schema)).toEqual({ rows: expected, distinct: expected, requests: requests.length });
  });
});
