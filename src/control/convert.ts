// ControlTarget views (camelCase TypeScript) → control.proto messages (snake_case plain
// objects for proto-loader, typed by the generated types of src/control/generated/). Pure. Anything a target leaves out becomes the proto3 default or
// an absent sub-message, never `undefined` inside a message.
import type {
  BreakerSettingsView,
  BreakerView,
  ConfigSnapshot,
  ControlStats,
  ConvergenceView,
  HealthStatus,
  LatencyView,
  ModelView,
  PolicyChangeResult,
  RatesView,
  ReloadResult,
  TenantPolicyView,
  ThresholdsView,
  TotalsView,
} from './target.js';
import { feedbackStatsMsg } from '../feedback/stats.js';
import { fleetTotalsMsg } from './fleet-status.js';
import type { BreakerSettings } from './generated/tiny_dancer/v1/BreakerSettings.js';
import type { BreakerState } from './generated/tiny_dancer/v1/BreakerState.js';
import type { CircuitBreaker } from './generated/tiny_dancer/v1/CircuitBreaker.js';
import type { ConfigView } from './generated/tiny_dancer/v1/ConfigView.js';
import type { Convergence } from './generated/tiny_dancer/v1/Convergence.js';
import type { LatencySummary } from './generated/tiny_dancer/v1/LatencySummary.js';
import type { ModelInfo } from './generated/tiny_dancer/v1/ModelInfo.js';
import type { Rates } from './generated/tiny_dancer/v1/Rates.js';
import type { ReloadModelResponse } from './generated/tiny_dancer/v1/ReloadModelResponse.js';
import type { SetThresholdsResponse } from './generated/tiny_dancer/v1/SetThresholdsResponse.js';
import type { Stats } from './generated/tiny_dancer/v1/Stats.js';
import type { StreamStats } from './generated/tiny_dancer/v1/StreamStats.js';
import type { TenantPolicy } from './generated/tiny_dancer/v1/TenantPolicy.js';
import type { TenantPolicyChange } from './generated/tiny_dancer/v1/TenantPolicyChange.js';
import type { Totals } from './generated/tiny_dancer/v1/Totals.js';


const BREAKER_STATE: Readonly<Record<string, BreakerState>> = Object.freeze({
  closed: 'BREAKER_STATE_CLOSED',
  open: 'BREAKER_STATE_OPEN',
  half_open: 'BREAKER_STATE_HALF_OPEN',
});

/** Non-negative finite number, else 0: protobuf uint fields refuse negatives and NaN. */
function u(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function d(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) ? n : 0;
}

function counts(rec: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (rec) for (const [k, v] of Object.entries(rec)) out[k] = u(v);
  return out;
}

export function modelMsg(m: ModelView): ModelInfo {
  return {
    version: m.version,
    loaded_at_unix_ms: u(m.loadedAt),
    source: m.source ?? '',
    input_dim: u(m.inputDim),
    hidden_dim: u(m.hiddenDim),
    features: m.features ? [...m.features] : [],
    calibrated: m.calibration !== undefined,
    calibration_alpha: d(m.calibration?.alpha),
    calibration_qhat: d(m.calibration?.qhat),
    calibration_n: u(m.calibration?.n),
  };
}

export function thresholdsMsg(t: ThresholdsView & { convergence?: ConvergenceView }): SetThresholdsResponse {
  const msg: SetThresholdsResponse = { confidence: d(t.confidence), max_uncertainty: d(t.maxUncertainty) };
  if (t.convergence) msg.convergence = convergenceMsg(t.convergence);
  return msg;
}

export function convergenceMsg(c: ConvergenceView): Convergence {
  return { revision: c.revision, converged: u(c.converged), live: u(c.live) };
}

export function tenantPolicyMsg(p: TenantPolicyView): TenantPolicy {
  return { tenant: p.tenant, confidence: d(p.confidence), max_uncertainty: d(p.maxUncertainty) };
}

export function policyChangeMsg(r: PolicyChangeResult): TenantPolicyChange {
  const msg: TenantPolicyChange = { tenant: r.tenant, changed: r.changed };
  if (r.policy) msg.policy = tenantPolicyMsg(r.policy);
  if (r.convergence) msg.convergence = convergenceMsg(r.convergence);
  return msg;
}

