// A promise-based client of the control plane, for `tiny-dancer admin` and for tests. Every
// failure is an RpcError whose message starts with the gRPC status name, so the CLI can print
// it as the one line an operator needs.
import { Metadata, status as GrpcStatus, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { TinyDancerError } from '../errors.js';
import type { RoutingRequest, RoutingResponse } from '../wire/types.js';
import { statusName } from './errors.js';
import type { FleetMessage, FleetTotalsMessage } from './fleet-status.js';
import { controlClientConstructor, healthClientConstructor } from './proto.js';
import { clientCredentials, DEFAULT_MAX_MESSAGE_BYTES, type ClientTlsFiles } from './tls.js';

// ---- message shapes as received (proto-loader: snake_case, defaults filled, sub-messages null when absent)

export interface ConvergenceMessage {
  revision: number;
  converged: number;
  /** 0 when the replica cannot see the fleet. */
  live: number;
}
export interface ThresholdsMessage {
  confidence: number;
  max_uncertainty: number;
  /** Only in a SetThresholds reply that went through the control topic. */
  convergence?: ConvergenceMessage | null;
}
export interface TenantPolicyMessage {
  tenant: string;
  confidence: number;
  max_uncertainty: number;
}
export interface TenantPolicyChangeMessage {
  tenant: string;
  policy: TenantPolicyMessage | null;
  changed: boolean;
  convergence: ConvergenceMessage | null;
}
export interface ModelInfoMessage {
  version: string;
  loaded_at_unix_ms: number;
  source: string;
  input_dim: number;
  hidden_dim: number;
  features: string[];
  calibrated: boolean;
  calibration_alpha: number;
  calibration_qhat: number;
  calibration_n: number;
}
export interface BreakerSettingsMessage {
  timeout_ms: number;
  error_threshold_percentage: number;
  volume_threshold: number;
  reset_timeout_ms: number;
  rolling_window_ms: number;
}
export interface CircuitBreakerMessage {
  state: 'BREAKER_STATE_UNSPECIFIED' | 'BREAKER_STATE_CLOSED' | 'BREAKER_STATE_OPEN' | 'BREAKER_STATE_HALF_OPEN';
  trips: number;
  fallbacks: number;
  opened_at_unix_ms: number;
  window: { successes: number; failures: number; timeouts: number; rejects: number; fallbacks: number } | null;
  settings: BreakerSettingsMessage | null;
}
export interface LatencyMessage {
  count: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
}
export interface StatsMessage {
  mode: string;
  service_version: string;
  time_unix_ms: number;
  started_at_unix_ms: number;
  uptime_seconds: number;
  health: string;
  model: ModelInfoMessage | null;
  thresholds: ThresholdsMessage | null;
  totals: {
    requests: number;
    decisions: number;
    lightweight: number;
    heavyweight: number;
    failed: number;
    rejected: number;
    reasons: Record<string, number>;
  } | null;
  rates: {
    window_seconds: number;
    requests_per_second: number;
    decisions_per_second: number;
    lightweight_share: number;
    rejected_per_second: number;
  } | null;
  lightweight_share: number;
  engine_latency: LatencyMessage | null;
  end_to_end_latency: LatencyMessage | null;
  breaker: CircuitBreakerMessage | null;
  pool: { workers: number; in_flight: number; queued: number; completed: number; failed: number; crashes: number } | null;
  stream: {
    connected: boolean;
    assigned_partitions: number;
    consumed: number;
    produced: number;
    dlq: number;
    consumer_lag?: number;
    lag_sampled_at_unix_ms: number;
    in_flight: number;
    paused_partitions: number;
  } | null;
  decision_log: { backlog: number; written: number; failed_batches: number; healthy: boolean } | null;
  /** Rolling calibration monitoring from outcomes. */
  feedback?: {
    window: number;
    epsilon: number;
    min_samples: number;
    versions: {
      version: string;
      calibrated: boolean;
      alpha: number;
      qhat: number;
      target_coverage: number;
      drift_threshold: number;
      outcomes: number;
      labeled: number;
      coverage?: number | null;
      lightweight_samples: number;
      lightweight_success_rate?: number | null;
      calibration_error?: number | null;
      drifting: boolean;
      drift_events: number;
    }[];
    outcomes_stored: number;
    outcomes_duplicate: number;
    outcomes_rejected: number;
    outcomes_unjoined: number;
    pending_joins: number;
    consumer_joined: boolean;
  } | null;
  /** Estimated spend and savings; absent (null) when the server has no prices configured. */
  cost?: {
    lightweight_price: number;
    heavyweight_price: number;
    lightweight_spend: number;
    heavyweight_spend: number;
    spend: number;
    all_heavyweight_spend: number;
    savings: number;
    savings_share: number;
  } | null;
  store: {
    available: boolean;
    error: string;
    window_seconds: number;
    decisions: number;
    requests: number;
    lightweight_share: number;
    reasons: Record<string, number>;
    model_versions: Record<string, number>;
    mean_confidence: number;
    mean_uncertainty: number;
    p50_inference_us: number;
    p95_inference_us: number;
    p99_inference_us: number;
    last_decided_at_unix_ms: number;
    computed_at_unix_ms: number;
  } | null;
  /** Sums over the fleet's live replicas; absent in a route-only deployment. */
  fleet?: FleetTotalsMessage | null;
}

export type { FleetMessage, FleetTotalsMessage, ReplicaStatusMessage } from './fleet-status.js';
export interface ReloadMessage {
  model: ModelInfoMessage | null;
  previous_version: string;
  calibrated: boolean;
  notes: string[];
  duration_ms: number;
  /** Set when the model went through the fleet's control topic. */
  convergence?: ConvergenceMessage | null;
}
export interface ConfigMessage {
  mode: string;
  service_version: string;
  model_path: string;
  model_version: string;
  thresholds: ThresholdsMessage | null;
  breaker: BreakerSettingsMessage | null;
  settings: Record<string, string>;
}

/** A failed call: `code` is the gRPC status; the message reads "STATUS_NAME: details". */
export class RpcError extends TinyDancerError {
  readonly code: number;
  readonly status: string;
  readonly details: string;
  constructor(code: number, details: string, options: { cause?: unknown } = {}) {
    const name = statusName(code);
    super(`${name}: ${details}`, { ...options, retriable: code === GrpcStatus.UNAVAILABLE || code === GrpcStatus.DEADLINE_EXCEEDED });
    this.code = code;
    this.status = name;
    this.details = details;
  }
}

function rpcError(err: ServiceError): RpcError {
  return new RpcError(err.code ?? GrpcStatus.UNKNOWN, err.details || err.message, { cause: err });
}

export interface ControlClientOptions {
  /** host:port of the control plane. */
  address: string;
  /** TD_ADMIN_TOKEN, sent as `authorization: Bearer <token>` on every call when set. */
  token?: string;
  /** TLS (and mutual TLS); plaintext when absent. */
  tls?: ClientTlsFiles;
  /** Deadline of each unary call (ms). Default 10 000. */
  deadlineMs?: number;
  /** Largest message sent or received. Default 32 MiB. */
  maxMessageBytes?: number;
}

type UnaryFn = (req: unknown, md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res: unknown) => void) => void;

