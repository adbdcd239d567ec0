// Consumer lag of the requests topic, sampled now and then through the admin client: committed
// offsets of the group against the partitions' ends. Feeds the lag gauge, GetStats and the
// heartbeat (the lag of this replica's own partitions).
import type { Admin } from 'kafkajs';
import type { Metrics } from './metrics.js';
import type { Logger } from './logger.js';

export interface LagSamplerOptions {
  /** The admin client; sampling is skipped while it is not there. */
  admin: () => Admin | undefined;
  groupId: string;
  topic: string;
  gauge: Metrics['consumerLag'];
  logger: Logger;
  intervalMs: number;
}

export class LagSampler {
  /** Lag per partition, as last sampled. */
  readonly #byPartition = new Map<number, number>();
  #latest: { total: number; at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly opts: LagSamplerOptions) {}

  start(): void {
    if (this.#timer || this.#stopped) return;
    this.#timer = setInterval(() => void this.sample(), this.opts.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The topic's total lag and when it was sampled; undefined before the first sample. */
  get latest(): { total: number; at: number } | undefined {
    return this.#latest;
  }

  /** Lag summed over `partitions`; undefined before the first sample. */
  lagOf(partitions: readonly number[]): number | undefined {
    if (!this.#latest) return undefined;
    let lag = 0;
    for (const p of partitions) lag += this.#byPartition.get(p) ?? 0;
    return lag;
  }

  /** Takes one sample; a failure is logged at debug level and the last sample stays. */
  async sample(): Promise<void> {
    const admin = this.opts.admin();
    if (!admin || this.#stopped) return;
    const { topic, groupId } = this.opts;
    try {
      const [committed, ends] = await Promise.all([admin.fetchOffsets({ groupId, topics: [topic] }), admin.fetchTopicOffsets(topic)]);
      const byPartition = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
      let total = 0;
      for (const e of ends) {
        const c = byPartition.get(e.partition) ?? -1;
        // No committed offset: the group starts at the earliest (docs/contracts.md §2).
        const start = c >= 0 ? c : Number(e.low);
        const lag = Math.max(0, Number(e.high) - start);
        total += lag;
        this.#byPartition.set(e.partition, lag);
        this.opts.gauge.set({ topic, partition: String(e.partition) }, lag);
      }
      this.#latest = { total, at: Date.now() };
    } catch (err) {
      this.opts.logger.debug('consumer lag sample failed', { err });
    }
  }
}