export function breakerSettingsMsg(s: BreakerSettingsView): BreakerSettings {
  return {
    timeout_ms: u(s.timeoutMs),
    error_threshold_percentage: u(s.errorThresholdPercentage),
    volume_threshold: u(s.volumeThreshold),
    reset_timeout_ms: u(s.resetTimeoutMs),
    rolling_window_ms: u(s.rollingWindowMs),
  };
}

export function breakerMsg(b: BreakerView): CircuitBreaker {
  const msg: CircuitBreaker = {
    state: BREAKER_STATE[b.state] ?? 'BREAKER_STATE_UNSPECIFIED',
    trips: u(b.trips),
    fallbacks: u(b.fallbacks),
    opened_at_unix_ms: u(b.openedAt),
  };
  if (b.window) {
    msg.window = {
      successes: u(b.window.successes),
      failures: u(b.window.failures),
      timeouts: u(b.window.timeouts),
      rejects: u(b.window.rejects),
      fallbacks: u(b.window.fallbacks),
    };
  }
  if (b.settings) msg.settings = breakerSettingsMsg(b.settings);
  return msg;
}

export function latencyMsg(l: LatencyView): LatencySummary {
  return { count: u(l.count), p50_us: d(l.p50), p90_us: d(l.p90), p99_us: d(l.p99), max_us: d(l.max) };
}

function totalsMsg(t: TotalsView): Totals {
  return {
    requests: u(t.requests),
    decisions: u(t.decisions),
    lightweight: u(t.lightweight),
    heavyweight: u(t.heavyweight),
    failed: u(t.failed),
    rejected: u(t.rejected),
    reasons: counts(t.reasons),
  };
}

function ratesMsg(r: RatesView): Rates {
  return {
    window_seconds: d(r.windowSeconds),
    requests_per_second: d(r.requestsPerSecond),
    decisions_per_second: d(r.decisionsPerSecond),
    lightweight_share: d(r.lightweightShare),
    rejected_per_second: d(r.rejectedPerSecond),
  };
}

/** Rates between two snapshots of the totals (or since start when `before` is undefined). */
export function ratesBetween(before: TotalsView | undefined, after: TotalsView, seconds: number): RatesView {
  const b = before ?? { requests: 0, decisions: 0, lightweight: 0, heavyweight: 0, failed: 0, rejected: 0, reasons: {} };
  const s = seconds > 0 ? seconds : 0;
  const per = (x: number) => (s > 0 ? Math.max(0, x) / s : 0);
  const decisions = after.decisions - b.decisions;
  const light = after.lightweight - b.lightweight;
  return {
    windowSeconds: s,
    requestsPerSecond: per(after.requests - b.requests),
    decisionsPerSecond: per(decisions),
    lightweightShare: decisions > 0 ? Math.max(0, light) / decisions : 0,
    rejectedPerSecond: per(after.rejected - b.rejected),
  };
}

export interface StatsContext {
  mode: string;
  serviceVersion: string;
  health: HealthStatus;
  now: number;
  /** Rates to report when the target gave none. */
  rates: RatesView;
}

