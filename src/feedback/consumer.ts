// The outcome consumer: the outcomes topic (TD_TOPIC_OUTCOMES) in its own consumer group
// (`<TD_GROUP_ID>-outcomes`), beside the request processor in `serve`.
//
// Per batch: decode and validate every record (JSON or protobuf by content-type, as requests);
// bad records go to the DLQ with STREAM's headers (td-error, td-source-*); good ones are stored
// in routing_outcomes in one idempotent statement; the new ones, joined to their decisions,
// feed the calibration monitor; only then is the offset committed (at-least-once, and a replay
// inserts and counts nothing twice). A database outage is retried with jittered backoff while
// the consumer heart-beats; nothing is committed until the rows are durable.
//
// An outcome may arrive before its decision's row (the decision log writes in batches): it is
// stored at once and waits, in a bounded set, for the decision to appear (re-checked every
// `joinRetryMs`); after `joinMaxAgeMs`, or when the set is full, it leaves the live monitor
// (counted as `unjoined`) — it stays in Postgres, and retrain joins it later.
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, Producer, ProducerConfig } from 'kafkajs';
import type { Outcome } from '../wire/types.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { backoffDelay, sleep } from '../store/backoff.js';
import { classifyPgError } from '../store/errors.js';
import { DecodeError } from '../wire/errors.js';
import { encodingOf, getHeader, type Headers } from '../wire/headers.js';
import { dlqMessage } from '../stream/dlq.js';
import { partitioner } from '../stream/kafka.js';
import { decodeOutcome, DEFAULT_MAX_OUTCOME_BYTES } from './codec.js';
import type { FeedbackMetrics } from './metrics.js';
import { recordDrift } from './metrics.js';
import type { CalibrationMonitor, Calibration, DriftEvent } from './monitor.js';
import { joinKey, type JoinedDecision, type OutcomeStore, type StoredOutcome } from './outcome-store.js';

/**
 * The producer of rejected outcomes' DLQ records. Not idempotent: kafkajs keeps an idempotent
 * producer's guarantee only with endless retries, and an endless retry inside kafkajs would hold
 * up stop(). This producer gives up after the client's retry budget instead, and the batch's own
 * retry loop (#retrying, which stop() can end) sends the records again — so delivery to the DLQ
 * is at-least-once either way, and idempotence would only have guarded kafkajs's internal
 * retries. One request in flight keeps the records in order across those retries.
 */
export const OUTCOME_DLQ_PRODUCER: Readonly<ProducerConfig> = Object.freeze({
  idempotent: false,
  maxInFlightRequests: 1,
  allowAutoTopicCreation: false,
  createPartitioner: partitioner,
});

export interface OutcomeConsumerOptions {
  kafka: Kafka;
  /** The outcomes topic. */
  topic: string;
  dlqTopic: string;
  /** Consumer group; the app passes `${TD_GROUP_ID}-outcomes`. */
  groupId: string;
  store: OutcomeStore;
  monitor: CalibrationMonitor;
  logger: Logger;
  metrics?: FeedbackMetrics;
  /** Producer for DLQ records (the app may share one); created and owned here when absent. */
  producer?: Producer;
  /** Looks up a model version's calibration (e.g. in the registry) the first time it is seen. */
  calibrationFor?: (version: string) => Promise<Calibration | undefined>;
  maxMessageBytes?: number;
  /** Outcomes waiting for their decision row, at most. Default 10 000. */
  maxPendingJoins?: number;
  joinRetryMs?: number;
  joinMaxAgeMs?: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** The service-wide DLQ counter (STREAM's td_dlq_total), so its total includes outcomes. */
  dlqCounter?: { inc(labels: { reason: string }, value?: number): void };
  /** Called for every drift event after it is logged and counted (tests, CONTROL watchers). */
  onDrift?: (e: DriftEvent) => void;
}

export interface OutcomeConsumerStatus {
  running: boolean;
  joined: boolean;
  groupId: string;
  topic: string;
  assignment: Record<string, number[]>;
  pendingJoins: number;
  stored: number;
  duplicates: number;
  rejected: number;
  unjoined: number;
  lastError: string | undefined;
}

interface Rejected {
  message: Message;
  /** DecodeError kind, 'internal', or 'postgres' (refused as a row). */
  kind: string;
}

interface Decoded {
  outcome: Outcome;
  msg: KafkaMessage;
}

interface Pending {
  outcome: StoredOutcome;
  since: number;
}

function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

export class OutcomeConsumer {
  readonly #o: OutcomeConsumerOptions;
  readonly #logger: Logger;
  #consumer: Consumer | undefined;
  #producer: Producer | undefined;
  #ownsProducer = false;
  #running = false;
  #joined = false;
  #assignment: Record<string, number[]> = {};
  #lastError: string | undefined;
  /** Insertion-ordered: the oldest first, for eviction and age-out. */
  readonly #pending = new Map<string, Pending>();
  #joinTimer: NodeJS.Timeout | undefined;
  #joining = false;
  readonly #calibrationLookups = new Map<string, number>();
  #stored = 0;
  #duplicates = 0;
  #rejected = 0;
  #unjoined = 0;

