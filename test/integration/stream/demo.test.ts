// `tiny-dancer demo` as a newcomer runs it: the whole service plus synthetic traffic, summary
// lines on stdout, decisions and dead-lettered records both visible, a clean exit.
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { cliArgv, freePort } from './child.js';
import { deleteTopics, dropSchema, envFor, names, rowCounts } from './helpers.js';
import { ROOT } from '../../unit/engine/cli-run.js';

const n = names('demo');

afterAll(async () => {
  await dropSchema(n.schema);
  await deleteTopics(n);
});

describe('tiny-dancer demo', () => {
  it('shows decisions flowing and broken records dead-lettered, then stops cleanly', async () => {
    const env = {
      ...process.env,
      ...envFor(n),
      TD_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
      TD_GRPC_ADDR: `127.0.0.1:${await freePort()}`,
    };
    const child = spawn(
      process.execPath,
      cliArgv('demo', '--seconds', '10', '--rate', '20', '--bad-rate', '0.2', '--every', '2000'),
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(status, stderr.slice(-2000)).toBe(0);

    const summaries = stdout.split('\n').filter((l) => l.startsWith('demo ') && l.includes('| decided'));
    expect(summaries.length).toBeGreaterThanOrEqual(2);
    const last = summaries[summaries.length - 1]!;
    const decided = Number(/decided (\d+) requests/.exec(last)?.[1]);
    const dlq = Number(/dlq (\d+)/.exec(last)?.[1]);
    expect(decided).toBeGreaterThan(20);
    expect(dlq).toBeGreaterThan(0);
    expect(stdout).toContain(`status page http://${env.TD_HTTP_ADDR}/`);
    // Stats moved between the first and the last summary line.
    expect(Number(/decided (\d+) requests/.exec(summaries[0]!)?.[1])).toBeLessThan(decided);
    // Every request the summary counted is in Postgres (the drain after the last line may add a
    // few more), and no decision is there twice.
    const rows = await rowCounts(n.schema);
    expect(rows.requests).toBeGreaterThanOrEqual(decided);
    expect(rows.rows).toBe(rows.distinct);
  });
});
