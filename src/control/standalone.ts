// The control plane for route-only deployments: a RouterPool alone — no Kafka, no Postgres —
// served over gRPC (Route, stats, hot reload, thresholds, breaker, health, reflection).
//
// PoolControlTarget implements ControlTarget over a pool through the same ControlCore (./core.ts)
// as `serve`: engine calls go through the opossum breaker whose fallback answers every candidate
// heavyweight with reason `breaker_open`; a bad request is INVALID_ARGUMENT and never counts
// against the breaker. A reload here changes this process only: it has no Kafka, so no fleet.
//
// `startControlOnly(opts)` builds the whole thing (pool + target + server); the CLI's
// `serve --control-only` calls it.
import { defaultModelPath, type LoadedModel } from '../engine/model.js';
import { RouterPool } from '../engine/pool/pool.js';
import type { RoutingRequest, RoutingResponse } from '../engine/types.js';
import type { Logger } from '../observe/logger.js';
import type { TokenSource } from './auth.js';
import { ControlCore, DEFAULT_BREAKER_CONFIG, type RoutingPool } from './core.js';
import { prepareModel } from './reload.js';
import { startControlServer, type ControlServer, type WatchOptions } from './server.js';
import type {
  BreakerSettingsView,
  BreakerView,
  ConfigSnapshot,
  ControlStats,
  ControlTarget,
  HealthStatus,
  ModelSource,
  ReloadResult,
  ThresholdsUpdate,
  ThresholdsView,
} from './target.js';
import type { ServerTlsFiles } from './tls.js';

export type { RoutingPool } from './core.js';

/** The defaults of src/config.ts (TD_BREAKER_*), so both deployments behave alike. */
export const DEFAULT_BREAKER_SETTINGS: Readonly<BreakerSettingsView> = Object.freeze({
  timeoutMs: DEFAULT_BREAKER_CONFIG.timeoutMs,
  errorThresholdPercentage: DEFAULT_BREAKER_CONFIG.errorThresholdPercentage,
  volumeThreshold: DEFAULT_BREAKER_CONFIG.volumeThreshold,
  resetTimeoutMs: DEFAULT_BREAKER_CONFIG.resetTimeoutMs,
  rollingWindowMs: DEFAULT_BREAKER_CONFIG.rollingCountTimeoutMs,
});

export interface PoolControlTargetOptions {
  pool: RoutingPool;
  /** The model the pool was started with (for stats and reload replies). */
  model: LoadedModel;
  /** Where it came from (path or 'bytes'). */
  modelSource: string;
  /** Thresholds the pool was started with (they override the model's own). */
  thresholds?: ThresholdsUpdate;
  breaker?: Partial<BreakerSettingsView>;
  /** Extra settings shown by GetConfig (plain data, no secrets). */
  settings?: Record<string, unknown>;
  logger?: Logger;
  /** Clock (Unix ms), for tests. */
  now?: () => number;
}

/** ControlTarget over a pool alone: everything but health is the shared ControlCore. */
export class PoolControlTarget implements ControlTarget {
  readonly mode = 'control-only';
  readonly core: ControlCore;
  readonly #startedAt: number;
  readonly #settings: Record<string, unknown>;
  #health: HealthStatus = 'SERVING';
  readonly #listeners = new Set<(s: HealthStatus) => void>();

  constructor(opts: PoolControlTargetOptions) {
    const now = opts.now ?? Date.now;
    this.#startedAt = now();
    this.#settings = { ...(opts.settings ?? {}) };
    const b = { ...DEFAULT_BREAKER_SETTINGS, ...(opts.breaker ?? {}) };
    this.core = new ControlCore({
      pool: opts.pool,
      model: opts.model,
      modelSource: opts.modelSource,
      ...(opts.thresholds ? { thresholds: opts.thresholds } : {}),
      breaker: {
        timeoutMs: b.timeoutMs,
        errorThresholdPercentage: b.errorThresholdPercentage,
        volumeThreshold: b.volumeThreshold,
        resetTimeoutMs: b.resetTimeoutMs,
        rollingCountTimeoutMs: b.rollingWindowMs,
      },
      ...(opts.logger ? { logger: opts.logger.child({ component: 'control-target' }) } : {}),
      now,
    });
  }

  route(request: RoutingRequest): Promise<RoutingResponse> {
    return this.core.route(request);
  }

  async reload(source: ModelSource): Promise<ReloadResult> {
    const prepared = await prepareModel(source);
    return this.core.applyModel(prepared);
  }

  breaker(): BreakerView {
    return this.core.breakerView();
  }

  resetBreaker(): BreakerView {
    return this.core.resetBreaker();
  }

  setThresholds(update: ThresholdsUpdate): Promise<ThresholdsView> {
    return this.core.setThresholds(update);
  }