  constructor(opts: OutcomeConsumerOptions) {
    this.#o = opts;
    this.#logger = opts.logger.child({ component: 'outcomes' });
  }

  status(): OutcomeConsumerStatus {
    return {
      running: this.#running,
      joined: this.#joined,
      groupId: this.#o.groupId,
      topic: this.#o.topic,
      assignment: this.#assignment,
      pendingJoins: this.#pending.size,
      stored: this.#stored,
      duplicates: this.#duplicates,
      rejected: this.#rejected,
      unjoined: this.#unjoined,
      lastError: this.#lastError,
    };
  }

  get pendingJoins(): number {
    return this.#pending.size;
  }

  async start(): Promise<void> {
    const { kafka } = this.#o;
    if (this.#o.producer) this.#producer = this.#o.producer;
    else {
      this.#producer = kafka.producer(OUTCOME_DLQ_PRODUCER);
      this.#ownsProducer = true;
      await this.#producer.connect();
    }
    const consumer = kafka.consumer({
      groupId: this.#o.groupId,
      sessionTimeout: this.#o.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: 3000,
      maxWaitTimeInMs: 200,
      // Outcomes are tiny; a modest fetch bounds the memory of one batch.
      maxBytesPerPartition: 1024 * 1024,
      maxBytes: 4 * 1024 * 1024,
      allowAutoTopicCreation: false,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    this.#consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      this.#joined = true;
      this.#assignment = Object.fromEntries(Object.entries(payload.memberAssignment).map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
      this.#logger.info('joined outcomes consumer group', { groupId: this.#o.groupId, assignment: this.#assignment });
    });
    consumer.on(consumer.events.REBALANCING, () => (this.#joined = false));
    consumer.on(consumer.events.STOP, () => (this.#joined = false));
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      this.#joined = false;
      this.#lastError = errorMessage(payload.error);
      this.#logger.error('outcomes consumer crashed', { err: payload.error, restart: payload.restart });
    });
    await consumer.connect();
    // docs/contracts.md §2: a group without committed offsets starts at the earliest offset.
    await consumer.subscribe({ topics: [this.#o.topic], fromBeginning: true });
    this.#running = true;
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (p) => this.#onBatch(p) });
    this.#joinTimer = setInterval(() => void this.#retryJoins(), this.#o.joinRetryMs ?? 1000);
    this.#joinTimer.unref();
  }

  /** Stops consuming (the batch in flight finishes or is abandoned uncommitted) and disconnects. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#joinTimer) clearInterval(this.#joinTimer);
    this.#joinTimer = undefined;
    await this.#consumer?.disconnect().catch((err: unknown) => this.#logger.warn('outcomes consumer disconnect failed', { err }));
    if (this.#ownsProducer) await this.#producer?.disconnect().catch(() => {});
    this.#consumer = undefined;
  }

  // ---- batches ------------------------------------------------------------------------------

  async #onBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    if (batch.messages.length === 0) return;
    const ticker = setInterval(() => void p.heartbeat().catch(() => {}), this.#o.heartbeatIntervalMs ?? 1000);
    try {
      const valid: Decoded[] = [];
      const dlq: Rejected[] = [];
      for (const msg of batch.messages) {
        const decoded = this.#decode(batch.topic, batch.partition, msg);
        if ('outcome' in decoded) valid.push({ outcome: decoded.outcome, msg });
        else dlq.push(decoded.dlq);
      }
      const alive = () => this.#running && p.isRunning() && !p.isStale();
      // Stored outcomes feed the monitor at once (#store): a later redelivery finds them stored
      // and counts them as duplicates, so each is observed exactly once.
      const stored = await this.#store(valid, dlq, batch.topic, batch.partition, alive);
      if (!stored) return; // stopping or the partition moved: nothing committed
      if (dlq.length > 0) {
        const sent = await this.#retrying('dlq', () => this.#producer!.send({ topic: this.#o.dlqTopic, messages: dlq.map((r) => r.message), acks: -1 }), alive);
        if (sent === undefined) return; // stopping: nothing committed, the batch is redone
        this.#rejected += dlq.length;
        this.#o.metrics?.outcomes.inc({ result: 'rejected' }, dlq.length);
        for (const r of dlq) this.#o.dlqCounter?.inc({ reason: `outcome_${r.kind}` });
      }
      const last = batch.messages[batch.messages.length - 1]!.offset;
      p.resolveOffset(last);
      await p.commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: nextOffset(last) }] }] });
    } finally {
      clearInterval(ticker);
    }
  }

  #decode(topic: string, partition: number, msg: KafkaMessage): { outcome: Outcome } | { dlq: Rejected } {
    const headers = msg.headers as Headers | undefined;
    const encoding = encodingOf(getHeader(headers, 'content-type'));
    try {
      return { outcome: decodeOutcome(msg.value, encoding, { maxBytes: this.#o.maxMessageBytes ?? DEFAULT_MAX_OUTCOME_BYTES }) };
    } catch (err) {
      const reason = err instanceof DecodeError ? err.message : `internal error while decoding an outcome: ${errorMessage(err)}`;
      if (!(err instanceof DecodeError)) this.#logger.error('outcome decoder failed unexpectedly; record sent to the DLQ', { err, topic, partition, offset: msg.offset });
      return { dlq: { message: dlqMessage({ topic, partition, offset: msg.offset, key: msg.key, value: msg.value, headers }, reason), kind: err instanceof DecodeError ? err.kind : 'internal' } };
    }
  }

  /**
   * Stores the valid outcomes and hands the new ones to the monitor; returns false when the
   * batch was abandoned (consumer stopping, partition lost).
   * A row-level data error (which validation should make impossible) isolates the guilty
   * records one by one and parks them on the DLQ with Postgres's reason, so one bad row never
   * blocks the partition.
   */
  async #store(valid: Decoded[], dlq: Rejected[], topic: string, partition: number, alive: () => boolean): Promise<boolean> {
    if (valid.length === 0) return true;
    try {
      const res = await this.#retrying('store', () => this.#o.store.insert(valid.map((v) => v.outcome)), alive, true);
      if (res === undefined) return false;
      this.#count(res.inserted.length, res.duplicates);
      this.#observe(res.inserted);
      return true;
    } catch (err) {
      if (classifyPgError(err) !== 'row') throw err;
      this.#logger.warn('a batch of outcomes was refused by Postgres; storing them one by one', { err, topic, partition });
    }
    for (const { outcome, msg } of valid) {
      try {
        const res = await this.#retrying('store', () => this.#o.store.insert([outcome]), alive, true);
        if (res === undefined) return false;
        this.#count(res.inserted.length, res.duplicates);
        this.#observe(res.inserted);
      } catch (err) {
        if (classifyPgError(err) !== 'row') throw err;
        const headers = msg.headers as Headers | undefined;
        dlq.push({
          message: dlqMessage({ topic, partition, offset: msg.offset, key: msg.key, value: msg.value, headers }, `outcome refused by Postgres: ${errorMessage(err)}`),
          kind: 'postgres',
        });
      }
    }
    return true;
  }

  #count(inserted: number, duplicates: number): void {
    this.#stored += inserted;
    this.#duplicates += duplicates;
    if (inserted > 0) this.#o.metrics?.outcomes.inc({ result: 'stored' }, inserted);
    if (duplicates > 0) this.#o.metrics?.outcomes.inc({ result: 'duplicate' }, duplicates);
  }

  /**
   * Retries retriable failures with jittered backoff while `alive()`. Returns undefined when the
   * consumer stops or loses the partition meanwhile (so the caller commits nothing).
   */
  async #retrying<T>(stage: string, fn: () => Promise<T>, alive: () => boolean, pg = false): Promise<T | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const retriable = pg ? classifyPgError(err) === 'retriable' : (err as { retriable?: boolean }).retriable !== false;
        this.#lastError = `${stage}: ${errorMessage(err)}`;
        if (!retriable) throw err;
        if (!alive()) return undefined;
        const delayMs = backoffDelay(attempt, { maxMs: 10_000 });
        this.#logger.warn(`outcomes ${stage} failed; retrying`, { err, attempt: attempt + 1, delayMs });
        await sleep(delayMs);
        if (!alive()) return undefined;
      }
    }
  }

  // ---- monitor ------------------------------------------------------------------------------

  #observe(outcomes: StoredOutcome[]): void {
    const max = this.#o.maxPendingJoins ?? 10_000;
    const now = Date.now();
    for (const o of outcomes) {
      if (o.decision) this.#feed(o, o.decision);
      else {
        if (this.#pending.size >= max) this.#dropOldest();
        this.#pending.set(joinKey(o.request_id, o.candidate_id), { outcome: o, since: now });
      }
    }
  }

  #dropOldest(): void {
    const oldest = this.#pending.keys().next().value;
    if (oldest === undefined) return;
    this.#pending.delete(oldest);
    this.#unjoined++;
    this.#o.metrics?.outcomes.inc({ result: 'unjoined' });
  }

