// The circuit breaker around scoring (opossum). When the engine fails or is too slow often
// enough, the breaker opens and every candidate goes to the HEAVYWEIGHT model with reason
// `breaker_open`, confidence 0 and uncertainty 1: availability never costs quality, because
// the expensive model is always a correct (if costly) answer. A single failed call while the
// breaker is still closed gets the same safe answer — the request is never lost or delayed.
import CircuitBreaker from 'opossum';
import type { BreakerConfig } from '../config.js';
import { EMPTY_METADATA, type ValidatedRequest } from '../engine/validate.js';
import type { RoutingDecision, RoutingResponse } from '../wire/types.js';
import { requestTopK } from '../wire/response.js';
import { InvalidInputError, errorMessage } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { BREAKER_STATE_VALUE, type BreakerStateName, type Metrics } from '../observe/metrics.js';

/**
 * What the engine is asked to score: a request validated on this thread, or the record's raw
 * bytes for the pool to decode and validate on a worker thread (pool.routeEncoded).
 */
export type ScoreTask =
  | { kind: 'validated'; request: ValidatedRequest }
  | { kind: 'encoded'; bytes: Uint8Array; encoding: 'json' | 'protobuf' };

/**
 * The scorer the breaker protects. It rejects with InvalidInputError (DecodeError) for bad
 * input — which is the caller's problem, not the engine's — and with anything else when the
 * engine fails.
 */
export type Scorer = (task: ScoreTask) => Promise<RoutingResponse>;

export interface ScoreResult {
  response: RoutingResponse;
  /** True when the response is the breaker's heavyweight fallback. */
  fallback: boolean;
  /** Time spent in the scorer (0 for an immediate fallback while open). */
  engineSeconds: number;
}

export interface BreakerSnapshot {
  state: BreakerStateName;
  /** Counts over the rolling window. */
  window: { fires: number; successes: number; failures: number; timeouts: number; rejects: number; fallbacks: number };
  /** Since start. */
  transitions: number;
  /** Times it opened since start. */
  trips: number;
  /** Requests answered by the heavyweight fallback since start. */
  fallbacks: number;
  /** When it last opened (Unix ms). */
  openedAt: number | undefined;
  lastTransitionAt: string | undefined;
  lastError: string | undefined;
  options: BreakerConfig;
}

export interface ScoringBreakerOptions extends BreakerConfig {
  logger: Logger;
  metrics?: Metrics;
  /** Model version written into fallback decisions. */
  modelVersion: () => string;
  /** Called on every state change (the app forwards it to CONTROL's watchers). */
  onStateChange?: (state: BreakerStateName) => void;
  /** The policy label fallback decisions carry: the one in force for the request (default 'global'). */
  policyOf?: (req: ValidatedRequest) => string;
}

/** The decisions used while the breaker is open: all heavyweight, input order as rank. */
export function breakerOpenResponse(req: ValidatedRequest, modelVersion: string, policy = 'global'): RoutingResponse {
  const decisions: RoutingDecision[] = new Array(req.n);
  for (let i = 0; i < req.n; i++) {
    decisions[i] = {
      request_id: req.request_id,
      candidate_id: req.ids[i]!,
      confidence: 0,
      uncertainty: 1,
      use_lightweight: false,
      rank: i,
      model_version: modelVersion,
      reason: 'breaker_open',
      metadata: req.candidateMetadata[i] ?? EMPTY_METADATA,
      inference_time_us: 0,
      candidate_count: req.n,
      lightweight_count: 0,
      policy,
    };
  }
  const response: RoutingResponse = { decisions, inference_time_us: 0, feature_time_us: 0, candidates_processed: req.n, policy };
  const topK = requestTopK(req.metadata);
  if (topK !== undefined) response.top_k = topK;
  return response;
}

export class ScoringBreaker {
  readonly #breaker: CircuitBreaker<[ScoreTask], RoutingResponse>;
  readonly #opts: ScoringBreakerOptions;
  #transitions = 0;
  #trips = 0;
  #fallbacks = 0;
  #openedAt: number | undefined;
  #lastTransitionAt: string | undefined;
  #lastError: string | undefined;

