// The decision-log aggregates GetStats shows, cached: refreshed in the background when read and
// older than the TTL, so a stats call never waits for a scan of routing_decisions, and a
// dashboard polling every replica does not turn into a scan per poll.
import { errorMessage, oneLine } from '../errors.js';
import { redactUrl, type Queryable } from './pg.js';
import { decisionStats, type DecisionStats } from './stats.js';

/** The aggregates as the control plane shows them (StoreAggregatesView). */
export interface StoreAggregates {
  /** False when Postgres did not answer; `error` then says why (one line, no secrets). */
  available: boolean;
  error?: string;
  windowSeconds: number;
  decisions: number;
  requests: number;
  lightweightShare: number;
  reasons: Record<string, number>;
  modelVersions: Record<string, number>;
  meanConfidence: number;
  meanUncertainty: number;
  p50InferenceUs: number;
  p95InferenceUs: number;
  p99InferenceUs: number;
  lastDecidedAt?: number;
  computedAt: number;
}

export const STORE_STATS_TTL_MS = 5000;

export interface StoreStatsCacheOptions {
  pool: Queryable;
  schema: string;
  /** Default STORE_STATS_TTL_MS. */
  ttlMs?: number;
}

/** DecisionStats as the control plane shows them. */
export function storeAggregates(s: DecisionStats, computedAt: number): StoreAggregates {
  const windowSeconds = s.window.from ? (s.window.to.getTime() - s.window.from.getTime()) / 1000 : 0;
  return {
    available: true,
    windowSeconds,
    decisions: s.decisions,
    requests: s.requests,
    lightweightShare: s.lightweightShare,
    reasons: { ...s.byReason },
    modelVersions: Object.fromEntries(s.byModelVersion.map((v) => [v.modelVersion, v.decisions])),
    meanConfidence: s.meanConfidence,
    meanUncertainty: s.meanUncertainty,
    p50InferenceUs: s.latencyUs?.p50 ?? 0,
    p95InferenceUs: s.latencyUs?.p95 ?? 0,
    p99InferenceUs: s.latencyUs?.p99 ?? 0,
    ...(s.lastDecidedAt ? { lastDecidedAt: s.lastDecidedAt.getTime() } : {}),
    computedAt,
  };
}

/** The aggregates when Postgres did not answer: zeros, and why (no secrets). */
export function unavailableAggregates(err: unknown, computedAt: number): StoreAggregates {
  return {
    available: false,
    error: oneLine(redactUrl(errorMessage(err)), 300),
    windowSeconds: 0,
    decisions: 0,
    requests: 0,
    lightweightShare: 0,
    reasons: {},
    modelVersions: {},
    meanConfidence: 0,
    meanUncertainty: 0,
    p50InferenceUs: 0,
    p95InferenceUs: 0,
    p99InferenceUs: 0,
    computedAt,
  };
}

export class StoreStatsCache {
  #latest: StoreAggregates | undefined;
  #refreshing = false;
  #stopped = false;
  readonly #ttlMs: number;

  constructor(private readonly opts: StoreStatsCacheOptions) {
    this.#ttlMs = opts.ttlMs ?? STORE_STATS_TTL_MS;
  }

  /**
   * The last aggregates computed (undefined before the first refresh finished); starts a
   * refresh in the background when they are missing or older than the TTL.
   */
  read(): StoreAggregates | undefined {
    this.#refresh();
    return this.#latest;
  }

  /** No more refreshes (the pool is about to end). */
  stop(): void {
    this.#stopped = true;
  }

  #refresh(): void {
    if (this.#refreshing || this.#stopped) return;
    if (this.#latest && Date.now() - this.#latest.computedAt < this.#ttlMs) return;
    this.#refreshing = true;
    const computedAt = Date.now();
    decisionStats(this.opts.pool, { schema: this.opts.schema })
      .then((s) => {
        this.#latest = storeAggregates(s, computedAt);
      })
      .catch((err: unknown) => {
        this.#latest = unavailableAggregates(err, computedAt);
      })
      .finally(() => {
        this.#refreshing = false;
      });
  }
}
