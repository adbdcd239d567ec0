// The feedback loop inside `serve`: the outcome consumer, the calibration monitor and its
// metrics, and the registry's view of the serving model. src/app.ts creates one beside the
// request processor, tells it about every model it loads, stops it on shutdown, and adds
// `snapshot()` to GetStats.
import { isAbsolute, resolve } from 'node:path';
import type { Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import type client from 'prom-client';
import type { LoadedModel } from '../engine/model.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { OutcomeConsumer, type OutcomeConsumerStatus } from './consumer.js';
import { DEFAULT_LABEL_OPTIONS } from './label.js';
import { createFeedbackMetrics, type FeedbackMetrics } from './metrics.js';
import { CalibrationMonitor, DEFAULT_MONITOR_OPTIONS, type MonitorOptions, type MonitorSnapshot, type Calibration } from './monitor.js';
import { OutcomeStore } from './outcome-store.js';
import { ModelRegistry, sha256Hex } from './registry.js';

export interface FeedbackSettings {
  /** Consume outcomes at all (TD_FEEDBACK=false turns the loop off). */
  enabled: boolean;
  monitor: MonitorOptions;
  /** Consumer group suffix: the group is `${TD_GROUP_ID}${groupSuffix}`. */
  groupSuffix: string;
}

type Env = Record<string, string | undefined>;

function num(env: Env, name: string, fallback: number, min: number, max: number, integer = false): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected ${integer ? 'a whole number' : 'a number'} in [${min}, ${max}]`);
  }
  return v;
}

/**
 * The feedback settings from the environment (read once, at the edge, like src/config.ts):
 *   TD_FEEDBACK                 true|false, default true
 *   TD_FEEDBACK_WINDOW          labelled outcomes per model version in the rolling window (2000)
 *   TD_DRIFT_EPSILON            ε: drift when coverage < 1 − α − ε (0.05)
 *   TD_DRIFT_MIN_SAMPLES        no drift verdict on fewer labelled outcomes (200)
 *   TD_LABEL_QUALITY_THRESHOLD  shadow quality at which the lightweight model sufficed (0.5)
 */
export function feedbackSettingsFromEnv(env: Env): FeedbackSettings {
  const enabledRaw = (env.TD_FEEDBACK ?? 'true').trim().toLowerCase();
  if (!['true', 'false', '1', '0', 'yes', 'no', 'on', 'off', ''].includes(enabledRaw)) {
    throw new ConfigError(`TD_FEEDBACK=${JSON.stringify(env.TD_FEEDBACK)} is invalid: expected true or false`);
  }
  const window = num(env, 'TD_FEEDBACK_WINDOW', DEFAULT_MONITOR_OPTIONS.window, 1, 10_000_000, true);
  const minSamples = num(env, 'TD_DRIFT_MIN_SAMPLES', Math.min(DEFAULT_MONITOR_OPTIONS.minSamples, window), 1, window, true);
  return {
    enabled: !['false', '0', 'no', 'off'].includes(enabledRaw),
    groupSuffix: '-outcomes',
    monitor: {
      ...DEFAULT_MONITOR_OPTIONS,
      window,
      minSamples,
      epsilon: num(env, 'TD_DRIFT_EPSILON', DEFAULT_MONITOR_OPTIONS.epsilon, 0, 0.99),
      label: { qualityThreshold: num(env, 'TD_LABEL_QUALITY_THRESHOLD', DEFAULT_LABEL_OPTIONS.qualityThreshold, 0, 1) },
    },
  };
}

export interface FeedbackServiceOptions {
  kafka: Kafka;
  topics: { outcomes: string; dlq: string };
  groupId: string;
  pool: pg.Pool;
  schema: string;
  registry: client.Registry;
  logger: Logger;
  settings?: FeedbackSettings;
  /** Shared producer for DLQ records (optional). */
  producer?: Producer;
  maxMessageBytes?: number;
  /** The service-wide DLQ counter (td_dlq_total), so it counts rejected outcomes too. */
  dlqCounter?: { inc(labels: { reason: string }, value?: number): void };
}

/** What GetStats shows of the loop. */
export interface FeedbackSnapshot extends MonitorSnapshot {
  consumer: OutcomeConsumerStatus | null;
}

export class FeedbackService {
  readonly monitor: CalibrationMonitor;
  readonly store: OutcomeStore;
  readonly models: ModelRegistry;
  readonly metrics: FeedbackMetrics;
  readonly settings: FeedbackSettings;
  readonly #consumer: OutcomeConsumer | undefined;
  readonly #logger: Logger;

  constructor(o: FeedbackServiceOptions) {
    this.settings = o.settings ?? feedbackSettingsFromEnv({});
    this.#logger = o.logger.child({ component: 'feedback' });
    this.monitor = new CalibrationMonitor(this.settings.monitor);
    this.store = new OutcomeStore(o.pool, o.schema);
    this.models = new ModelRegistry(o.pool, o.schema);
    let consumer: OutcomeConsumer | undefined;
    this.metrics = createFeedbackMetrics(o.registry, this.monitor, { pendingJoins: () => consumer?.pendingJoins ?? 0 });
    if (this.settings.enabled) {
      consumer = new OutcomeConsumer({
        kafka: o.kafka,
        topic: o.topics.outcomes,
        dlqTopic: o.topics.dlq,
        groupId: `${o.groupId}${this.settings.groupSuffix}`,
        store: this.store,
        monitor: this.monitor,
        metrics: this.metrics,
        logger: o.logger,
        calibrationFor: (v) => this.#calibrationFromRegistry(v),
        ...(o.producer ? { producer: o.producer } : {}),
        ...(o.maxMessageBytes === undefined ? {} : { maxMessageBytes: o.maxMessageBytes }),
        ...(o.dlqCounter ? { dlqCounter: o.dlqCounter } : {}),
      });
    }
    this.#consumer = consumer;
  }

  async start(): Promise<void> {
    await this.#consumer?.start();
  }

  async stop(): Promise<void> {
    await this.#consumer?.stop();
  }

  snapshot(): FeedbackSnapshot {
    return { ...this.monitor.snapshot(), consumer: this.#consumer?.status() ?? null };
  }

  /**
   * A model started serving (start-up or a reload): the monitor learns its calibration, and the
   * registry its hash, file and calibration. With `activate`, it becomes the registry's active
   * version (promoted_by = `by`) unless it already is. Registry failures are logged, never
   * thrown: the model is serving either way.
   */
  async modelLoaded(
    model: LoadedModel,
    bytes: Uint8Array,
    source: string,
    opts: { activate: boolean; by: string; timeoutMs?: number },
  ): Promise<void> {
    if (model.calibration) this.monitor.setCalibration(model.version, model.calibration);
    // Bounded: a slow database must not hold up a reload that already succeeded.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), opts.timeoutMs ?? 3000)));
    const done = await Promise.race([this.#record(model, bytes, source, opts), timeout]).finally(() => clearTimeout(timer));
    if (done === 'timeout') this.#logger.warn('recording the serving model in the registry is slow; it continues in the background', { version: model.version });
  }

  async #record(model: LoadedModel, bytes: Uint8Array, source: string, opts: { activate: boolean; by: string }): Promise<void> {
    try {
      const path = source === 'bytes' || source === '' ? null : isAbsolute(source) ? source : resolve(source);
      await this.models.register({
        version: model.version,
        sha256: sha256Hex(bytes),
        path,
        metrics: model.calibration ? { calibration: model.calibration } : {},
      });
      if (opts.activate) {
        const active = await this.models.active();
        if (active?.version !== model.version) {
          if (active && opts.by === 'serve') {
            // Started from an explicit TD_MODEL_PATH (or the active version's file was unusable,
            // already logged): it replaces what was promoted. Say so plainly.
            this.#logger.warn('serving a different model than the registry\'s active one; promote or roll back again, or point TD_MODEL_PATH at it', {
              serving: model.version,
              registryActive: active.version,
              promotedBy: active.promoted_by,
              promotedAt: active.promoted_at?.toISOString(),
              registryPath: active.path,
            });
          }
          await this.models.markActive(model.version, opts.by);
        }
      }
    } catch (err) {
      this.#logger.warn('could not record the serving model in the registry', { version: model.version, err });
    }
  }

  async #calibrationFromRegistry(version: string): Promise<Calibration | undefined> {
    const e = await this.models.get(version);
    const cal = e?.metrics.calibration as { alpha?: unknown; qhat?: unknown } | undefined;
    if (cal && typeof cal.alpha === 'number' && typeof cal.qhat === 'number') return { alpha: cal.alpha, qhat: cal.qhat };
    return undefined;
  }
}
