// `tiny-dancer admin stats --since DURATION`: the decision log's statistics over a time window,
// read from Postgres (no running server needed), per model version and in total, with the
// estimated spend and savings when TD_COST_LIGHTWEIGHT / TD_COST_HEAVYWEIGHT are set — the same
// figures `serve` reports live, over the rows instead of the process lifetime.
//
// Per tenant: the routing_decisions table has no tenant column, so the figures are per model
// version only; a column identifying the policy or tenant would become a second grouping here.
import { costPrices } from '../../config.js';
import { errorMessage } from '../../errors.js';
import { costFigures, type CostFigures, type Prices } from '../../observe/cost.js';
import type { DecisionCounts, DecisionStats } from '../../store/stats.js';
import { databaseUrl, parseDuration, schemaName, type Env } from '../common.js';

export interface WindowRow {
  modelVersion: string | null;
  decisions: number;
  requests: number;
  lightweight: number;
  heavyweight: number;
  lightweightShare: number;
  cost?: CostFigures;
}

export interface WindowReport {
  from: string | null;
  to: string;
  total: WindowRow;
  byModelVersion: WindowRow[];
}

function row(modelVersion: string | null, c: DecisionCounts, prices: Prices | undefined): WindowRow {
  const r: WindowRow = {
    modelVersion,
    decisions: c.decisions,
    requests: c.requests,
    lightweight: c.lightweight,
    heavyweight: c.heavyweight,
    lightweightShare: c.lightweightShare,
  };
  if (prices) r.cost = costFigures(prices, c);
  return r;
}

/** The report of a window's statistics, with costs when prices are given (pure). */
export function windowReport(s: DecisionStats, prices: Prices | undefined): WindowReport {
  return {
    from: s.window.from ? s.window.from.toISOString() : null,
    to: s.window.to.toISOString(),
    total: row(null, s, prices),
    byModelVersion: s.byModelVersion.map((v) => row(v.modelVersion, v, prices)),
  };
}

function num(x: number): string {
  // Enough digits for a price of a fraction of a cent times millions of decisions.
  return Number.isInteger(x) ? x.toLocaleString('en-US') : x.toLocaleString('en-US', { maximumFractionDigits: 6 });
}

export function formatWindowReport(r: WindowReport): string {
  const head = ['version', 'decisions', 'lightweight', 'share'];
  const withCost = r.total.cost !== undefined;
  if (withCost) head.push('spend', 'all-heavyweight', 'savings', 'saved');
  const cells = (x: WindowRow): string[] => {
    const c = [x.modelVersion ?? 'all versions', num(x.decisions), num(x.lightweight), `${(x.lightweightShare * 100).toFixed(1)}%`];
    if (x.cost) c.push(num(x.cost.spend), num(x.cost.allHeavyweightSpend), num(x.cost.savings), `${(x.cost.savingsShare * 100).toFixed(1)}%`);
    return c;
  };
  const rows = [head, ...r.byModelVersion.map(cells), cells(r.total)];
  const widths = head.map((_, i) => Math.max(...rows.map((cs) => cs[i]!.length)));
  const lines = [`decisions from ${r.from ?? 'the beginning'} to ${r.to}`];
  for (const cs of rows) lines.push(cs.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
  if (!withCost) lines.push('(set TD_COST_LIGHTWEIGHT and TD_COST_HEAVYWEIGHT to see the estimated spend and savings)');
  return lines.join('\n');
}

/** Runs the command; `since` is the --since argument. Returns the exit status. */
export async function runWindowStats(opts: { since: string; databaseUrl?: string; schema?: string; json: boolean }, env: Env): Promise<number> {
  const windowMs = parseDuration('since', opts.since);
  const prices = costPrices(env);
  const { createPool, decisionStats, redactUrl } = await import('../../store/index.js');
  const url = databaseUrl(opts.databaseUrl, env, redactUrl);
  const schema = schemaName(opts.schema, env);
  const pool = createPool({ url, max: 1, applicationName: 'tiny-dancer admin stats' });
  try {
    const to = new Date();
    const s = await decisionStats(pool, { schema, from: new Date(to.getTime() - windowMs), to }).catch((err: unknown) => {
      throw new Error(`stats: ${redactUrl(url)} schema ${schema}: ${errorMessage(err)}`, { cause: err });
    });
    const report = windowReport(s, prices);
    process.stdout.write(`${opts.json ? JSON.stringify(report) : formatWindowReport(report)}\n`);
    return 0;
  } finally {
    await pool.end().catch(() => {});
  }
}
