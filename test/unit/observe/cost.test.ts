// The cost report: known prices and a known lightweight share give exact figures, in the pure
// computation, in the Prometheus metrics, in GetStats over real gRPC and in `admin stats --since`'s
// report; bad prices are refused at start-up naming the variable.
import { afterEach, describe, expect, it } from 'vitest';
import client from 'prom-client';
import { loadConfig } from '../../../src/config.js';
import { ConfigError } from '../../../src/errors.js';
import { costFigures, registerCostMetrics } from '../../../src/observe/cost.js';
import { ControlClient } from '../../../src/control/client.js';
import { startControlServer, type ControlServer } from '../../../src/control/server.js';
import type { ControlStats } from '../../../src/control/target.js';
import { formatWindowReport, windowReport } from '../../../src/cli/commands/admin-window.js';
import type { DecisionStats } from '../../../src/store/stats.js';
import { FakeTarget } from '../control/fake-target.js';

// 0.25 and 2 are exact binary fractions: every figure below is exact, not approximately equal.
const PRICES = { lightweight: 0.25, heavyweight: 2 };
// 1000 decisions at a 70 % lightweight share.
const COUNTS = { lightweight: 700, heavyweight: 300 };
const EXPECTED = {
  prices: PRICES,
  lightweightSpend: 175,
  heavyweightSpend: 600,
  spend: 775,
  allHeavyweightSpend: 2000,
  savings: 1225,
  savingsShare: 0.6125,
};

describe('costFigures', () => {
  it('gives the exact spend and savings against all-heavyweight', () => {
    expect(costFigures(PRICES, COUNTS)).toEqual(EXPECTED);
  });

  it('reports zero savings share before any decision and for an all-heavyweight run', () => {
    expect(costFigures(PRICES, { lightweight: 0, heavyweight: 0 }).savingsShare).toBe(0);
    expect(costFigures(PRICES, { lightweight: 0, heavyweight: 10 })).toMatchObject({ spend: 20, savings: 0, savingsShare: 0 });
  });

  it('matches the seed case: 10,000 queries at 0.02 with 80 % lightweight at 0.002', () => {
    const f = costFigures({ lightweight: 0.002, heavyweight: 0.02 }, { lightweight: 8000, heavyweight: 2000 });
    expect(f.allHeavyweightSpend).toBeCloseTo(200, 10);
    expect(f.spend).toBeCloseTo(56, 10);
    expect(f.savingsShare).toBeCloseTo(0.72, 12);
  });
});

describe('td_estimated_cost_total and td_estimated_savings_total', () => {
  it('follow the decision counts at every scrape', async () => {
    const registry = new client.Registry();
    const counts = { ...COUNTS };
    registerCostMetrics(registry, PRICES, () => counts);
    const read = async () => {
      const text = await registry.metrics();
      const value = (re: RegExp) => Number(re.exec(text)?.[1]);
      return {
        light: value(/^td_estimated_cost_total\{route="lightweight"\} (\S+)$/m),
        heavy: value(/^td_estimated_cost_total\{route="heavyweight"\} (\S+)$/m),
        savings: value(/^td_estimated_savings_total (\S+)$/m),
      };
    };
    expect(await read()).toEqual({ light: 175, heavy: 600, savings: 1225 });
    counts.lightweight += 4;
    counts.heavyweight += 1;
    expect(await read()).toEqual({ light: 176, heavy: 602, savings: 1232 });
  });
});

