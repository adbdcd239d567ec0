// The control plane for route-only deployments: a RouterPool alone — no Kafka, no Postgres —
// served over gRPC (Route, stats, hot reload, thresholds, breaker, health, reflection).
//
// PoolControlTarget implements ControlTarget over a pool, with the same circuit breaker
// semantics as `serve`: engine calls go through an opossum breaker whose fallback answers every
// candidate heavyweight with reason `breaker_open`, so a failing engine degrades to the safe
// route instead of failing requests. Requests are validated on this thread first: a bad request
// is INVALID_ARGUMENT and never counts against the breaker.
//
// `startControlOnly(opts)` builds the whole thing (pool + target + server); the CLI's
// `serve --control-only` calls it.
import { ScoringBreaker } from '../stream/breaker.js';
import { InvalidInputError, errorMessage } from '../errors.js';
import { DEFAULT_THRESHOLDS } from '../engine/decide.js';
import { defaultModelPath, type LoadedModel } from '../engine/model.js';
import { RouterPool } from '../engine/pool/pool.js';
import type { RoutingRequest, RoutingResponse } from '../engine/types.js';
import { validateRequest, type ValidatedRequest } from '../engine/validate.js';
import { silentLogger, type Logger } from '../observe/logger.js';
import type { TokenSource } from './auth.js';
import { LatencyWindow } from './latency.js';
import { modelNotes, modelView, prepareModel } from './reload.js';
import { startControlServer, type ControlServer, type WatchOptions } from './server.js';
import {
  ControlError,
  type BreakerSettingsView,
  type BreakerView,
  type ConfigSnapshot,
  type ControlStats,
  type ControlTarget,
  type HealthStatus,
  type ModelSource,
  type ModelView,
  type ReloadResult,
  type ThresholdsUpdate,
  type ThresholdsView,
} from './target.js';
import type { ServerTlsFiles } from './tls.js';

/** What the adapter needs of a RouterPool (src/engine/pool) — structural, so tests may pass their own. */
export interface RoutingPool {
  route(request: ValidatedRequest): Promise<RoutingResponse>;
  reload(source: string | { bytes: Uint8Array; source?: string }): Promise<{ version: string }>;
  setThresholds(t: ThresholdsUpdate): Promise<void>;
  readonly modelVersion: string;
  /** Thresholds in force in the workers, when the pool reports them. */
  readonly thresholds?: ThresholdsView;
  stats(): { workers: number; inFlight: number; queued: number; completed: number; failed: number; crashes: number };
  close(opts?: { timeout?: number }): Promise<void>;
}

