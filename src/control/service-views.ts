// The control plane's views of a running `serve` (GetStats, GetConfig, the heartbeat's sample),
// assembled from its parts. Pure: the App hands in what it has started so far; a part not
// (yet) running leaves its section out.
import { describeConfig, type Config } from '../config.js';
import type { FeedbackSnapshot } from '../feedback/service.js';
import type { ReplicaSample } from '../observe/heartbeat.js';
import { costFigures } from '../observe/cost.js';
import type { DecisionLogMetrics } from '../store/decision-log.js';
import { redactUrl } from '../store/pg.js';
import type { StoreAggregates } from '../store/stats-cache.js';
import type { ProcessorStatus, StreamCounters } from '../stream/processor.js';
import type { ControlCore, RoutingPool } from './core.js';
import type { ApplyErrorView } from './desired-state.js';
import type { FleetTotalsView } from './fleet-table.js';
import type { ConfigSnapshot, ControlStats } from './target.js';

export interface ServiceParts {
  settings: Config;
  /** When the service started serving (Unix ms). */
  startedAt: number;
  core: ControlCore | undefined;
  pool: RoutingPool | undefined;
  processor: { readonly counters: StreamCounters; status(): ProcessorStatus } | undefined;
  log: { metrics(): DecisionLogMetrics; backlog(): number } | undefined;
  /** Decision-log write attempts that failed (each retried). */
  logFailedBatches: number;
  lag: { readonly latest: { total: number; at: number } | undefined; lagOf(partitions: readonly number[]): number | undefined } | undefined;
  /** Cached Postgres aggregates (GetStats only); undefined until first computed. */
  store?: StoreAggregates | undefined;
  feedback: { snapshot(): FeedbackSnapshot } | undefined;
  fleet: { totals(): FleetTotalsView } | undefined;
  /** The fleet's desired state as this replica applied it. */
  desired: { readonly revision: number; readonly lastApplyError: ApplyErrorView | undefined };
  database: { url: string; embedded: boolean } | undefined;
}

/** Decisions by route, from the stream and from Route calls. */
export function routeCounts(p: Pick<ServiceParts, 'processor' | 'core'>): { lightweight: number; heavyweight: number } {
  const k = p.processor?.counters;
  const r = p.core?.routeTotals();
  const lightweight = (k?.lightweight ?? 0) + (r?.lightweight ?? 0);
  return { lightweight, heavyweight: (k?.decisions ?? 0) + (r?.decisions ?? 0) - lightweight };
}

/** GetStats. */
export function serviceStats(p: ServiceParts, core: ControlCore): ControlStats {
  const k = p.processor?.counters;
  const r = core.routeTotals();
  const reasons: Record<string, number> = { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 };
  for (const src of [k?.reasons ?? {}, r.reasons]) for (const [key, v] of Object.entries(src)) reasons[key] = (reasons[key] ?? 0) + v;
  const routes = routeCounts(p);
  const lightweight = routes.lightweight;
  const decisions = routes.lightweight + routes.heavyweight;
  const st = p.processor?.status();
  const stats: ControlStats = {
    startedAt: p.startedAt,
    model: core.modelView(),
    thresholds: core.thresholds(),
    totals: {
      requests: (k?.decided ?? 0) + r.requests,
      decisions,
      lightweight,
      heavyweight: decisions - lightweight,
      failed: r.failed,
      rejected: (k?.rejected ?? 0) + r.rejected,
      reasons,
    },
    engineLatency: core.engineLatency.summary(),
    endToEndLatency: core.endToEndLatency.summary(),
    breaker: core.breakerView(),
  };
  if (p.pool) stats.pool = { ...p.pool.stats() };
  if (k && st) {
    const lag = p.lag?.latest;
    stats.stream = {
      connected: st.joined,
      assignedPartitions: Object.values(st.assignment).reduce((n, ps) => n + ps.length, 0),
      consumed: k.consumed,
      produced: k.produced,
      dlq: k.dlq,
      inFlight: st.inFlight,
      pausedPartitions: st.paused ? Object.values(st.assignment).reduce((n, ps) => n + ps.length, 0) : 0,
      ...(lag ? { consumerLag: lag.total, lagSampledAt: lag.at } : {}),
    };
  }
  if (p.log) {
    const m = p.log.metrics();
    stats.decisionLog = { backlog: m.backlog, written: m.inserted + m.duplicates, failedBatches: p.logFailedBatches, healthy: m.breaker === 'closed' };
  }
  if (p.store) stats.store = { ...p.store };
  if (p.feedback) stats.feedback = p.feedback.snapshot();
  if (p.settings.cost) stats.cost = costFigures(p.settings.cost, routes);
  if (p.fleet) stats.fleet = p.fleet.totals();
  return stats;
}

/** GetConfig: the settings in force, secrets redacted. */
export function serviceConfig(p: ServiceParts): ConfigSnapshot {
  const c = p.settings;
  const snap: ConfigSnapshot = {
    thresholds: p.core?.thresholds() ?? { confidence: c.thresholds.confidence ?? 0, maxUncertainty: c.thresholds.maxUncertainty ?? 0 },
    breaker: {
      timeoutMs: c.breaker.timeoutMs,
      errorThresholdPercentage: c.breaker.errorThresholdPercentage,
      volumeThreshold: c.breaker.volumeThreshold,
      resetTimeoutMs: c.breaker.resetTimeoutMs,
      rollingWindowMs: c.breaker.rollingCountTimeoutMs,
    },
    settings: {
      ...describeConfig(c),
      mode: 'serve',
      database: p.database ? redactUrl(p.database.url) : undefined,
      embeddedDatabase: p.database?.embedded ?? false,
      workers: p.pool?.stats().workers,
      controlRevision: p.desired.revision,
      controlApplyError: p.desired.lastApplyError?.message,
    },
  };
  const path = p.core?.modelView().source ?? c.modelPath;
  if (path !== undefined && path !== 'bytes' && path !== 'control-topic') snap.modelPath = path;
  return snap;
}

/** The heartbeat's sample of this replica. */
export function replicaSample(p: ServiceParts, ready: boolean): ReplicaSample {
  const st = p.processor?.status();
  const k = p.processor?.counters;
  const r = p.core?.routeTotals() ?? { requests: 0, decisions: 0, lightweight: 0 };
  const partitions = st?.assignment[p.settings.topics.requests] ?? [];
  return {
    modelVersion: p.pool?.modelVersion ?? '',
    policyRevision: Math.max(0, p.desired.revision),
    lastApplyError: p.desired.lastApplyError?.message,
    partitions: [...partitions],
    requests: (k?.decided ?? 0) + r.requests,
    decisions: (k?.decisions ?? 0) + r.decisions,
    lightweight: (k?.lightweight ?? 0) + r.lightweight,
    consumerLag: p.lag?.lagOf(partitions),
    logBacklog: p.log?.backlog() ?? 0,
    breaker: p.core?.breaker.state ?? 'closed',
    ready,
  };
}