  #feed(o: Outcome, d: JoinedDecision): void {
    const monitor = this.#o.monitor;
    if (!monitor.hasCalibration(d.model_version)) this.#lookupCalibration(d.model_version);
    const r = monitor.observe({ outcome: o, decision: d });
    this.#o.metrics?.labels.inc({ served_by: r.servedBy ?? 'unknown', label: r.label === undefined ? 'none' : String(r.label) });
    if (r.drift) this.#onDrift(r.drift);
  }

  #onDrift(e: DriftEvent): void {
    if (this.#o.metrics) recordDrift(this.#o.metrics, e);
    const fields = {
      version: e.version,
      coverage: Number(e.coverage.toFixed(4)),
      target: Number(e.target.toFixed(4)),
      threshold: Number(e.threshold.toFixed(4)),
      samples: e.samples,
    };
    if (e.drifting) this.#logger.warn('calibration drift: rolling conformal coverage fell below 1 - alpha - epsilon', fields);
    else this.#logger.info('calibration drift over: rolling conformal coverage recovered', fields);
    this.#o.onDrift?.(e);
  }

  /** Once per version per minute at most: the registry may learn the version later. */
  #lookupCalibration(version: string): void {
    const lookup = this.#o.calibrationFor;
    if (!lookup) return;
    const last = this.#calibrationLookups.get(version);
    if (last !== undefined && Date.now() - last < 60_000) return;
    if (this.#calibrationLookups.size > 1000) this.#calibrationLookups.clear();
    this.#calibrationLookups.set(version, Date.now());
    lookup(version).then(
      (cal) => {
        if (cal && !this.#o.monitor.hasCalibration(version)) this.#o.monitor.setCalibration(version, cal);
      },
      (err: unknown) => this.#logger.warn('could not look up a model version\'s calibration', { version, err }),
    );
  }

  async #retryJoins(): Promise<void> {
    if (this.#joining || this.#pending.size === 0) return;
    this.#joining = true;
    try {
      const maxAge = this.#o.joinMaxAgeMs ?? 60_000;
      const now = Date.now();
      for (const [key, p] of this.#pending) {
        if (now - p.since <= maxAge) break; // insertion order: the rest are younger
        this.#pending.delete(key);
        this.#unjoined++;
        this.#o.metrics?.outcomes.inc({ result: 'unjoined' });
      }
      const keys = [...this.#pending.values()].slice(0, 2000).map((p) => p.outcome);
      if (keys.length === 0) return;
      const found = await this.#o.store.decisionsFor(keys);
      for (const o of keys) {
        const key = joinKey(o.request_id, o.candidate_id);
        const d = found.get(key);
        if (d && this.#pending.delete(key)) this.#feed(o, d);
      }
    } catch (err) {
      this.#lastError = `join: ${errorMessage(err)}`;
      this.#logger.warn('joining early outcomes to their decisions failed; will retry', { err });
    } finally {
      this.#joining = false;
    }
  }
}