export class ControlClient {
  readonly #client: Client;
  readonly #health: Client;
  readonly #token: string | undefined;
  readonly #deadlineMs: number;

  constructor(opts: ControlClientOptions) {
    const { creds, options } = clientCredentials(opts.tls);
    const max = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const channelOptions = { ...options, 'grpc.max_receive_message_length': max, 'grpc.max_send_message_length': max };
    const Ctor = controlClientConstructor();
    this.#client = new Ctor(opts.address, creds, channelOptions);
    const Health = healthClientConstructor();
    // One channel for both services.
    this.#health = new Health(opts.address, creds, { ...channelOptions, channelOverride: this.#client.getChannel() });
    this.#token = opts.token;
    this.#deadlineMs = opts.deadlineMs ?? 10_000;
  }

  #metadata(): Metadata {
    const md = new Metadata();
    if (this.#token !== undefined) md.set('authorization', `Bearer ${this.#token}`);
    return md;
  }

  #unary<T>(client: Client, method: string, req: unknown): Promise<T> {
    const fn = (client as unknown as Record<string, UnaryFn>)[method]!.bind(client);
    return new Promise<T>((resolve, reject) => {
      fn(req, this.#metadata(), { deadline: Date.now() + this.#deadlineMs }, (err, res) => (err ? reject(rpcError(err)) : resolve(res as T)));
    });
  }

  getStats(): Promise<StatsMessage> {
    return this.#unary(this.#client, 'GetStats', {});
  }

