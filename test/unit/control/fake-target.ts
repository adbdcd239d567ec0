// A test double of ControlTarget for the SERVER's own behaviour (auth, status mapping, streams,
// health, limits). It records every state change so a test can assert that a refused call
// changed nothing. The real targets are tested against a real RouterPool elsewhere.
import { InvalidInputError } from '../../../src/errors.js';
import type { RoutingRequest, RoutingResponse } from '../../../src/wire/types.js';
import type {
  BreakerView,
  ConfigSnapshot,
  ControlStats,
  ControlTarget,
  HealthStatus,
  ModelSource,
  ReloadResult,
  ThresholdsUpdate,
  ThresholdsView,
} from '../../../src/control/target.js';

export class FakeTarget implements ControlTarget {
  readonly mode = 'fake';
  version = 'v1';
  thresholds: ThresholdsView = { confidence: 0.85, maxUncertainty: 0.15 };
  breakerState: BreakerView['state'] = 'open';
  requests = 0;
  decisions = 0;
  lightweight = 0;
  statsCalls = 0;
  /** Every state change, in order. */
  changes: string[] = [];
  /** When set, reload throws it. */
  reloadError: unknown;
  /** When set, reload waits for it. */
  reloadGate: Promise<void> | undefined;
  /** When set, stats() never answers. */
  statsHang = false;
  startedAt = Date.now() - 10_000;
  #health: HealthStatus = 'SERVING';
  readonly #listeners = new Set<(s: HealthStatus) => void>();

  stats(): ControlStats | Promise<ControlStats> {
    this.statsCalls++;
    if (this.statsHang) return new Promise<ControlStats>(() => {});
    return {
      startedAt: this.startedAt,
      model: { version: this.version, loadedAt: this.startedAt, source: '/models/a.safetensors', inputDim: 5, hiddenDim: 8, features: ['a'] },
      thresholds: { ...this.thresholds },
      totals: {
        requests: this.requests,
        decisions: this.decisions,
        lightweight: this.lightweight,
        heavyweight: this.decisions - this.lightweight,
        failed: 1,
        rejected: 2,
        reasons: { model: this.decisions },
      },
      engineLatency: { count: 3, p50: 10, p90: 20, p99: 30, max: 40 },
      endToEndLatency: { count: 3, p50: 100, p90: 200, p99: 300, max: 400 },
      breaker: this.breaker(),
      pool: { workers: 2, inFlight: 0, queued: 0, completed: 5, failed: 0, crashes: 0 },
      stream: { connected: true, assignedPartitions: 3, consumed: 7, produced: 9, dlq: 4, consumerLag: 12, lagSampledAt: Date.now(), inFlight: 0, pausedPartitions: 0 },
      decisionLog: { backlog: 6, written: 100, failedBatches: 0, healthy: true },
      store: {
        available: true, windowSeconds: 3600, decisions: 50, requests: 10, lightweightShare: 0.4, reasons: { model: 50 },
        modelVersions: { v1: 50 }, meanConfidence: 0.7, meanUncertainty: 0.1, p50InferenceUs: 11, p95InferenceUs: 22, p99InferenceUs: 33,
        lastDecidedAt: Date.now(), computedAt: Date.now(),
      },
    };
  }

  async reload(source: ModelSource): Promise<ReloadResult> {
    if (this.reloadGate) await this.reloadGate;
    if (this.reloadError !== undefined) throw this.reloadError;
    const previousVersion = this.version;
    this.version = 'path' in source ? `from-path:${source.path}` : `from-bytes:${source.bytes.length}`;
    this.changes.push(`reload ${this.version}`);
    return { model: { version: this.version, loadedAt: Date.now(), source: 'path' in source ? source.path : 'bytes' }, previousVersion };
  }

  breaker(): BreakerView {
    return {
      state: this.breakerState, trips: 3, fallbacks: 17, openedAt: Date.now() - 1000,
      window: { successes: 1, failures: 5, timeouts: 1, rejects: 9, fallbacks: 10 },
      settings: { timeoutMs: 2000, errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeoutMs: 10_000, rollingWindowMs: 10_000 },
    };
  }

  resetBreaker(): BreakerView {
    this.breakerState = 'closed';
    this.changes.push('reset');
    return this.breaker();
  }

  config(): ConfigSnapshot {
    return {
      modelPath: '/models/a.safetensors',
      thresholds: { ...this.thresholds },
      settings: {
        groupId: 'tiny-dancer',
        workers: 2,
        topics: { requests: 'routing.requests' },
        adminToken: 'must-not-leak-123',
        databaseUrl: 'postgres://app:hunter2@db:5432/x',
      },
    };
  }

  async setThresholds(update: ThresholdsUpdate): Promise<ThresholdsView> {
    this.thresholds = { ...this.thresholds, ...update };
    this.changes.push(`thresholds ${JSON.stringify(update)}`);
    return { ...this.thresholds };
  }

  async route(request: RoutingRequest): Promise<RoutingResponse> {
    if (typeof request.request_id !== 'string' || request.request_id === '') throw new InvalidInputError('request_id: required');
    this.requests++;
    return {
      decisions: request.candidates.map((c, i) => ({
        request_id: request.request_id, candidate_id: c.id, confidence: 0.9, uncertainty: 0.05, use_lightweight: true,
        rank: i, model_version: this.version, reason: 'model' as const, metadata: c.metadata ?? {}, inference_time_us: 12,
      })),
      inference_time_us: 12, feature_time_us: 3, candidates_processed: request.candidates.length,
    };
  }

  health(): HealthStatus {
    return this.#health;
  }

  onHealthChange(listener: (s: HealthStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  setHealth(s: HealthStatus): void {
    this.#health = s;
    for (const l of this.#listeners) l(s);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }
}