/** The defaults of src/config.ts (TD_BREAKER_*), so both deployments behave alike. */
export const DEFAULT_BREAKER_SETTINGS: Readonly<BreakerSettingsView> = Object.freeze({
  timeoutMs: 2000,
  errorThresholdPercentage: 50,
  volumeThreshold: 20,
  resetTimeoutMs: 10_000,
  rollingWindowMs: 10_000,
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

function emptyReasons(): Record<string, number> {
  return { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 };
}

export class PoolControlTarget implements ControlTarget {
  readonly mode = 'control-only';
  readonly #pool: RoutingPool;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #startedAt: number;
  readonly #breakerSettings: BreakerSettingsView;
  readonly #breaker: ScoringBreaker;
  readonly #settings: Record<string, unknown>;
  #model: LoadedModel;
  #modelView: ModelView;
  #overrides: ThresholdsUpdate;
  #draining = false;
  #health: HealthStatus = 'SERVING';
  readonly #listeners = new Set<(s: HealthStatus) => void>();
  // Counters (lifetime).
  #requests = 0;
  #decisions = 0;
  #lightweight = 0;
  #failed = 0;
  #rejected = 0;
  #reasons = emptyReasons();
  readonly #engineLatency = new LatencyWindow();
  readonly #e2eLatency = new LatencyWindow();

  constructor(opts: PoolControlTargetOptions) {
    this.#pool = opts.pool;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger?.child({ component: 'control-target' });
    this.#startedAt = this.#now();
    this.#model = opts.model;
    this.#modelView = modelView(opts.model, this.#startedAt, opts.modelSource);
    this.#overrides = { ...(opts.thresholds ?? {}) };
    this.#settings = { ...(opts.settings ?? {}) };
    const s = (this.#breakerSettings = { ...DEFAULT_BREAKER_SETTINGS, ...(opts.breaker ?? {}) });
    // The breaker `serve` uses (same settings, same heavyweight breaker_open answer); only
    // validated requests reach it here.
    this.#breaker = new ScoringBreaker(
      (task) => (task.kind === 'validated' ? this.#pool.route(task.request) : Promise.reject(new InvalidInputError('the control plane routes validated requests only'))),
      {
        timeoutMs: s.timeoutMs,
        errorThresholdPercentage: s.errorThresholdPercentage,
        volumeThreshold: s.volumeThreshold,
        resetTimeoutMs: s.resetTimeoutMs,
        rollingCountTimeoutMs: s.rollingWindowMs,
        logger: this.#log ?? silentLogger,
        modelVersion: () => this.#model.version,
      },
    );
  }

  async route(request: RoutingRequest): Promise<RoutingResponse> {
    const t0 = performance.now();
    let validated: ValidatedRequest;
    try {
      validated = validateRequest(request);
    } catch (err) {
      this.#rejected++;
      throw err;
    }
    let res: RoutingResponse;
    try {
      res = (await this.#breaker.score({ kind: 'validated', request: validated })).response;
    } catch (err) {
      if (err instanceof InvalidInputError) this.#rejected++;
      else this.#failed++;
      throw err;
    }
    this.#requests++;
    for (const d of res.decisions) {
      this.#decisions++;
      if (d.use_lightweight) this.#lightweight++;
      this.#reasons[d.reason] = (this.#reasons[d.reason] ?? 0) + 1;
    }
    if (res.decisions[0]?.reason !== 'breaker_open') this.#engineLatency.record(res.inference_time_us);
    this.#e2eLatency.record((performance.now() - t0) * 1000);
    return res;
  }

  async reload(source: ModelSource): Promise<ReloadResult> {
    if (this.#draining) throw new ControlError('failed_precondition', 'the service is draining; no model reload now');
    const prepared = await prepareModel(source);
    const previousVersion = this.#model.version;
    try {
      await this.#pool.reload({ bytes: prepared.bytes, source: prepared.source });
    } catch (err) {
      // Validated above, so this is the pool (closing, a crash): the old model still serves.
      throw err instanceof ControlError || err instanceof InvalidInputError
        ? err
        : new ControlError('unavailable', `the worker pool could not swap the model: ${errorMessage(err)}`, { cause: err });
    }
    this.#model = prepared.model;
    this.#modelView = modelView(prepared.model, this.#now(), prepared.source);
    return { model: this.#modelView, previousVersion, notes: modelNotes(prepared.model) };
  }

  #breakerView(): BreakerView {
    const b = this.#breaker.snapshot();
    const view: BreakerView = {
      state: b.state,
      trips: b.trips,
      fallbacks: b.fallbacks,
      window: { successes: b.window.successes, failures: b.window.failures, timeouts: b.window.timeouts, rejects: b.window.rejects, fallbacks: b.window.fallbacks },
      settings: { ...this.#breakerSettings },
    };
    if (b.openedAt !== undefined) view.openedAt = b.openedAt;
    return view;
  }

  breaker(): BreakerView {
    return this.#breakerView();
  }

  resetBreaker(): BreakerView {
    this.#breaker.reset();
    return this.#breakerView();
  }

  #thresholds(): ThresholdsView {
    // The pool's own view is authoritative (it resolves model metadata ← options ← updates
    // exactly as its workers do); the fallback mirrors that rule.
    const fromPool = this.#pool.thresholds;
    if (fromPool) return { confidence: fromPool.confidence, maxUncertainty: fromPool.maxUncertainty };
    const m = this.#model.thresholds ?? {};
    return {
      confidence: this.#overrides.confidence ?? m.confidence ?? DEFAULT_THRESHOLDS.confidence,
      maxUncertainty: this.#overrides.maxUncertainty ?? m.maxUncertainty ?? DEFAULT_THRESHOLDS.maxUncertainty,
    };
  }

  async setThresholds(update: ThresholdsUpdate): Promise<ThresholdsView> {
    if (this.#draining) throw new ControlError('failed_precondition', 'the service is draining; thresholds are not changed now');
    await this.#pool.setThresholds(update);
    if (update.confidence !== undefined) this.#overrides.confidence = update.confidence;
    if (update.maxUncertainty !== undefined) this.#overrides.maxUncertainty = update.maxUncertainty;
    return this.#thresholds();
  }

  config(): ConfigSnapshot {
    const snap: ConfigSnapshot = {
      thresholds: this.#thresholds(),
      breaker: { ...this.#breakerSettings },
      settings: { ...this.#settings, workers: this.#pool.stats().workers },
    };
    if (this.#modelView.source !== undefined && this.#modelView.source !== 'bytes') snap.modelPath = this.#modelView.source;
    return snap;
  }

  stats(): ControlStats {
    return {
      startedAt: this.#startedAt,
      model: { ...this.#modelView },
      thresholds: this.#thresholds(),
      totals: {
        requests: this.#requests,
        decisions: this.#decisions,
        lightweight: this.#lightweight,
        heavyweight: this.#decisions - this.#lightweight,
        failed: this.#failed,
        rejected: this.#rejected,
        reasons: { ...this.#reasons },
      },
      engineLatency: this.#engineLatency.summary(),
      endToEndLatency: this.#e2eLatency.summary(),
      breaker: this.#breakerView(),
      pool: { ...this.#pool.stats() },
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
    this.#draining = true;
    this.#setHealth('NOT_SERVING');
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Stops the breaker's timers. The pool is the caller's to close. */
  close(): void {
    this.drain();
    this.#breaker.shutdown();
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