  /** `waitMs`: wait up to that long for every live replica of the fleet to apply it. */
  reloadModel(source: { path: string } | { bytes: Uint8Array }, opts: { waitMs?: number } = {}): Promise<ReloadMessage> {
    const req = 'path' in source ? { path: source.path } : { model: Buffer.from(source.bytes.buffer, source.bytes.byteOffset, source.bytes.byteLength) };
    return this.#unary(this.#client, 'ReloadModel', { ...req, wait_ms: opts.waitMs ?? 0 });
  }

  getCircuitBreaker(): Promise<CircuitBreakerMessage> {
    return this.#unary(this.#client, 'GetCircuitBreaker', {});
  }

  resetCircuitBreaker(): Promise<CircuitBreakerMessage> {
    return this.#unary(this.#client, 'ResetCircuitBreaker', {});
  }

  getConfig(): Promise<ConfigMessage> {
    return this.#unary(this.#client, 'GetConfig', {});
  }

  async setThresholds(t: { confidence?: number; maxUncertainty?: number }, opts: { waitMs?: number } = {}): Promise<ThresholdsMessage> {
    const req: Record<string, number> = { wait_ms: opts.waitMs ?? 0 };
    if (t.confidence !== undefined) req.confidence = t.confidence;
    if (t.maxUncertainty !== undefined) req.max_uncertainty = t.maxUncertainty;
    // The reply reads as Thresholds; `convergence` only when the change went through the fleet.
    const res = await this.#unary<ThresholdsMessage>(this.#client, 'SetThresholds', req);
    if (res.convergence == null) delete res.convergence;
    return res;
  }

  setTenantPolicy(p: { tenant: string; confidence: number; maxUncertainty: number }, opts: { waitMs?: number } = {}): Promise<TenantPolicyChangeMessage> {
    return this.#unary(this.#client, 'SetTenantPolicy', { policy: { tenant: p.tenant, confidence: p.confidence, max_uncertainty: p.maxUncertainty }, wait_ms: opts.waitMs ?? 0 });
  }

  deleteTenantPolicy(tenant: string, opts: { waitMs?: number } = {}): Promise<TenantPolicyChangeMessage> {
    return this.#unary(this.#client, 'DeleteTenantPolicy', { tenant, wait_ms: opts.waitMs ?? 0 });
  }

  listTenantPolicies(): Promise<{ policies: TenantPolicyMessage[] }> {
    return this.#unary(this.#client, 'ListTenantPolicies', {});
  }

  route(request: RoutingRequest): Promise<RoutingResponse> {
    const req = {
      ...request,
      query_embedding: Array.from(request.query_embedding),
      candidates: request.candidates.map((c) => ({ ...c, embedding: Array.from(c.embedding) })),
    };
    return this.#unary(this.#client, 'Route', req);
  }

  /** GetFleet: the live replicas (and the stale ones with `includeStale`), with their sums. */
  getFleet(includeStale = false): Promise<FleetMessage> {
    return this.#unary(this.#client, 'GetFleet', { include_stale: includeStale });
  }

  /** grpc.health.v1.Health/Check: 'SERVING', 'NOT_SERVING', ... */
  async health(service = ''): Promise<string> {
    const res = await this.#unary<{ status: string }>(this.#health, 'check', { service });
    return res.status;
  }

  /**
   * WatchStats: `onStats` for every message; the promise settles when the stream ends
   * (resolves on cancel() or a normal end, rejects with RpcError otherwise).
   */
  watchStats(intervalMs: number, onStats: (s: StatsMessage) => void): { cancel(): void; done: Promise<void> } {
    const call = (this.#client as unknown as Record<string, (req: unknown, md: Metadata) => ClientReadableStream<StatsMessage>>)
      .WatchStats!.call(this.#client, { interval_ms: intervalMs }, this.#metadata());
    let cancelled = false;
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (s: StatsMessage) => onStats(s));
      call.on('error', (err: ServiceError) => {
        if (cancelled && err.code === GrpcStatus.CANCELLED) resolve();
        else reject(rpcError(err));
      });
      call.on('end', () => resolve());
    });
    return {
      cancel() {
        cancelled = true;
        call.cancel();
      },
      done,
    };
  }

  /** Waits until the channel is connected (or the deadline passes). */
  waitForReady(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(new RpcError(GrpcStatus.UNAVAILABLE, err.message, { cause: err })) : resolve()));
    });
  }

  close(): void {
    this.#health.close();
    this.#client.close();
  }
}