  config(): ConfigSnapshot {
    const view = this.core.modelView();
    const snap: ConfigSnapshot = {
      thresholds: this.core.thresholds(),
      breaker: { ...this.core.breakerView().settings! },
      settings: { ...this.#settings, workers: this.core.pool.stats().workers },
    };
    if (view.source !== undefined && view.source !== 'bytes') snap.modelPath = view.source;
    return snap;
  }

  stats(): ControlStats {
    const latency = this.core.latency();
    return {
      startedAt: this.#startedAt,
      model: this.core.modelView(),
      thresholds: this.core.thresholds(),
      totals: this.core.routeTotals(),
      engineLatency: latency.engine,
      endToEndLatency: latency.endToEnd,
      breaker: this.core.breakerView(),
      pool: { ...this.core.pool.stats() },
    };
  }

  health(): HealthStatus {
    return this.#health;
  }

  onHealthChange(listener: (status: HealthStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #setHealth(s: HealthStatus): void {
    if (s === this.#health) return;
    this.#health = s;
    for (const l of [...this.#listeners]) l(s);
  }

  /** Stops accepting admin changes and reports NOT_SERVING; Route keeps answering until close. */
  drain(): void {
    this.core.drain();
    this.#setHealth('NOT_SERVING');
  }

  get draining(): boolean {
    return this.core.draining;
  }

  /** Stops the breaker's timers. The pool is the caller's to close. */
  close(): void {
    this.drain();
    this.core.shutdown();
  }
}

export interface ControlOnlyOptions {
  /** Model file; default the package's models/default.safetensors. */
  modelPath?: string;
  workers?: number;
  thresholds?: ThresholdsUpdate;
  breaker?: Partial<BreakerSettingsView>;
  /** host:port; default 127.0.0.1:50051. */
  address?: string;
  adminToken?: TokenSource;
  tls?: ServerTlsFiles;
  maxMessageBytes?: number;
  watch?: WatchOptions;
  logger?: Logger;
  /** Use this pool instead of creating one (it is then closed with the rest). */
  pool?: RoutingPool;
}

export interface ControlOnly {
  readonly server: ControlServer;
  readonly target: PoolControlTarget;
  readonly pool: RoutingPool;
  /** NOT_SERVING, then the server (in-flight calls finish), then the pool. Idempotent. */
  close(opts?: { timeoutMs?: number }): Promise<void>;
}

/** Route-only deployment: RouterPool + control plane, nothing else. */
export async function startControlOnly(opts: ControlOnlyOptions = {}): Promise<ControlOnly> {
  const modelPath = opts.modelPath ?? defaultModelPath();
  // Validate here first, so a bad model file fails start-up with the same precise message a
  // ReloadModel would give.
  const prepared = await prepareModel({ path: modelPath });
  let pool = opts.pool;
  if (!pool) {
    pool = await RouterPool.create({
      model: { bytes: prepared.bytes, source: modelPath },
      ...(opts.workers === undefined ? {} : { workers: opts.workers }),
      ...(opts.thresholds?.confidence === undefined ? {} : { confidenceThreshold: opts.thresholds.confidence }),
      ...(opts.thresholds?.maxUncertainty === undefined ? {} : { maxUncertainty: opts.thresholds.maxUncertainty }),
    });
  }
  const target = new PoolControlTarget({
    pool,
    model: prepared.model,
    modelSource: modelPath,
    ...(opts.thresholds ? { thresholds: opts.thresholds } : {}),
    ...(opts.breaker ? { breaker: opts.breaker } : {}),
    settings: { mode: 'control-only', grpcAddr: opts.address ?? '127.0.0.1:50051', tls: opts.tls ? (opts.tls.caFile ? 'mutual' : 'server') : 'off' },
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  let server: ControlServer;
  try {
    server = await startControlServer({
      target,
      ...(opts.address === undefined ? {} : { address: opts.address }),
      adminToken: opts.adminToken,
      ...(opts.tls ? { tls: opts.tls } : {}),
      ...(opts.maxMessageBytes === undefined ? {} : { maxMessageBytes: opts.maxMessageBytes }),
      ...(opts.watch ? { watch: opts.watch } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  } catch (err) {
    target.close();
    await pool.close({ timeout: 1000 });
    throw err;
  }
  const p = pool;
  let closing: Promise<void> | undefined;
  return {
    server,
    target,
    pool: p,
    close(closeOpts: { timeoutMs?: number } = {}) {
      closing ??= (async () => {
        target.drain();
        await server.close(closeOpts);
        target.close();
        await p.close({ timeout: closeOpts.timeoutMs ?? 5000 });
      })();
      return closing;
    },
  };
}
