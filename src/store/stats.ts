// Statistics over the decision log for the control plane (GetStats / WatchStats). One scan of
// the time window answers everything: totals, lightweight share, counts by reason, latency
// percentiles, overall and per model version (GROUPING SETS). The window is bounded by default
// (the last 24 hours) so a table of millions of rows is read through the decided_at index, not
// end to end; pass `from: null` to ask for all time knowingly.
//
// Outcome statistics (coverage, lightweight success rate, calibration) are not computed from
// Postgres: the feedback loop keeps them live, per model version (src/feedback/monitor.ts).
import { StoreError, errorMessageWithCode } from './errors.js';
import { quoteSchema, type Queryable } from './pg.js';

export const DEFAULT_STATS_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface StatsWindow {
  /** Start, inclusive. Default: `to` minus 24 hours; null: no lower bound. */
  from?: Date | null;
  /** End, exclusive. Default: now. */
  to?: Date;
}

export interface StatsOptions extends StatsWindow {
  schema?: string;
  /** Only this model version. */
  modelVersion?: string;
}

export interface LatencyPercentiles {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

export interface ReasonCounts {
  model: number;
  breaker_open: number;
  uncertain: number;
  below_threshold: number;
}

export interface DecisionCounts {
  /** Decisions (rows). */
  decisions: number;
  /** Requests: each request has exactly one rank-0 decision. */
  requests: number;
  lightweight: number;
  heavyweight: number;
  /** lightweight / decisions; 0 when there are none. */
  lightweightShare: number;
  byReason: ReasonCounts;
  /** Engine time per decision, µs (inference_time_us); null when there are no decisions. */
  latencyUs: LatencyPercentiles | null;
  /** Mean confidence and uncertainty of the decisions; 0 when there are none. */
  meanConfidence: number;
  meanUncertainty: number;
  firstDecidedAt: Date | null;
  lastDecidedAt: Date | null;
}

export interface ModelVersionStats extends DecisionCounts {
  modelVersion: string;
}

export interface DecisionStats extends DecisionCounts {
  window: { from: Date | null; to: Date };
  /** Ordered by decisions, most first. */
  byModelVersion: ModelVersionStats[];
}

interface Row {
  model_version: string | null;
  all_versions: number;
  decisions: string;
  requests: string;
  lightweight: string;
  r_model: string;
  r_breaker_open: string;
  r_uncertain: string;
  r_below_threshold: string;
  latency: number[] | null;
  mean_us: number | null;
  max_us: number | null;
  mean_confidence: number | null;
  mean_uncertainty: number | null;
  first_at: Date | null;
  last_at: Date | null;
}

/** Resolves the window: default the last 24 h up to now. */
export function resolveWindow(window: StatsWindow = {}, now: Date = new Date()): { from: Date | null; to: Date } {
  const to = window.to ?? now;
  const from = window.from === undefined ? new Date(to.getTime() - DEFAULT_STATS_WINDOW_MS) : window.from;
  return { from, to };
}

function counts(r: Row): DecisionCounts {
  const decisions = Number(r.decisions);
  const lightweight = Number(r.lightweight);
  const lat = r.latency;
  return {
    decisions,
    requests: Number(r.requests),
    lightweight,
    heavyweight: decisions - lightweight,
    lightweightShare: decisions > 0 ? lightweight / decisions : 0,
    byReason: {
      model: Number(r.r_model),
      breaker_open: Number(r.r_breaker_open),
      uncertain: Number(r.r_uncertain),
      below_threshold: Number(r.r_below_threshold),
    },
    latencyUs:
      decisions > 0 && lat && lat.length === 3
        ? { p50: lat[0]!, p95: lat[1]!, p99: lat[2]!, mean: Number(r.mean_us), max: Number(r.max_us) }
        : null,
    meanConfidence: decisions > 0 ? Number(r.mean_confidence) : 0,
    meanUncertainty: decisions > 0 ? Number(r.mean_uncertainty) : 0,
    firstDecidedAt: r.first_at,
    lastDecidedAt: r.last_at,
  };
}

/** Decision statistics over a time window, overall and per model version. */
export async function decisionStats(db: Queryable, options: StatsOptions = {}): Promise<DecisionStats> {
  const t = `${quoteSchema(options.schema ?? 'public')}.routing_decisions`;
  const window = resolveWindow(options);
  const where: string[] = ['decided_at < $1'];
  const params: unknown[] = [window.to];
  if (window.from) {
    params.push(window.from);
    where.push(`decided_at >= $${params.length}`);
  }
  if (options.modelVersion !== undefined) {
    params.push(options.modelVersion);
    where.push(`model_version = $${params.length}`);
  }
  // percentile_cont interpolates between neighbours, as most dashboards do; float8[] comes back
  // from pg as number[].
  const sql = `
SELECT model_version,
       GROUPING(model_version) AS all_versions,
       count(*) AS decisions,
       count(*) FILTER (WHERE rank = 0) AS requests,
       count(*) FILTER (WHERE use_lightweight) AS lightweight,
       count(*) FILTER (WHERE reason = 'model') AS r_model,
       count(*) FILTER (WHERE reason = 'breaker_open') AS r_breaker_open,
       count(*) FILTER (WHERE reason = 'uncertain') AS r_uncertain,
       count(*) FILTER (WHERE reason = 'below_threshold') AS r_below_threshold,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP (ORDER BY inference_time_us) AS latency,
       avg(inference_time_us) AS mean_us,
       max(inference_time_us) AS max_us,
       avg(confidence)::float8 AS mean_confidence,
       avg(uncertainty)::float8 AS mean_uncertainty,
       min(decided_at) AS first_at,
       max(decided_at) AS last_at
FROM ${t}
WHERE ${where.join(' AND ')}
GROUP BY GROUPING SETS ((), (model_version))`;
  let rows: Row[];
  try {
    rows = (await db.query<Row>(sql, params)).rows;
  } catch (err) {
    throw StoreError.from(`decision statistics query failed: ${errorMessageWithCode(err)}`, err);
  }
  const total = rows.find((r) => Number(r.all_versions) === 1);
  const empty: Row = {
    model_version: null, all_versions: 1, decisions: '0', requests: '0', lightweight: '0', r_model: '0',
    r_breaker_open: '0', r_uncertain: '0', r_below_threshold: '0', latency: null, mean_us: null, max_us: null,
    mean_confidence: null, mean_uncertainty: null, first_at: null, last_at: null,
  };
  const byModelVersion = rows
    .filter((r) => Number(r.all_versions) === 0 && r.model_version !== null)
    .map((r) => ({ modelVersion: r.model_version!, ...counts(r) }))
    .sort((a, b) => b.decisions - a.decisions || a.modelVersion.localeCompare(b.modelVersion));
  return { window, ...counts(total ?? empty), byModelVersion };
}
