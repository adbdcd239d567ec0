// A replica's heartbeat: every interval, a sample of what the replica is doing becomes one
// ReplicaStatus record on the status topic (docs/contracts.md §10). The rates are measured here,
// between two samples; everything else comes from the replica through ReplicaSource, so this
// file knows nothing of Kafka consumers, pools or Postgres. Sending is a port (./fleet-view.ts
// gives it a Kafka producer), so a failed send is logged and the next beat tries again: a
// heartbeat is a sample, never worth a retry loop of its own.
import type { BreakerStateText, ReplicaStatus } from '../control/fleet-table.js';
import { errorMessage } from '../errors.js';
import type { Logger } from './logger.js';

/** What a heartbeat reports, read at each beat. */
export interface ReplicaSample {
  /** The model it decides with. */
  modelVersion: string;
  /** The revision of the fleet's desired state it applied (0: none). */
  policyRevision: number;
  /** The last desired-state record it could not apply; undefined when none. */
  lastApplyError: string | undefined;
  /** Partitions of the requests topic it owns. */
  partitions: number[];
  /** Lifetime totals (rates are derived from them). */
  requests: number;
  decisions: number;
  lightweight: number;
  /** Lag of its partitions; undefined until sampled. */
  consumerLag: number | undefined;
  logBacklog: number;
  breaker: BreakerStateText;
  ready: boolean;
}

/** The replica's side of the heartbeat: the app implements it. */
export interface ReplicaSource {
  sample(): ReplicaSample;
}

export interface ReplicaIdentity {
  instance: string;
  host: string;
  version: string;
  startedAt: number;
  controlAddress: string;
}

/** Writes one status record: the value, or null for the tombstone. */
export type StatusSender = (key: string, value: ReplicaStatus | null) => Promise<void>;

export interface HeartbeatOptions {
  identity: ReplicaIdentity;
  source: ReplicaSource;
  send: StatusSender;
  intervalMs: number;
  logger: Logger;
  /** Called with each heartbeat sent (the fleet view holds its own entry without reading it back). */
  onSent?: (status: ReplicaStatus) => void;
  /** Called after each beat, sent or not (housekeeping of the fleet view). */
  afterBeat?: () => Promise<void> | void;
  now?: () => number;
}

export class Heartbeat {
  readonly #o: HeartbeatOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #beating: Promise<void> | undefined;
  #previous: { requests: number; decisions: number; at: number } | undefined;
  #failures = 0;

  constructor(opts: HeartbeatOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** The status a beat at `now` would send (rates since the previous sample taken by a beat). */
  status(sample: ReplicaSample, now: number): ReplicaStatus {
    const id = this.#o.identity;
    const prev = this.#previous;
    const seconds = prev ? (now - prev.at) / 1000 : (now - id.startedAt) / 1000;
    const rate = (after: number, before: number) => (seconds > 0 ? Math.max(0, after - before) / seconds : 0);
    const s: ReplicaStatus = {
      instance: id.instance,
      host: id.host,
      version: id.version,
      modelVersion: sample.modelVersion,
      policyRevision: sample.policyRevision,
      partitions: [...sample.partitions].sort((a, b) => a - b),
      requestsPerSecond: rate(sample.requests, prev?.requests ?? 0),
      decisionsPerSecond: rate(sample.decisions, prev?.decisions ?? 0),
      logBacklog: sample.logBacklog,
      breaker: sample.breaker,
      lastApplyError: sample.lastApplyError ?? '',
      sentAt: now,
      startedAt: id.startedAt,
      heartbeatMs: this.#o.intervalMs,
      requests: sample.requests,
      decisions: sample.decisions,
      lightweight: sample.lightweight,
      ready: sample.ready,
      controlAddress: id.controlAddress,
    };
    if (sample.consumerLag !== undefined) s.consumerLag = sample.consumerLag;
    return s;
  }

  /** Sends one heartbeat now. Never rejects: a failure is logged. */
  async beat(): Promise<void> {
    const now = this.#now();
    let status: ReplicaStatus;
    try {
      const sample = this.#o.source.sample();
      status = this.status(sample, now);
      this.#previous = { requests: sample.requests, decisions: sample.decisions, at: now };
    } catch (err) {
      this.#o.logger.warn('heartbeat: sampling the replica failed', { err: errorMessage(err) });
      return;
    }
    try {
      await this.#o.send(this.#o.identity.instance, status);
      if (this.#failures > 0) this.#o.logger.info('heartbeat: sending again', { after: this.#failures });
      this.#failures = 0;
      this.#o.onSent?.(status);
    } catch (err) {
      this.#failures++;
      // First failure, then every 10th: a broker outage must not flood the log.
      if (this.#failures === 1 || this.#failures % 10 === 0) {
        this.#o.logger.warn('heartbeat: the status record could not be written', { err: errorMessage(err), failures: this.#failures });
      }
    }
    try {
      await this.#o.afterBeat?.();
    } catch (err) {
      this.#o.logger.debug('heartbeat: housekeeping failed', { err: errorMessage(err) });
    }
  }

  /** Beats now, then every interval (the next one is timed from the end of the last). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    const loop = () => {
      if (!this.#running) return;
      this.#beating = this.beat().finally(() => {
        this.#beating = undefined;
        if (this.#running) {
          this.#timer = setTimeout(loop, this.#o.intervalMs);
          this.#timer.unref();
        }
      });
    };
    loop();
  }

  /**
   * Stops beating. With `tombstone`, writes the tombstone after the beat in flight, so the fleet
   * forgets this replica at once instead of after three missed beats. Never rejects.
   */
  async stop(opts: { tombstone: boolean }): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    await this.#beating;
    if (!opts.tombstone) return;
    try {
      await this.#o.send(this.#o.identity.instance, null);
    } catch (err) {
      this.#o.logger.warn('heartbeat: the tombstone could not be written; the fleet will see this replica go stale', { err: errorMessage(err) });
    }
  }
}
