// A promise-based client of the control plane, for `tiny-dancer admin` and for tests. Every
// failure is an RpcError whose message starts with the gRPC status name, so the CLI can print
// it as the one line an operator needs.
import { Metadata, status as GrpcStatus, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { TinyDancerError } from '../errors.js';
import type { RoutingRequest, RoutingResponse } from '../wire/types.js';
import { statusName } from './errors.js';
import type { FleetMessage } from './fleet-status.js';
import type { BreakerSettings__Output } from './generated/tiny_dancer/v1/BreakerSettings.js';
import type { CircuitBreaker__Output } from './generated/tiny_dancer/v1/CircuitBreaker.js';
import type { ConfigView__Output } from './generated/tiny_dancer/v1/ConfigView.js';
import type { Convergence__Output } from './generated/tiny_dancer/v1/Convergence.js';
import type { LatencySummary__Output } from './generated/tiny_dancer/v1/LatencySummary.js';
import type { ModelInfo__Output } from './generated/tiny_dancer/v1/ModelInfo.js';
import type { ReloadModelResponse__Output } from './generated/tiny_dancer/v1/ReloadModelResponse.js';
import type { Stats__Output } from './generated/tiny_dancer/v1/Stats.js';
import type { TenantPolicies__Output } from './generated/tiny_dancer/v1/TenantPolicies.js';
import type { TenantPolicy__Output } from './generated/tiny_dancer/v1/TenantPolicy.js';
import type { TenantPolicyChange__Output } from './generated/tiny_dancer/v1/TenantPolicyChange.js';
import type { Thresholds__Output } from './generated/tiny_dancer/v1/Thresholds.js';
import { controlClientConstructor, healthClientConstructor } from './proto.js';
import { clientCredentials, DEFAULT_MAX_MESSAGE_BYTES, type ClientTlsFiles } from './tls.js';

// ---- message shapes as received: generated from proto/ (npm run proto:types) with the loader's
// options (snake_case, defaults filled, sub-messages null when absent).

export type ConvergenceMessage = Convergence__Output;
/** Thresholds; in a SetThresholds reply `convergence` only when the change went through the control topic. */
export type ThresholdsMessage = Thresholds__Output & { convergence?: Convergence__Output | null };
export type TenantPolicyMessage = TenantPolicy__Output;
export type TenantPolicyChangeMessage = TenantPolicyChange__Output;
export type ModelInfoMessage = ModelInfo__Output;
export type BreakerSettingsMessage = BreakerSettings__Output;
export type CircuitBreakerMessage = CircuitBreaker__Output;
export type LatencyMessage = LatencySummary__Output;
export type StatsMessage = Stats__Output;
export type ReloadMessage = ReloadModelResponse__Output;
export type ConfigMessage = ConfigView__Output;
export type TenantPoliciesMessage = TenantPolicies__Output;
export type { FleetMessage, FleetTotalsMessage, ReplicaStatusMessage } from './fleet-status.js';

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

  listTenantPolicies(): Promise<TenantPoliciesMessage> {
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