export function statsMsg(s: ControlStats, ctx: StatsContext): Stats {
  const msg: Stats = {
    mode: ctx.mode,
    service_version: ctx.serviceVersion,
    time_unix_ms: u(ctx.now),
    started_at_unix_ms: u(s.startedAt),
    uptime_seconds: Math.max(0, (ctx.now - s.startedAt) / 1000),
    health: ctx.health,
    model: modelMsg(s.model),
    thresholds: thresholdsMsg(s.thresholds),
    totals: totalsMsg(s.totals),
    rates: ratesMsg(s.rates ?? ctx.rates),
    lightweight_share: s.totals.decisions > 0 ? s.totals.lightweight / s.totals.decisions : 0,
    engine_latency: latencyMsg(s.engineLatency),
    breaker: breakerMsg(s.breaker),
  };
  if (s.endToEndLatency) msg.end_to_end_latency = latencyMsg(s.endToEndLatency);
  if (s.pool) {
    msg.pool = {
      workers: u(s.pool.workers),
      in_flight: u(s.pool.inFlight),
      queued: u(s.pool.queued),
      completed: u(s.pool.completed),
      failed: u(s.pool.failed),
      crashes: u(s.pool.crashes),
    };
  }
  if (s.stream) {
    const st: StreamStats = {
      connected: s.stream.connected,
      assigned_partitions: u(s.stream.assignedPartitions),
      consumed: u(s.stream.consumed),
      produced: u(s.stream.produced),
      dlq: u(s.stream.dlq),
      lag_sampled_at_unix_ms: u(s.stream.lagSampledAt),
      in_flight: u(s.stream.inFlight),
      paused_partitions: u(s.stream.pausedPartitions),
    };
    if (s.stream.consumerLag !== undefined && Number.isFinite(s.stream.consumerLag)) st.consumer_lag = Math.floor(s.stream.consumerLag);
    msg.stream = st;
  }
  if (s.decisionLog) {
    msg.decision_log = {
      backlog: u(s.decisionLog.backlog),
      written: u(s.decisionLog.written),
      failed_batches: u(s.decisionLog.failedBatches),
      healthy: s.decisionLog.healthy,
    };
  }
  if (s.store) {
    const a = s.store;
    msg.store = {
      available: a.available,
      error: a.error ?? '',
      window_seconds: d(a.windowSeconds),
      decisions: u(a.decisions),
      requests: u(a.requests),
      lightweight_share: d(a.lightweightShare),
      reasons: counts(a.reasons),
      model_versions: counts(a.modelVersions),
      mean_confidence: d(a.meanConfidence),
      mean_uncertainty: d(a.meanUncertainty),
      p50_inference_us: d(a.p50InferenceUs),
      p95_inference_us: d(a.p95InferenceUs),
      p99_inference_us: d(a.p99InferenceUs),
      last_decided_at_unix_ms: u(a.lastDecidedAt),
      computed_at_unix_ms: u(a.computedAt),
    };
  }
  if (s.feedback) msg.feedback = feedbackStatsMsg(s.feedback);
  if (s.cost) {
    const c = s.cost;
    msg.cost = {
      lightweight_price: d(c.prices.lightweight),
      heavyweight_price: d(c.prices.heavyweight),
      lightweight_spend: d(c.lightweightSpend),
      heavyweight_spend: d(c.heavyweightSpend),
      spend: d(c.spend),
      all_heavyweight_spend: d(c.allHeavyweightSpend),
      savings: d(c.savings),
      savings_share: d(c.savingsShare),
    };
  }
  if (s.fleet) msg.fleet = fleetTotalsMsg(s.fleet);
  return msg;
}

export function reloadMsg(r: ReloadResult, durationMs: number): ReloadModelResponse {
  const notes = [...(r.notes ?? [])];
  if (r.model.calibration === undefined && !notes.some((n) => /calibrat/i.test(n))) {
    notes.push('the model has no conformal calibration: uncertainty uses the uncalibrated fallback');
  }
  return {
    model: modelMsg(r.model),
    previous_version: r.previousVersion,
    calibrated: r.model.calibration !== undefined,
    notes,
    duration_ms: d(durationMs),
    ...(r.convergence ? { convergence: convergenceMsg(r.convergence) } : {}),
  };
}

// Keys whose value must never leave the process, whatever a target puts in its settings.
const SECRET_KEY = /token|passw(or)?d|secret|authorization|api[-_]?key|credential|private[-_]?key/i;

function render(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined) return '';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export function configMsg(c: ConfigSnapshot, ctx: { mode: string; serviceVersion: string; modelVersion: string }): ConfigView {
  const settings: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.settings)) {
    if (SECRET_KEY.test(k)) {
      settings[k] = v === undefined || v === null ? '' : '[redacted]';
      continue;
    }
    // URL passwords too ("postgres://u:pw@h"), in case a target forgot to mask them.
    settings[k] = render(v).replace(/(\/\/[^:/@\s"']*:)[^@\s"']*@/g, '$1***@');
  }
  const msg: ConfigView = {
    mode: ctx.mode,
    service_version: ctx.serviceVersion,
    model_path: c.modelPath ?? '',
    model_version: ctx.modelVersion,
    thresholds: thresholdsMsg(c.thresholds),
    settings,
  };
  if (c.breaker) msg.breaker = breakerSettingsMsg(c.breaker);
  return msg;
}
