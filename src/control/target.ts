// What the gRPC control plane needs from the process it controls — and nothing more.
//
// WHY an interface: the control plane is served in two very different processes: `serve`
// (Kafka in and out, Postgres log, breaker, worker pool — the App of src/app.ts implements this)
// and a route-only deployment (a RouterPool alone — src/control/standalone.ts implements it).
// The gRPC server (./server.ts) knows only this contract, so it has no Kafka, Postgres or
// worker code in it, and its tests can drive it with a small double.
//
// Plain camelCase TypeScript on purpose: the server converts to and from the protobuf messages
// of proto/tiny_dancer/v1/control.proto (./convert.ts), so implementers never see proto types.
// Times are Unix milliseconds, latencies microseconds.
import { TinyDancerError } from '../errors.js';
import type { RoutingRequest, RoutingResponse } from '../wire/types.js';
import type { FeedbackSnapshot } from '../feedback/service.js';
import type { CostFigures } from '../observe/cost.js';
import type { StoreAggregates } from '../store/stats-cache.js';
import type { FleetTotalsView, FleetViewSnapshot } from './fleet-table.js';

export type HealthStatus = 'SERVING' | 'NOT_SERVING';

export type BreakerStateName = 'closed' | 'open' | 'half_open';

export interface ThresholdsView {
  confidence: number;
  maxUncertainty: number;
}

export interface ThresholdsUpdate {
  confidence?: number;
  maxUncertainty?: number;
}

export interface ModelView {
  version: string;
  /** When this model started serving (Unix ms). */
  loadedAt: number;
  /** A file path, or 'bytes' for a model sent over gRPC. */
  source?: string;
  inputDim?: number;
  hiddenDim?: number;
  features?: string[];
  /** Absent when the model has no conformal calibration. */
  calibration?: { alpha: number; qhat: number; n: number };
}

export interface BreakerSettingsView {
  timeoutMs: number;
  errorThresholdPercentage: number;
  volumeThreshold: number;
  resetTimeoutMs: number;
  rollingWindowMs: number;
}

export interface BreakerView {
  state: BreakerStateName;
  /** Times it opened since start. */
  trips: number;
  /** Requests answered by the heavyweight fallback since start. */
  fallbacks: number;
  /** When it last opened (Unix ms); absent if never. */
  openedAt?: number;
  /** Counts in the rolling window. */
  window?: { successes: number; failures: number; timeouts: number; rejects: number; fallbacks: number };
  settings?: BreakerSettingsView;
}

