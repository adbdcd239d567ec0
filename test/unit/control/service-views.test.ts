// The control plane's views of `serve`, from fake parts: totals summed over the stream and Route
// calls, sections present only for the parts running, the heartbeat's lag of owned partitions,
// and GetConfig with the database address redacted.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.js';
import type { ControlCore } from '../../../src/control/core.js';
import { replicaSample, routeCounts, serviceConfig, serviceStats, type ServiceParts } from '../../../src/control/service-views.js';
import type { StreamCounters } from '../../../src/stream/processor.js';

const latency = { summary: () => ({ count: 0, p50Us: 0, p95Us: 0, p99Us: 0, meanUs: 0, maxUs: 0 }) };
const core = {
  routeTotals: () => ({ requests: 2, decisions: 6, lightweight: 1, heavyweight: 5, failed: 1, rejected: 1, reasons: { model: 6 } }),
  modelView: () => ({ version: 'v1', source: '/models/m.safetensors' }),
  thresholds: () => ({ confidence: 0.7, maxUncertainty: 0.2 }),
  engineLatency: latency,
  endToEndLatency: latency,
  breakerView: () => ({ state: 'closed' }),
  breaker: { state: 'open' },
} as unknown as ControlCore;

const counters: StreamCounters = {
  consumed: 10, decided: 9, rejected: 1, decisions: 30, lightweight: 20, reasons: { model: 25, uncertain: 5 },
  produced: 31, dlq: 1, fallbacks: 0, committedBatches: 3,
};

function parts(over: Partial<ServiceParts> = {}): ServiceParts {
  return {
    settings: loadConfig({ TD_COST_LIGHTWEIGHT: '1', TD_COST_HEAVYWEIGHT: '10' }),
    startedAt: 1234,
    core,
    pool: undefined,
    processor: {
      counters,
      status: () => ({ running: true, joined: true, memberId: 'm', generation: 1, assignment: { 'routing.requests': [0, 2] }, paused: false, pauseReason: undefined, inFlight: 4, exactlyOnce: false, lastError: undefined }),
    },
    log: undefined,
    logFailedBatches: 0,
    lag: { latest: { total: 9, at: 99 }, lagOf: (ps) => ps.length * 3 },
    feedback: undefined,
    fleet: undefined,
    desired: { revision: 7, lastApplyError: undefined },
    database: { url: 'postgres://td:secret@db:5432/x', embedded: false },
    ...over,
  };
}

describe('service views', () => {
  it('routeCounts sums the stream and Route calls', () => {
    expect(routeCounts(parts())).toEqual({ lightweight: 21, heavyweight: 15 });
    expect(routeCounts({ processor: undefined, core: undefined })).toEqual({ lightweight: 0, heavyweight: 0 });
  });

  it('serviceStats: totals, reasons, stream with lag, cost; no sections for parts not running', () => {
    const s = serviceStats(parts(), core);
    expect(s.startedAt).toBe(1234);
    expect(s.totals).toEqual({ requests: 11, decisions: 36, lightweight: 21, heavyweight: 15, failed: 1, rejected: 2, reasons: { model: 31, breaker_open: 0, uncertain: 5, below_threshold: 0 } });
    expect(s.stream).toMatchObject({ connected: true, assignedPartitions: 2, consumed: 10, inFlight: 4, pausedPartitions: 0, consumerLag: 9, lagSampledAt: 99 });
    expect(s.cost).toBeDefined();
    expect(s.pool).toBeUndefined();
    expect(s.decisionLog).toBeUndefined();
    expect(s.store).toBeUndefined();
    expect(s.fleet).toBeUndefined();
    const bare = serviceStats(parts({ processor: undefined, lag: undefined }), core);
    expect(bare.stream).toBeUndefined();
  });

  it('replicaSample: own partitions, their lag, the desired-state revision', () => {
    const r = replicaSample(parts({ settings: loadConfig({}) }), true);
    expect(r).toMatchObject({ policyRevision: 7, partitions: [0, 2], requests: 11, decisions: 36, lightweight: 21, consumerLag: 6, logBacklog: 0, breaker: 'open', ready: true });
    expect(replicaSample(parts({ lag: undefined, core: undefined, processor: undefined }), false)).toMatchObject({ consumerLag: undefined, breaker: 'closed', partitions: [] });
  });

  it('serviceConfig: thresholds in force, model path, the database address without its password', () => {
    const c = serviceConfig(parts());
    expect(c.thresholds).toEqual({ confidence: 0.7, maxUncertainty: 0.2 });
    expect(c.modelPath).toBe('/models/m.safetensors');
    expect(String(c.settings.database)).not.toContain('secret');
    expect(c.settings).toMatchObject({ mode: 'serve', controlRevision: 7, embeddedDatabase: false });
  });
});