describe('GetStats.cost over gRPC', () => {
  let server: ControlServer | undefined;
  let rpc: ControlClient | undefined;
  afterEach(async () => {
    rpc?.close();
    await server?.close({ timeoutMs: 200 });
  });

  class PricedTarget extends FakeTarget {
    override stats(): ControlStats {
      const s = super.stats() as ControlStats;
      return { ...s, cost: costFigures(PRICES, { lightweight: s.totals.lightweight, heavyweight: s.totals.heavyweight }) };
    }
  }

  it('carries the figures as field 20, and is absent without prices', async () => {
    const target = new PricedTarget();
    target.decisions = 1000;
    target.lightweight = 700;
    server = await startControlServer({ address: '127.0.0.1:0', target });
    rpc = new ControlClient({ address: server.address, deadlineMs: 5000 });
    const s = await rpc.getStats();
    expect(s.cost).toEqual({
      lightweight_price: 0.25,
      heavyweight_price: 2,
      lightweight_spend: 175,
      heavyweight_spend: 600,
      spend: 775,
      all_heavyweight_spend: 2000,
      savings: 1225,
      savings_share: 0.6125,
    });
    await server.close({ timeoutMs: 200 });
    server = await startControlServer({ address: '127.0.0.1:0', target: new FakeTarget() });
    rpc.close();
    rpc = new ControlClient({ address: server.address, deadlineMs: 5000 });
    expect((await rpc.getStats()).cost ?? null).toBeNull();
  });
});

describe('the window report of admin stats --since', () => {
  const counts = (lightweight: number, heavyweight: number) => ({
    decisions: lightweight + heavyweight, requests: (lightweight + heavyweight) / 2, lightweight, heavyweight,
    lightweightShare: lightweight / (lightweight + heavyweight),
    byReason: { model: lightweight + heavyweight, breaker_open: 0, uncertain: 0, below_threshold: 0 },
    latencyUs: null, meanConfidence: 0.5, meanUncertainty: 0.1, firstDecidedAt: null, lastDecidedAt: null,
  });
  const stats: DecisionStats = {
    window: { from: new Date('2026-01-01T00:00:00Z'), to: new Date('2026-01-02T00:00:00Z') },
    ...counts(700, 300),
    byModelVersion: [{ modelVersion: 'v2', ...counts(600, 200) }, { modelVersion: 'v1', ...counts(100, 100) }],
  };

  it('gives each model version and the total its exact figures', () => {
    const r = windowReport(stats, PRICES);
    expect(r.total.cost).toEqual(EXPECTED);
    expect(r.byModelVersion.map((v) => [v.modelVersion, v.cost?.spend, v.cost?.savings])).toEqual([
      ['v2', 550, 1050],
      ['v1', 225, 175],
    ]);
    const text = formatWindowReport(r);
    expect(text).toMatch(/^all versions\s+1,000\s+700\s+70\.0%\s+775\s+2,000\s+1,225\s+61\.3%$/m);
  });

  it('without prices, reports counts and says how to get costs', () => {
    const r = windowReport(stats, undefined);
    expect(r.total.cost).toBeUndefined();
    expect(formatWindowReport(r)).toContain('set TD_COST_LIGHTWEIGHT and TD_COST_HEAVYWEIGHT');
  });
});

describe('TD_COST_LIGHTWEIGHT / TD_COST_HEAVYWEIGHT', () => {
  it('are off when unset and read when both are set', () => {
    expect(loadConfig({}).cost).toBeUndefined();
    expect(loadConfig({ TD_COST_LIGHTWEIGHT: '0.002', TD_COST_HEAVYWEIGHT: '0.02' }).cost).toEqual({ lightweight: 0.002, heavyweight: 0.02 });
  });

  it.each([
    [{ TD_COST_LIGHTWEIGHT: 'cheap', TD_COST_HEAVYWEIGHT: '1' }, /^TD_COST_LIGHTWEIGHT="cheap" is invalid/],
    [{ TD_COST_LIGHTWEIGHT: '0.1', TD_COST_HEAVYWEIGHT: '-1' }, /^TD_COST_HEAVYWEIGHT="-1" is invalid/],
    [{ TD_COST_LIGHTWEIGHT: '0.1' }, /^TD_COST_HEAVYWEIGHT is required/],
    [{ TD_COST_HEAVYWEIGHT: '1' }, /^TD_COST_LIGHTWEIGHT is required/],
    [{ TD_COST_LIGHTWEIGHT: '2', TD_COST_HEAVYWEIGHT: '1' }, /^TD_COST_LIGHTWEIGHT="2" is invalid: must not exceed TD_COST_HEAVYWEIGHT/],
  ])('refuses %j naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });
});