export interface LatencyView {
  /** Samples the percentiles cover. */
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface TotalsView {
  requests: number;
  decisions: number;
  lightweight: number;
  heavyweight: number;
  /** Requests that could not be answered. */
  failed: number;
  /** Requests refused as invalid (Route calls, DLQ records). */
  rejected: number;
  /** Decisions by reason (model, breaker_open, uncertain, below_threshold). */
  reasons: Record<string, number>;
}

export interface PoolView {
  workers: number;
  inFlight: number;
  queued: number;
  completed: number;
  failed: number;
  crashes: number;
}

export interface StreamView {
  connected: boolean;
  assignedPartitions: number;
  consumed: number;
  produced: number;
  dlq: number;
  /** Absent until first sampled. */
  consumerLag?: number;
  lagSampledAt?: number;
  inFlight: number;
  pausedPartitions: number;
}

export interface DecisionLogView {
  backlog: number;
  written: number;
  failedBatches: number;
  healthy: boolean;
}

/** Postgres aggregates of the decision log, as src/store/stats-cache.ts computes them. */
export type StoreAggregatesView = StoreAggregates;

export interface RatesView {
  windowSeconds: number;
  requestsPerSecond: number;
  decisionsPerSecond: number;
  lightweightShare: number;
  rejectedPerSecond: number;
}

export interface ControlStats {
  /** When the process started serving (Unix ms); uptime is derived from it. */
  startedAt: number;
  model: ModelView;
  thresholds: ThresholdsView;
  totals: TotalsView;
  /** Optional: when absent the server reports lifetime averages (and interval rates in WatchStats). */
  rates?: RatesView;
  engineLatency: LatencyView;
  endToEndLatency?: LatencyView;
  breaker: BreakerView;
  pool?: PoolView;
  /** Kafka side; absent in a route-only deployment. */
  stream?: StreamView;
  /** Postgres decision log; absent in a route-only deployment. */
  decisionLog?: DecisionLogView;
  /** Postgres aggregates; absent in a route-only deployment. Cache them: stats() is called often. */
  store?: StoreAggregatesView;
  /** Live calibration monitoring from outcomes; absent when the feedback loop is off. */
  feedback?: FeedbackSnapshot;
  /** Estimated spend and savings over `totals`; absent when no prices are configured. */
  cost?: CostFigures;
  /** Sums over the fleet's live replicas (the status topic); absent in a route-only deployment. */
  fleet?: FleetTotalsView;
}

export interface ConfigSnapshot {
  modelPath?: string;
  thresholds: ThresholdsView;
  breaker?: BreakerSettingsView;
  /**
   * Every other setting, as plain data. Secrets must already be redacted (e.g. describeConfig
   * of src/config.ts); the server also blanks any key that looks secret, as a second guard.
   */
  settings: Record<string, unknown>;
}

export type ModelSource = { path: string } | { bytes: Uint8Array };

/**
 * How far a fleet-wide change had spread when the call returned. `revision` is the change's
 * offset on the control topic; `live` is 0 when this replica cannot see the fleet (then only
 * `converged: 1`, itself, is known).
 */
export interface ConvergenceView {
  revision: number;
  converged: number;
  live: number;
}

/** Options of a state-changing call. */
export interface ChangeOptions {
  /** Wait up to this long for every live replica to apply the change (0: this replica only). */
  waitMs?: number;
}

export interface ReloadResult {
  /** The model now serving. */
  model: ModelView;
  previousVersion: string;
  /** Remarks for the operator, e.g. that the model has no calibration. */
  notes?: string[];
  /** Set when the change went through the fleet's control topic. */
  convergence?: ConvergenceView;
}

export interface SetThresholdsResult extends ThresholdsView {
  convergence?: ConvergenceView;
}

export interface TenantPolicyView {
  tenant: string;
  confidence: number;
  maxUncertainty: number;
}

export interface PolicyChangeResult {
  tenant: string;
  /** The policy now in force; absent after a delete. */
  policy?: TenantPolicyView;
  /** False when a delete found no such policy. */
  changed: boolean;
  convergence?: ConvergenceView;
}

/**
 * The contract the control plane serves. Every method may throw; a ControlError's `kind`
 * picks the gRPC status, other errors are classified by ./errors.ts (InvalidInputError →
 * INVALID_ARGUMENT, ENOENT → NOT_FOUND, retriable → UNAVAILABLE, else INTERNAL).
 */
export interface ControlTarget {
  /** 'serve' or 'control-only'. */
  readonly mode: string;
  /** A snapshot; called at every GetStats and every WatchStats tick — keep it cheap (cache slow parts). */
  stats(): ControlStats | Promise<ControlStats>;
  /**
   * Validate, then swap atomically; on failure the old model must still be serving. Throw
   * ControlError('not_found' | 'invalid_argument' | 'failed_precondition', message) — or
   * ModelError / an fs error, which the server maps the same way.
   */
  reload(source: ModelSource, opts?: ChangeOptions): Promise<ReloadResult>;
  breaker(): BreakerView;
  resetBreaker(): BreakerView | Promise<BreakerView>;
  config(): ConfigSnapshot;
  /** Values are already checked to be in [0, 1] and at least one is set. Returns the effective thresholds. */
  setThresholds(update: ThresholdsUpdate, opts?: ChangeOptions): Promise<SetThresholdsResult>;
  /**
   * Tenant policies (fleet desired state). Absent in a deployment without a control topic;
   * the server then answers FAILED_PRECONDITION.
   */
  setPolicy?(policy: TenantPolicyView, opts?: ChangeOptions): Promise<PolicyChangeResult>;
  deletePolicy?(tenant: string, opts?: ChangeOptions): Promise<PolicyChangeResult>;
  listPolicies?(): TenantPolicyView[];
  /** Routes one request; InvalidInputError for a request that breaks docs/contracts.md §1. */
  route(request: RoutingRequest): Promise<RoutingResponse>;
  /** SERVING only when every part the deployment needs is usable; NOT_SERVING while draining. */
  health(): HealthStatus;
  /** Calls `listener` on every change of health(); returns the unsubscribe function. */
  onHealthChange(listener: (status: HealthStatus) => void): () => void;
  /** Every replica of the fleet, from the status topic; absent in a route-only deployment. */
  fleet?(opts: { includeStale: boolean }): FleetViewSnapshot;
}

/** The gRPC-mappable failure kinds a target may throw. */
export type ControlErrorKind =
  | 'invalid_argument'
  | 'not_found'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'aborted'
  | 'unavailable'
  | 'permission_denied'
  | 'internal';

/** A failure the control plane reports with a precise status; the message reaches the caller. */
export class ControlError extends TinyDancerError {
  readonly kind: ControlErrorKind;
  constructor(kind: ControlErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retriable: kind === 'unavailable' });
    this.kind = kind;
  }
}
