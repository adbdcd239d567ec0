// What the status page shows (GET /status.json): a snapshot of the control plane's stats plus a
// short history sampled every few seconds, from which the page draws decisions per second and the
// lightweight share over the last minutes. Rates come from differences of lifetime counters
// between samples, so a sample missed under load widens one interval instead of losing counts.
import type { ControlStats } from '../control/target.js';

/** One replica of a fleet, when a fleet view exists; the page lists them when there are several. */
export interface FleetReplica {
  id: string;
  modelVersion: string;
  health?: string;
  decisionsPerSecond?: number;
  lightweightShare?: number;
  thresholds?: { confidence: number; maxUncertainty: number };
}

export interface StatusPoint {
  /** Unix ms at the end of the interval. */
  t: number;
  decisionsPerSecond: number;
  /** Lightweight decisions / decisions in the interval; null when there were none. */
  lightweightShare: number | null;
  dlqPerSecond: number;
}

export interface StatusDocument {
  time: number;
  mode: string;
  health: string;
  uptimeSeconds: number;
  model: { version: string; calibrated: boolean; loadedAt: number };
  thresholds: { confidence: number; maxUncertainty: number };
  totals: { requests: number; decisions: number; lightweight: number; heavyweight: number; rejected: number; dlq: number };
  /** Over the last sampled interval (null before two samples). */
  now: StatusPoint | null;
  /** Oldest first, one point per sampling interval, over the last `historySeconds`. */
  series: StatusPoint[];
  historySeconds: number;
  /** End-to-end latency in milliseconds (null before any sample). */
  endToEnd: { p50Ms: number; p99Ms: number; samples: number } | null;
  breaker: { state: string; trips: number; openedAt: number | null };
  /** Decision-log rows not yet durable; null without a decision log. */
  logBacklog: number | null;
  consumerLag: number | null;
  /** Conformal coverage per model version from the feedback monitor; empty when the loop is off. */
  coverage: Array<{ version: string; coverage: number | null; target: number | null; labeled: number; drifting: boolean }>;
  /** Estimated spend and savings since start; null when no prices are configured. */
  cost: {
    lightweightPrice: number;
    heavyweightPrice: number;
    spend: number;
    allHeavyweightSpend: number;
    savings: number;
    savingsShare: number;
  } | null;
  /** Replicas of the fleet, when a fleet view is attached; absent otherwise. */
  fleet?: FleetReplica[];
}

export interface Sample {
  t: number;
  decisions: number;
  lightweight: number;
  dlq: number;
}

export interface StatusCounters {
  decisions: number;
  lightweight: number;
  dlq: number;
}

export interface StatusTrackerOptions {
  /** The process's stats (the control plane's target), read when the page asks. */
  stats: () => ControlStats | Promise<ControlStats>;
  /**
   * The lifetime counters the background sampling reads. Cheaper than `stats` (which may query
   * Postgres); default: taken from `stats`.
   */
  counters?: () => StatusCounters;
  /** The deployment mode and the health the control plane reports. */
  meta: () => { mode: string; health: string };
  /** The fleet's replicas, when a fleet view exists. */
  fleet?: () => FleetReplica[] | undefined;
  /** Sampling interval. Default 2000 ms. */
  intervalMs?: number;
  /** History kept. Default 300 s. */
  historySeconds?: number;
  now?: () => number;
}

function point(a: Sample, b: Sample): StatusPoint {
  const dt = Math.max(1e-3, (b.t - a.t) / 1000);
  const decisions = Math.max(0, b.decisions - a.decisions);
  return {
    t: b.t,
    decisionsPerSecond: decisions / dt,
    lightweightShare: decisions > 0 ? Math.max(0, b.lightweight - a.lightweight) / decisions : null,
    dlqPerSecond: Math.max(0, b.dlq - a.dlq) / dt,
  };
}

function sampleOf(s: ControlStats, t: number): Sample {
  return { t, decisions: s.totals.decisions, lightweight: s.totals.lightweight, dlq: s.stream?.dlq ?? 0 };
}

/** The status document for `stats` and the samples taken so far (pure). */
export function statusDocument(
  s: ControlStats,
  meta: { mode: string; health: string },
  samples: readonly Sample[],
  time: number,
  historySeconds: number,
  fleet?: FleetReplica[],
): StatusDocument {
  const series: StatusPoint[] = [];
  for (let i = 1; i < samples.length; i++) series.push(point(samples[i - 1]!, samples[i]!));
  const e2e = s.endToEndLatency;
  const doc: StatusDocument = {
    time,
    mode: meta.mode,
    health: meta.health,
    uptimeSeconds: Math.max(0, (time - s.startedAt) / 1000),
    model: { version: s.model.version, calibrated: s.model.calibration !== undefined, loadedAt: s.model.loadedAt },
    thresholds: { ...s.thresholds },
    totals: {
      requests: s.totals.requests,
      decisions: s.totals.decisions,
      lightweight: s.totals.lightweight,
      heavyweight: s.totals.heavyweight,
      rejected: s.totals.rejected,
      dlq: s.stream?.dlq ?? 0,
    },
    now: series.length > 0 ? series[series.length - 1]! : null,
    series,
    historySeconds,
    endToEnd: e2e && e2e.count > 0 ? { p50Ms: e2e.p50 / 1000, p99Ms: e2e.p99 / 1000, samples: e2e.count } : null,
    breaker: { state: s.breaker.state, trips: s.breaker.trips, openedAt: s.breaker.openedAt ?? null },
    logBacklog: s.decisionLog ? s.decisionLog.backlog : null,
    consumerLag: s.stream?.consumerLag ?? null,
    coverage: (s.feedback?.versions ?? []).map((v) => ({
      version: v.version,
      coverage: v.coverage,
      target: v.targetCoverage,
      labeled: v.labeled,
      drifting: v.drifting,
    })),
    cost: s.cost
      ? {
          lightweightPrice: s.cost.prices.lightweight,
          heavyweightPrice: s.cost.prices.heavyweight,
          spend: s.cost.spend,
          allHeavyweightSpend: s.cost.allHeavyweightSpend,
          savings: s.cost.savings,
          savingsShare: s.cost.savingsShare,
        }
      : null,
  };
  if (fleet) doc.fleet = fleet;
  return doc;
}

/** Samples the stats in the background and answers /status.json. */
export class StatusTracker {
  readonly #opts: StatusTrackerOptions;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #historySeconds: number;
  #samples: Sample[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: StatusTrackerOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#intervalMs = opts.intervalMs ?? 2000;
    this.#historySeconds = opts.historySeconds ?? 300;
  }

  /** Starts sampling (idempotent); the timer never holds the process open. */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.sample().catch(() => {}), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample now. */
  async sample(): Promise<void> {
    const c = this.#opts.counters?.();
    this.#record(c ? { t: this.#now(), ...c } : sampleOf(await this.#opts.stats(), this.#now()));
  }

  #record(x: Sample): void {
    const last = this.#samples[this.#samples.length - 1];
    // Two reads close together would make a noisy rate: keep the later one only.
    if (last && x.t - last.t < this.#intervalMs / 2) this.#samples[this.#samples.length - 1] = x;
    else this.#samples.push(x);
    const oldest = x.t - this.#historySeconds * 1000;
    while (this.#samples.length > 2 && this.#samples[0]!.t < oldest) this.#samples.shift();
  }

  /** The document of /status.json, from fresh stats and the history. */
  async document(): Promise<StatusDocument> {
    const s = await this.#opts.stats();
    return statusDocument(s, this.#opts.meta(), this.#samples, this.#now(), this.#historySeconds, this.#opts.fleet?.());
  }
}
