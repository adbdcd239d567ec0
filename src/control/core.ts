// The control core: the ONE implementation of what both deployments' control targets do with a
// router pool — route through the circuit breaker and count, swap the model, set and report
// thresholds, show and reset the breaker. `serve` (src/app.ts) and `serve --control-only`
// (./standalone.ts) each hold a ControlCore and delegate to it, so the two cannot answer the
// same call differently: same counters (failed included), same rule for which latency counts
// as the engine's (a breaker fallback never does), same errors passed through on reload.
//
// What differs between the deployments stays outside: where a model change comes from (a
// direct reload, or the fleet's desired state on the control topic), Kafka and Postgres views,
// health.
import { InvalidInputError, errorMessage } from '../errors.js';
import type { BreakerConfig } from '../config.js';
import { DEFAULT_THRESHOLDS } from '../engine/decide.js';
import type { LoadedModel } from '../engine/model.js';
import type { RoutingRequest, RoutingResponse } from '../engine/types.js';
import { validateRequest, type ValidatedRequest } from '../engine/validate.js';
import { silentLogger, type Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { ScoringBreaker, type Scorer } from '../resilience/breaker.js';
import { LatencyWindow } from './latency.js';
import { modelNotes, modelView, type PreparedModel } from './reload.js';
import {
  ControlError,
  type BreakerStateName,
  type BreakerView,
  type LatencyView,
  type ModelView,
  type ReloadResult,
  type ThresholdsUpdate,
  type ThresholdsView,
  type TotalsView,
} from './target.js';

/** What the core needs of a RouterPool (src/engine/pool) — structural, so tests may pass their own. */
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

/** A pool that can also decode and validate records on its workers (RouterPool does). */
type EncodedPool = RoutingPool & { routeEncoded?: (bytes: Uint8Array, contentType: 'json' | 'protobuf') => Promise<RoutingResponse> };

/** The defaults of src/config.ts (TD_BREAKER_*), so both deployments behave alike. */
export const DEFAULT_BREAKER_CONFIG: Readonly<BreakerConfig> = Object.freeze({
  timeoutMs: 2000,
  errorThresholdPercentage: 50,
  volumeThreshold: 20,
  resetTimeoutMs: 10_000,
  rollingCountTimeoutMs: 10_000,
});

export interface ControlCoreOptions {
  pool: RoutingPool;
  /** The model the pool was started with, validated. */
  model: LoadedModel;
  /** Where it came from (a path, 'bytes' or 'control-topic'). */
  modelSource: string;
  /** Thresholds the pool was started with (they override the model's own). */
  thresholds?: ThresholdsUpdate;
  breaker?: Partial<BreakerConfig>;
  /** Wraps the scorer the breaker protects (failure injection in tests). */
  wrapScorer?: (scorer: Scorer) => Scorer;
  onBreakerState?: (state: BreakerStateName) => void;
  /** The policy a request is decided under, for the breaker's fallback decisions. */
  policyOf?: (req: ValidatedRequest) => string;
  metrics?: Metrics;
  logger?: Logger;
  now?: () => number;
}

function emptyReasons(): Record<string, number> {
  return { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 };
}

export class ControlCore {
  readonly breaker: ScoringBreaker;
  readonly engineLatency = new LatencyWindow();
  readonly endToEndLatency = new LatencyWindow();
  readonly #pool: RoutingPool;
  readonly #now: () => number;
  readonly #log: Logger;
  #model: LoadedModel;
  #modelView: ModelView;
  readonly #overrides: ThresholdsUpdate;
  #draining = false;
  readonly #counts = { requests: 0, decisions: 0, lightweight: 0, failed: 0, rejected: 0, reasons: emptyReasons() };

  constructor(opts: ControlCoreOptions) {
    this.#pool = opts.pool;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger ?? silentLogger;
    this.#model = opts.model;
    this.#modelView = modelView(opts.model, this.#now(), opts.modelSource);
    this.#overrides = { ...(opts.thresholds ?? {}) };
    const pool = opts.pool as EncodedPool;
    const routeEncoded = pool.routeEncoded?.bind(pool);
    const scorer: Scorer = (task) =>
      task.kind === 'validated'
        ? pool.route(task.request)
        : routeEncoded
          ? routeEncoded(task.bytes, task.encoding)
          : Promise.reject(new Error('the pool cannot decode records; the core routes validated requests only'));
    this.breaker = new ScoringBreaker(opts.wrapScorer ? opts.wrapScorer(scorer) : scorer, {
      ...DEFAULT_BREAKER_CONFIG,
      ...(opts.breaker ?? {}),
      logger: this.#log,
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      modelVersion: () => this.#pool.modelVersion,
      ...(opts.onBreakerState ? { onStateChange: opts.onBreakerState } : {}),
      ...(opts.policyOf ? { policyOf: opts.policyOf } : {}),
    });
  }

  get pool(): RoutingPool {
    return this.#pool;
  }

  get model(): LoadedModel {
    return this.#model;
  }

  modelView(): ModelView {
    return { ...this.#modelView };
  }

  /** Refuses admin changes from now on (the service is stopping). */
  drain(): void {
    this.#draining = true;
  }

  get draining(): boolean {
    return this.#draining;
  }

  #refuseWhileDraining(what: string): void {
    if (this.#draining) throw new ControlError('failed_precondition', `the service is draining; ${what}`);
  }

  // ---- routing -------------------------------------------------------------------------------

  /**
   * Routes one request through the breaker. A request that breaks the request contract is
   * InvalidInputError (counted rejected, never against the breaker); any other failure is
   * counted failed. A fallback's latency is not the engine's.
   */
  async route(request: RoutingRequest | unknown): Promise<RoutingResponse> {
    const t0 = performance.now();
    const c = this.#counts;
    let validated: ValidatedRequest;
    try {
      validated = validateRequest(request);
    } catch (err) {
      c.rejected++;
      throw err;
    }
    let scored;
    try {
      scored = await this.breaker.score({ kind: 'validated', request: validated });
    } catch (err) {
      if (err instanceof InvalidInputError) c.rejected++;
      else c.failed++;
      throw err;
    }
    c.requests++;
    for (const d of scored.response.decisions) {
      c.decisions++;
      if (d.use_lightweight) c.lightweight++;
      c.reasons[d.reason] = (c.reasons[d.reason] ?? 0) + 1;
    }
    if (!scored.fallback) this.engineLatency.record(scored.response.inference_time_us);
    this.endToEndLatency.record((performance.now() - t0) * 1000);
    return scored.response;
  }

  /** Route-call totals (the stream adds its own in `serve`). */
  routeTotals(): TotalsView {
    const c = this.#counts;
    return {
      requests: c.requests,
      decisions: c.decisions,
      lightweight: c.lightweight,
      heavyweight: c.decisions - c.lightweight,
      failed: c.failed,
      rejected: c.rejected,
      reasons: { ...c.reasons },
    };
  }

  latency(): { engine: LatencyView; endToEnd: LatencyView } {
    return { engine: this.engineLatency.summary(), endToEnd: this.endToEndLatency.summary() };
  }

  // ---- model ---------------------------------------------------------------------------------

  /**
   * Swaps in a model that was already validated (prepareModel). On failure the old model still
   * serves; ControlError and InvalidInputError pass through unchanged, anything else (the pool
   * closing, a crash) is UNAVAILABLE.
   */
  async applyModel(prepared: PreparedModel): Promise<ReloadResult> {
    this.#refuseWhileDraining('no model reload now');
    const previousVersion = this.#pool.modelVersion;
    try {
      await this.#pool.reload({ bytes: prepared.bytes, source: prepared.source });
    } catch (err) {
      throw err instanceof ControlError || err instanceof InvalidInputError
        ? err
        : new ControlError('unavailable', `the worker pool could not swap the model: ${errorMessage(err)}`, { cause: err });
    }
    this.#model = prepared.model;
    this.#modelView = modelView(prepared.model, this.#now(), prepared.source);
    this.#log.info('model reloaded', { version: this.#pool.modelVersion, previousVersion, source: prepared.source });
    return { model: this.modelView(), previousVersion, notes: modelNotes(prepared.model) };
  }

  // ---- thresholds ----------------------------------------------------------------------------

  /** The thresholds in force: the pool's own view when it has one, else the same resolution rule. */
  thresholds(): ThresholdsView {
    const fromPool = this.#pool.thresholds;
    if (fromPool) return { confidence: fromPool.confidence, maxUncertainty: fromPool.maxUncertainty };
    const m = this.#model.thresholds ?? {};
    return {
      confidence: this.#overrides.confidence ?? m.confidence ?? DEFAULT_THRESHOLDS.confidence,
      maxUncertainty: this.#overrides.maxUncertainty ?? m.maxUncertainty ?? DEFAULT_THRESHOLDS.maxUncertainty,
    };
  }

  async setThresholds(update: ThresholdsUpdate): Promise<ThresholdsView> {
    this.#refuseWhileDraining('thresholds are not changed now');
    await this.#pool.setThresholds(update);
    if (update.confidence !== undefined) this.#overrides.confidence = update.confidence;
    if (update.maxUncertainty !== undefined) this.#overrides.maxUncertainty = update.maxUncertainty;
    const t = this.thresholds();
    this.#log.info('thresholds changed', { ...t });
    return t;
  }

  // ---- breaker -------------------------------------------------------------------------------

  breakerView(): BreakerView {
    const s = this.breaker.snapshot();
    const view: BreakerView = {
      state: s.state,
      trips: s.trips,
      fallbacks: s.fallbacks,
      window: { successes: s.window.successes, failures: s.window.failures, timeouts: s.window.timeouts, rejects: s.window.rejects, fallbacks: s.window.fallbacks },
      settings: {
        timeoutMs: s.options.timeoutMs,
        errorThresholdPercentage: s.options.errorThresholdPercentage,
        volumeThreshold: s.options.volumeThreshold,
        resetTimeoutMs: s.options.resetTimeoutMs,
        rollingWindowMs: s.options.rollingCountTimeoutMs,
      },
    };
    if (s.openedAt !== undefined) view.openedAt = s.openedAt;
    return view;
  }

  resetBreaker(): BreakerView {
    this.breaker.reset();
    this.#log.info('circuit breaker reset by an operator');
    return this.breakerView();
  }

  tripBreaker(): BreakerView {
    this.breaker.trip();
    return this.breakerView();
  }

  /** Stops the breaker's timers. The pool is its owner's to close. */
  shutdown(): void {
    this.#draining = true;
    this.breaker.shutdown();
  }
}
