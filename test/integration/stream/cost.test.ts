// What the routing saves, on the real pipeline: serve with prices set and a known lightweight
// share (the scorer hook sends exactly the rank-0 candidate of each request lightweight) reports
// exact figures in its Prometheus metrics and over gRPC GetStats, and `tiny-dancer admin stats
// --since` (a separate process reading Postgres) gives the same figures from the rows.
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../../src/control/client.js';
import { startControlServer, type ControlServer } from '../../../src/control/server.js';
import { databaseUrl, makeRequest, produce, record, rowCounts, serveFixture, testConfig, waitFor } from './helpers.js';
import { cliArgv } from './child.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
// Exact binary fractions, so every expected figure is exact.
const PRICES = { lightweight: 0.25, heavyweight: 2 };
const REQUESTS = 30;
const CANDIDATES = 3;

const serve = serveFixture('cost', (n) => ({
  config: testConfig(n, { cost: PRICES }),
  options: {
    // One lightweight decision per request: a lightweight share of exactly 1/3.
    wrapScorer: (score) => async (task) => {
      const res = await score(task);
      return {
        ...res,
        decisions: res.decisions.map((d) =>
          d.rank === 0 ? { ...d, use_lightweight: true, reason: 'model' as const } : { ...d, use_lightweight: false, reason: 'below_threshold' as const },
        ),
      };
    },
  },
}));

let control: ControlServer | undefined;
afterAll(async () => {
  await control?.close({ timeoutMs: 500 });
});

// 30 requests x 3 candidates: 30 lightweight, 60 heavyweight decisions.
const EXPECTED = { light: 30 * 0.25, heavy: 60 * 2, spend: 7.5 + 120, all: 90 * 2, savings: 30 * 1.75 };

function metric(text: string, re: RegExp): number {
  const m = re.exec(text);
  if (!m) throw new Error(`metric ${re} not found`);
  return Number(m[1]);
}

describe('estimated spend and savings', () => {
  it('are exact in the metrics, in GetStats and in admin stats --since', async () => {
    const reqs = Array.from({ length: REQUESTS }, (_, i) => makeRequest(`cost-${i}`, CANDIDATES, 8));
    await produce(serve.n.requests, reqs.map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));
    await serve.out.until(() => serve.out.records.length >= REQUESTS * CANDIDATES, 60_000, 'every decision');
    await waitFor(async () => (await rowCounts(serve.n.schema)).rows >= REQUESTS * CANDIDATES, 60_000, 'every row in Postgres');

    const text = await (await fetch(`${serve.app.httpUrl}/metrics`)).text();
    expect(metric(text, /^td_estimated_cost_total\{route="lightweight"\} (\S+)$/m)).toBe(EXPECTED.light);
    expect(metric(text, /^td_estimated_cost_total\{route="heavyweight"\} (\S+)$/m)).toBe(EXPECTED.heavy);
    expect(metric(text, /^td_estimated_savings_total (\S+)$/m)).toBe(EXPECTED.savings);

    control = await startControlServer({ address: '127.0.0.1:0', target: serve.app.control });
    const rpc = new ControlClient({ address: control.address, deadlineMs: 10_000 });
    try {
      const s = await rpc.getStats();
      expect(s.cost).toEqual({
        lightweight_price: 0.25,
        heavyweight_price: 2,
        lightweight_spend: EXPECTED.light,
        heavyweight_spend: EXPECTED.heavy,
        spend: EXPECTED.spend,
        all_heavyweight_spend: EXPECTED.all,
        savings: EXPECTED.savings,
        savings_share: EXPECTED.savings / EXPECTED.all,
      });
    } finally {
      rpc.close();
    }

    const child = spawn(
      process.execPath,
      cliArgv('admin', 'stats', '--since', '1h', '--json', '--schema', serve.n.schema),
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: databaseUrl(), TD_COST_LIGHTWEIGHT: '0.25', TD_COST_HEAVYWEIGHT: '2' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const status = await new Promise<number | null>((res) => child.on('close', res));
    expect(status, stderr).toBe(0);
    const report = JSON.parse(stdout) as { total: { decisions: number; lightweight: number; cost: Record<string, number> }; byModelVersion: Array<{ modelVersion: string; cost: Record<string, number> }> };
    expect(report.total).toMatchObject({ decisions: 90, lightweight: 30 });
    expect(report.total.cost).toMatchObject({ lightweightSpend: EXPECTED.light, heavyweightSpend: EXPECTED.heavy, spend: EXPECTED.spend, allHeavyweightSpend: EXPECTED.all, savings: EXPECTED.savings });
    expect(report.byModelVersion).toHaveLength(1);
    expect(report.byModelVersion[0]!.modelVersion).toBe(serve.app.modelVersion);
    expect(report.byModelVersion[0]!.cost.savings).toBe(EXPECTED.savings);
  });

  it('a bad price stops the admin command with exit 2 naming the variable', async () => {
    const child = spawn(
      process.execPath,
      cliArgv('admin', 'stats', '--since', '1h', '--schema', serve.n.schema),
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: databaseUrl(), TD_COST_LIGHTWEIGHT: 'x', TD_COST_HEAVYWEIGHT: '2' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const status = await new Promise<number | null>((res) => child.on('close', res));
    expect(status).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('TD_COST_LIGHTWEIGHT');
  });
});