  constructor(scorer: Scorer, opts: ScoringBreakerOptions) {
    this.#opts = opts;
    this.#breaker = new CircuitBreaker(scorer, {
      // Bad input says nothing about the engine's health.
      errorFilter: (err: unknown) => err instanceof InvalidInputError,
      name: 'scoring',
      timeout: opts.timeoutMs,
      errorThresholdPercentage: opts.errorThresholdPercentage,
      volumeThreshold: opts.volumeThreshold,
      resetTimeout: opts.resetTimeoutMs,
      rollingCountTimeout: opts.rollingCountTimeoutMs,
      rollingCountBuckets: 10,
    });
    const on = (state: BreakerStateName, level: 'warn' | 'info') => () => {
      this.#transitions++;
      if (state === 'open') {
        this.#trips++;
        this.#openedAt = Date.now();
      }
      this.#lastTransitionAt = new Date().toISOString();
      opts.metrics?.breakerState.set(BREAKER_STATE_VALUE[state]);
      opts.metrics?.breakerTransitions.inc({ to: state });
      const s = this.#breaker.stats;
      opts.logger[level](`scoring circuit breaker ${state === 'half_open' ? 'half-open: trying the engine again' : state}`, {
        breaker: state,
        window: { fires: s.fires, failures: s.failures, timeouts: s.timeouts },
        lastError: this.#lastError,
      });
      opts.onStateChange?.(state);
    };
    this.#breaker.on('open', on('open', 'warn'));
    this.#breaker.on('halfOpen', on('half_open', 'info'));
    this.#breaker.on('close', on('closed', 'info'));
    this.#breaker.on('failure', (err: unknown) => {
      this.#lastError = errorMessage(err);
    });
    this.#breaker.on('timeout', () => {
      this.#lastError = `scoring took longer than ${opts.timeoutMs} ms`;
    });
    opts.metrics?.breakerState.set(0);
  }

  get state(): BreakerStateName {
    if (this.#breaker.opened) return 'open';
    if (this.#breaker.halfOpen) return 'half_open';
    return 'closed';
  }

  /**
   * Scores through the breaker. Never rejects because of the engine: a failure (or an open
   * breaker) yields the heavyweight fallback. Rejects with InvalidInputError/DecodeError when
   * the input is bad — found by the scorer, or by `validated()`, which builds the request the
   * fallback needs when the task carried raw bytes.
   */
  async score(task: ScoreTask, validated: () => ValidatedRequest = () => (task as { request: ValidatedRequest }).request): Promise<ScoreResult> {
    const started = performance.now();
    try {
      const response = await this.#breaker.fire(task);
      return { response, fallback: false, engineSeconds: (performance.now() - started) / 1000 };
    } catch (err) {
      if (err instanceof InvalidInputError) throw err;
      const req = task.kind === 'validated' ? task.request : validated();
      this.#fallbacks++;
      if (!this.#breaker.opened) this.#opts.logger.debug('scoring failed; heavyweight fallback for this request', { err, request_id: req.request_id });
      return { response: breakerOpenResponse(req, this.#opts.modelVersion(), this.#opts.policyOf?.(req)), fallback: true, engineSeconds: (performance.now() - started) / 1000 };
    }
  }

  /**
   * Closes the breaker now (operator action). The rolling window keeps its counts, so an
   * engine that still fails re-opens it on the next failure rather than after a full window.
   */
  reset(): void {
    this.#breaker.close();
  }

  /** Opens the breaker now (operator action, e.g. before a risky model swap). */
  trip(): void {
    this.#breaker.open();
  }

  snapshot(): BreakerSnapshot {
    const s = this.#breaker.stats;
    return {
      state: this.state,
      window: { fires: s.fires, successes: s.successes, failures: s.failures, timeouts: s.timeouts, rejects: s.rejects, fallbacks: s.fallbacks },
      transitions: this.#transitions,
      trips: this.#trips,
      fallbacks: this.#fallbacks,
      openedAt: this.#openedAt,
      lastTransitionAt: this.#lastTransitionAt,
      lastError: this.#lastError,
      options: {
        timeoutMs: this.#opts.timeoutMs,
        errorThresholdPercentage: this.#opts.errorThresholdPercentage,
        volumeThreshold: this.#opts.volumeThreshold,
        resetTimeoutMs: this.#opts.resetTimeoutMs,
        rollingCountTimeoutMs: this.#opts.rollingCountTimeoutMs,
      },
    };
  }

  shutdown(): void {
    this.#breaker.shutdown();
  }
}
