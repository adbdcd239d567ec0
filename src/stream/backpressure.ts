// Pausing the request partitions while a downstream part is behind (the decision log's backlog,
// the pool's queue), and resuming them once it caught up. Consumption pauses instead of dropping
// or queueing: the consumer stays in its group, and the records wait in Kafka.
import type { Consumer } from 'kafkajs';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import type { DecisionLogPort } from './sink.js';

export interface BackpressureOptions {
  topic: string;
  log: DecisionLogPort;
  /** Other signals (the pool's queue): a reason to pause, or undefined. */
  pressure?: (() => string | undefined) | undefined;
  metrics: Metrics;
  logger: Logger;
  /** Partitions owned now, for the paused-partitions gauge. */
  ownedPartitions: () => number;
  onChange: (event: { type: 'paused'; reason: string } | { type: 'resumed' }) => void;
}

const CHECK_INTERVAL_MS = 50;

export class Backpressure {
  readonly #o: BackpressureOptions;
  #consumer: Consumer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #paused = false;
  #reason: string | undefined;

  constructor(opts: BackpressureOptions) {
    this.#o = opts;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Why consumption is paused, while it is. */
  get reason(): string | undefined {
    return this.#reason;
  }

  /** Checks the signals every 50 ms and pauses or resumes `consumer`. */
  start(consumer: Consumer): void {
    this.#consumer = consumer;
    this.#timer = setInterval(() => this.check(), CHECK_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** A pause does not survive a re-join in kafkajs: called after each join. */
  reapply(): void {
    if (this.#paused) this.#consumer?.pause([{ topic: this.#o.topic }]);
  }

  check(): void {
    const consumer = this.#consumer;
    if (!consumer || !this.#timer) return;
    const { log, metrics, logger } = this.#o;
    const reason = log.underPressure() ? `decision log backlog ${log.backlog()}` : this.#o.pressure?.();
    metrics.logBacklog.set(log.backlog());
    if (reason !== undefined && !this.#paused) {
      this.#paused = true;
      this.#reason = reason;
      consumer.pause([{ topic: this.#o.topic }]);
      metrics.pausedPartitions.set(this.#o.ownedPartitions());
      logger.warn('pausing consumption: backpressure', { reason });
      this.#o.onChange({ type: 'paused', reason });
    } else if (reason === undefined && this.#paused) {
      this.#paused = false;
      this.#reason = undefined;
      consumer.resume([{ topic: this.#o.topic }]);
      metrics.pausedPartitions.set(0);
      logger.info('resuming consumption: pressure relieved', { backlog: log.backlog() });
      this.#o.onChange({ type: 'resumed' });
    }
  }
}
