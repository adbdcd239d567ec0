// The stream processor: request topic in → decode/validate → score (through the breaker) →
// decisions out on the lightweight/heavyweight topics + rows in the decision log → offsets
// committed. Invalid records go to the DLQ and the stream goes on.
//
// Delivery. At-least-once (default): a batch's offsets are committed only after its decisions
// are acknowledged by every in-sync replica (idempotent producer, acks=-1) AND its rows are
// durable in Postgres. A crash at any point replays from the last commit; a replay adds no row
// (the log is idempotent on (request_id, candidate_id)) and may repeat decision records.
// Exactly-once (TD_EXACTLY_ONCE=true): each chunk's decisions, DLQ records and consumed offsets
// are one Kafka transaction, committed only once its rows are durable; read_committed
// consumers see each decision once.
//
// Flow. kafkajs fetches a round of batches (one per partition), hands up to
// `partitionsConcurrency` of them to eachBatch at once, and fetches again only when the round
// is done — so the work in memory is bounded by the fetch sizes. Within a batch, requests are
// taken in chunks; a chunk holds permits of a process-wide semaphore (TD_MAX_IN_FLIGHT) from
// decoding until its records are acknowledged and logged, and the next chunk is scored while
// the previous one is being flushed. When the decision log (or the pool) reports pressure, the
// request partitions are paused, and the running batches simply wait (heart-beating) for the
// log's durability promise: nothing is dropped, the consumer stays in its group.
//
// Rebalances and shutdown. A batch stops taking new chunks when the consumer stops or the
// partition is revoked/seeked (isRunning/isStale), finishes the chunk in flight, commits what
// is done, and returns. If the group starts rebalancing while a batch waits (e.g. on a slow
// database), the heartbeat error aborts the wait and is rethrown so kafkajs re-joins promptly;
// the abandoned work is redone by the partition's next owner without duplicate rows.
import { EventEmitter } from 'node:events';
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, Producer, TopicMessages } from 'kafkajs';
import type { Config } from '../config.js';
import type { ValidatedRequest } from '../engine/validate.js';
import type { RoutingDecision } from '../engine/types.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import type { ScoringBreaker } from './breaker.js';
import { DecodeError, decodeRequest, encodingOf, getHeader, type Encoding, type Headers } from './codec.js';
import { dlqMessage } from './dlq.js';
import { DECISION_HEADERS, decisionMessages } from './producer.js';
import { Semaphore } from './semaphore.js';
import { decisionFeatures } from '../feedback/features.js';

/** One decision as the log stores it: the decision plus where its request came from. */
export interface LoggedDecision extends RoutingDecision {
  decided_at: Date;
  /** The candidate's feature vector, for retraining (FEEDBACK, issue 8). */
  features?: Float32Array | undefined;
  source_topic: string;
  source_partition: number;
  source_offset: string;
}

/**
 * What the processor needs from the decision log (STORE's DecisionLog, adapted in app.ts).
 * `write` resolves once the rows are durable; it retries transient database failures itself
 * and rejects only when it cannot ever succeed (closed, fatal).
 */
export interface DecisionLogPort {
  write(rows: LoggedDecision[]): Promise<void>;
  /** Rows accepted but not yet durable. */
  backlog(): number;
  /** True while the log wants its writers to slow down. */
  underPressure(): boolean;
  /** False when the log cannot take writes at all (readiness). */
  accepting(): boolean;
}

/** A way to decode and score one record; the default decodes on this thread. */
export type Decoder = (value: Buffer | null, encoding: Encoding) => ValidatedRequest;

export interface ProcessorOptions {
  kafka: Kafka;
  config: Config;
  breaker: ScoringBreaker;
  log: DecisionLogPort;
  logger: Logger;
  metrics: Metrics;
  /** Additional pressure signals (e.g. the pool's queue) that pause consumption. */
  pressure?: () => string | undefined;
  decode?: Decoder;
  /** Requests per chunk (bounded by maxInFlight). */
  chunkSize?: number;
  /** Heartbeat period while a batch waits. */
  heartbeatIntervalMs?: number;
  /** Consumer session timeout (kafkajs default 30 s). */
  sessionTimeoutMs?: number;
  /** Engine time of each scored request (µs), for the control plane's latency view. */
  onEngineLatency?: (us: number) => void;
  /** Record timestamp → decisions acknowledged and durable (µs), per request. */
  onEndToEnd?: (us: number) => void;
}

/** Lifetime counters (plain numbers, cheap to read for stats). */
export interface StreamCounters {
  consumed: number;
  decided: number;
  rejected: number;
  decisions: number;
  lightweight: number;
  reasons: Record<string, number>;
  /** Decision and DLQ records acknowledged by Kafka. */
  produced: number;
  dlq: number;
  /** Requests answered by the breaker fallback. */
  fallbacks: number;
  committedBatches: number;
}

export interface ProcessorStatus {
  running: boolean;
  joined: boolean;
  memberId: string | undefined;
  generation: number;
  assignment: Record<string, number[]>;
  paused: boolean;
  pauseReason: string | undefined;
  inFlight: number;
  exactlyOnce: boolean;
  lastError: string | undefined;
}

export type ProcessorEvent =
  | { type: 'joined'; assignment: Record<string, number[]> }
  | { type: 'rebalancing' }
  | { type: 'paused'; reason: string }
  | { type: 'resumed' }
  | { type: 'crashed'; error: string; restart: boolean }
  | { type: 'draining' }
  | { type: 'drained'; clean: boolean; ms: number };

interface Prepared {
  topic: string;
  partition: number;
  /** Offset (string) of the last record in the chunk. */
  lastOffset: string;
  lightweight: Message[];
  heavyweight: Message[];
  dlq: Message[];
  rows: LoggedDecision[];
  /** Request record timestamps (ms) of the decided requests, for end-to-end latency. */
  timestamps: number[];
  decided: number;
}

function nextOffset(offset: string): string {
  return (BigInt(offset) + 1n).toString();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves/rejects with `p`, or rejects with the signal's reason as soon as it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export class Processor extends EventEmitter {
  readonly #o: ProcessorOptions;
  readonly #c: Config;
  readonly #logger: Logger;
  readonly #slots: Semaphore;
  readonly #chunkSize: number;
  readonly #decode: Decoder;
  #consumer: Consumer | undefined;
  #producer: Producer | undefined;
  #txLock: Promise<void> = Promise.resolve();
  #running = false;
  #joined = false;
  #memberId: string | undefined;
  #generation = 0;
  #assignment: Record<string, number[]> = {};
  #paused = false;
  #pauseReason: string | undefined;
  #pressureTimer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  #stopping: Promise<boolean> | undefined;
  readonly counters: StreamCounters = {
    consumed: 0,
    decided: 0,
    rejected: 0,
    decisions: 0,
    lightweight: 0,
    reasons: { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 },
    produced: 0,
    dlq: 0,
    fallbacks: 0,
    committedBatches: 0,
  };

  constructor(opts: ProcessorOptions) {
    super();
    this.#o = opts;
    this.#c = opts.config;
    this.#logger = opts.logger.child({ component: 'processor' });
    this.#slots = new Semaphore(opts.config.maxInFlight);
    this.#chunkSize = Math.max(1, Math.min(opts.chunkSize ?? 64, opts.config.maxInFlight));
    const maxBytes = opts.config.maxMessageBytes;
    this.#decode = opts.decode ?? ((value, encoding) => decodeRequest(value, encoding, { maxBytes }));
  }

  status(): ProcessorStatus {
    return {
      running: this.#running,
      joined: this.#joined,
      memberId: this.#memberId,
      generation: this.#generation,
      assignment: this.#assignment,
      paused: this.#paused,
      pauseReason: this.#pauseReason,
      inFlight: this.#slots.inUse,
      exactlyOnce: this.#c.exactlyOnce,
      lastError: this.#lastError,
    };
  }

  #emit(event: ProcessorEvent): void {
    this.emit('event', event);
  }

  async start(): Promise<void> {
    const { kafka } = this.#o;
    const c = this.#c;
    // The idempotent producer keeps retrying (kafkajs's default for it): a send must not give
    // up and be re-sent under new sequence numbers. A batch that is abandoned (rebalance,
    // drain timeout) stops waiting for it instead.
    const retry = { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 10_000 };
    this.#producer = c.exactlyOnce
      ? kafka.producer({
          idempotent: true,
          maxInFlightRequests: 1,
          transactionalId: c.transactionalId,
          // Short, so a crashed instance's open transaction stops blocking read_committed
          // consumers soon; a chunk's transaction lasts milliseconds when the log is healthy.
          transactionTimeout: 30_000,
          retry,
        })
      : kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation: false, retry });
    this.#consumer = kafka.consumer({
      groupId: c.groupId,
      sessionTimeout: this.#o.sessionTimeoutMs ?? c.sessionTimeoutMs,
      heartbeatInterval: Math.min(3000, Math.floor((this.#o.sessionTimeoutMs ?? c.sessionTimeoutMs) / 3)),
      maxBytesPerPartition: c.fetchMaxBytesPerPartition,
      maxBytes: c.fetchMaxBytes,
      maxWaitTimeInMs: 100,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    const consumer = this.#consumer;
    const ev = consumer.events;
    consumer.on(ev.GROUP_JOIN, ({ payload }) => {
      this.#joined = true;
      this.#memberId = payload.memberId;
      this.#generation++;
      this.#assignment = Object.fromEntries(Object.entries(payload.memberAssignment).map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
      this.#o.metrics.rebalances.inc();
      this.#logger.info('joined consumer group', { groupId: c.groupId, memberId: payload.memberId, assignment: this.#assignment });
      this.#emit({ type: 'joined', assignment: this.#assignment });
      // A pause does not survive a re-join in kafkajs; re-apply it.
      if (this.#paused) consumer.pause([{ topic: c.topics.requests }]);
    });
    consumer.on(ev.REBALANCING, () => {
      this.#joined = false;
      this.#logger.info('consumer group rebalancing', { groupId: c.groupId });
      this.#emit({ type: 'rebalancing' });
    });
    consumer.on(ev.CRASH, ({ payload }) => {
      this.#joined = false;
      this.#lastError = errorMessage(payload.error);
      this.#logger.error('consumer crashed', { err: payload.error, restart: payload.restart });
      this.#emit({ type: 'crashed', error: this.#lastError, restart: payload.restart });
    });
    consumer.on(ev.STOP, () => {
      this.#joined = false;
    });

    await this.#producer.connect();
    await consumer.connect();
    // fromBeginning: a group without committed offsets starts at the earliest offset (SPEC §2).
    await consumer.subscribe({ topics: [c.topics.requests], fromBeginning: true });
    this.#running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: c.partitionsConcurrency,
      eachBatch: (payload) => this.#onBatch(payload),
    });
    this.#pressureTimer = setInterval(() => this.#checkPressure(), 50);
    this.#pressureTimer.unref();
  }

  // ---- backpressure -------------------------------------------------------------------------

  #pressure(): string | undefined {
    if (this.#o.log.underPressure()) return `decision log backlog ${this.#o.log.backlog()}`;
    return this.#o.pressure?.();
  }

  #checkPressure(): void {
    const consumer = this.#consumer;
    if (!consumer || !this.#running) return;
    const reason = this.#pressure();
    this.#o.metrics.logBacklog.set(this.#o.log.backlog());
    if (reason !== undefined && !this.#paused) {
      this.#paused = true;
      this.#pauseReason = reason;
      consumer.pause([{ topic: this.#c.topics.requests }]);
      this.#o.metrics.pausedPartitions.set(Object.values(this.#assignment).reduce((n, ps) => n + ps.length, 0));
      this.#logger.warn('pausing consumption: backpressure', { reason });
      this.#emit({ type: 'paused', reason });
    } else if (reason === undefined && this.#paused) {
      this.#paused = false;
      this.#pauseReason = undefined;
      consumer.resume([{ topic: this.#c.topics.requests }]);
      this.#o.metrics.pausedPartitions.set(0);
      this.#logger.info('resuming consumption: pressure relieved', { backlog: this.#o.log.backlog() });
      this.#emit({ type: 'resumed' });
    }
  }

  // ---- batch handling -----------------------------------------------------------------------

  async #onBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const messages = batch.messages;
    if (messages.length === 0) return;
    // Heartbeats keep the membership alive while a chunk waits (slow database, slow broker).
    // A heartbeat error (the group is rebalancing, the member was fenced) aborts the waits and
    // is rethrown as is, because kafkajs recognises it and re-joins.
    const ctl = new AbortController();
    const ticker = setInterval(() => {
      p.heartbeat().catch((err: unknown) => {
        if (!ctl.signal.aborted) ctl.abort(err);
      });
    }, this.#o.heartbeatIntervalMs ?? 1000);
    let pending: { done: Promise<void>; last: string } | undefined;
    let lastDone: string | undefined;
    const timing = this.#logger.isLevelEnabled('debug') ? { t0: performance.now(), acquire: 0, prepare: 0, wait: 0, commit: 0 } : undefined;
    try {
      for (let i = 0; i < messages.length; i += this.#chunkSize) {
        if (!p.isRunning() || p.isStale() || ctl.signal.aborted) break;
        const chunk = messages.slice(i, i + this.#chunkSize);
        let t = performance.now();
        const permits = await this.#acquire(chunk.length, ctl.signal);
        this.#o.metrics.inFlight.set(this.#slots.inUse);
        if (timing) timing.acquire += performance.now() - t;
        t = performance.now();
        let prepared: Prepared;
        try {
          prepared = await this.#prepare(batch.topic, batch.partition, chunk);
        } catch (err) {
          this.#slots.release(permits);
          throw err;
        }
        if (timing) timing.prepare += performance.now() - t;
        t = performance.now();
        if (pending) {
          await abortable(pending.done, ctl.signal);
          if (timing) timing.wait += performance.now() - t;
          lastDone = pending.last;
          p.resolveOffset(lastDone);
        }
        const done = this.#flush(prepared, ctl.signal).finally(() => {
          this.#slots.release(permits);
          this.#o.metrics.inFlight.set(this.#slots.inUse);
        });
        // Never an unhandled rejection, even if this batch is abandoned while it runs.
        done.catch(() => {});
        pending = { done, last: prepared.lastOffset };
      }
      let t = performance.now();
      if (pending) {
        await abortable(pending.done, ctl.signal);
        lastDone = pending.last;
        p.resolveOffset(lastDone);
        pending = undefined;
      }
      if (timing) timing.wait += performance.now() - t;
      t = performance.now();
      if (lastDone !== undefined && !this.#c.exactlyOnce) await this.#commit(p, lastDone);
      if (timing) {
        timing.commit += performance.now() - t;
        const r = (x: number) => Math.round(x * 10) / 10;
        this.#logger.debug('batch done', {
          partition: batch.partition,
          messages: messages.length,
          ms: r(performance.now() - timing.t0),
          acquireMs: r(timing.acquire),
          prepareMs: r(timing.prepare),
          flushWaitMs: r(timing.wait),
          commitMs: r(timing.commit),
        });
      }
    } catch (err) {
      if (ctl.signal.aborted && err === ctl.signal.reason) {
        this.#logger.info('batch abandoned: the group is rebalancing or the member lost its session', {
          topic: batch.topic,
          partition: batch.partition,
          reason: errorMessage(err),
        });
        // Commit what is certainly done, if the coordinator still takes it; then re-join.
        if (lastDone !== undefined && !this.#c.exactlyOnce) await this.#commit(p, lastDone).catch(() => {});
      }
      throw err;
    } finally {
      clearInterval(ticker);
    }
  }

  /** Takes permits, or gives them back at once if the wait was abandoned meanwhile. */
  async #acquire(n: number, signal: AbortSignal): Promise<number> {
    const granted = this.#slots.acquire(n);
    try {
      return await abortable(granted, signal);
    } catch (err) {
      void granted.then((k) => this.#slots.release(k));
      throw err;
    }
  }

  async #commit(p: EachBatchPayload, lastOffset: string): Promise<void> {
    const { topic, partition } = p.batch;
    try {
      await p.commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: nextOffset(lastOffset) }] }] });
      this.#o.metrics.commits.inc({ mode: 'at_least_once' });
      this.counters.committedBatches++;
    } catch (err) {
      // The work is done and durable; a later commit (cumulative) or the next owner's replay
      // (idempotent) covers it. Only a rebalance needs kafkajs's attention.
      this.#o.metrics.errors.inc({ stage: 'commit' });
      const type = (err as { type?: string }).type;
      if (type === 'REBALANCE_IN_PROGRESS' || type === 'ILLEGAL_GENERATION' || type === 'UNKNOWN_MEMBER_ID') throw err;
      this.#logger.warn('offset commit failed; a later commit covers it', { topic, partition, err });
    }
  }

  /** Decodes and scores one chunk; never rejects for bad input or engine failure. */
  async #prepare(topic: string, partition: number, chunk: KafkaMessage[]): Promise<Prepared> {
    const out: Prepared = {
      topic,
      partition,
      lastOffset: chunk[chunk.length - 1]!.offset,
      lightweight: [],
      heavyweight: [],
      dlq: [],
      rows: [],
      timestamps: [],
      decided: 0,
    };
    const m = this.#o.metrics;
    const k = this.counters;
    k.consumed += chunk.length;
    await Promise.all(
      chunk.map(async (msg) => {
        const headers = msg.headers as Headers | undefined;
        const encoding = encodingOf(getHeader(headers, 'content-type'));
        let req: ValidatedRequest;
        try {
          req = this.#decode(msg.value, encoding);
        } catch (err) {
          const kind = err instanceof DecodeError ? err.kind : 'internal';
          const reason = err instanceof DecodeError ? err.message : `internal error while decoding: ${errorMessage(err)}`;
          if (!(err instanceof DecodeError)) this.#logger.error('decoder failed unexpectedly; record sent to the DLQ', { err, topic, partition, offset: msg.offset });
          out.dlq.push(dlqMessage({ topic, partition, offset: msg.offset, key: msg.key, value: msg.value, headers }, reason));
          m.dlq.inc({ reason: kind });
          m.requests.inc({ encoding, outcome: 'rejected' });
          k.rejected++;
          return;
        }
        const scored = await this.#o.breaker.score(req);
        if (!scored.fallback) {
          m.engine.observe(scored.engineSeconds);
          this.#o.onEngineLatency?.(scored.response.inference_time_us);
        } else k.fallbacks++;
        const correlation = getHeader(headers, DECISION_HEADERS.correlationId) ?? `${topic}/${partition}/${msg.offset}`;
        decisionMessages(scored.response, encoding, correlation, out);
        const decidedAt = new Date();
        // FEEDBACK (issue 8): each decision's feature vector goes to the log (features real[])
        // so `tiny-dancer retrain` can train on decisions that got outcomes.
        const featuresOf = decisionFeatures(req, decidedAt);
        for (const d of scored.response.decisions) {
          out.rows.push({ ...d, features: featuresOf(d.candidate_id), decided_at: decidedAt, source_topic: topic, source_partition: partition, source_offset: msg.offset });
          m.decisions.inc({ route: d.use_lightweight ? 'lightweight' : 'heavyweight', reason: d.reason });
          k.decisions++;
          if (d.use_lightweight) k.lightweight++;
          k.reasons[d.reason] = (k.reasons[d.reason] ?? 0) + 1;
        }
        k.decided++;
        out.timestamps.push(Number(msg.timestamp));
        out.decided++;
        m.requests.inc({ encoding, outcome: 'decided' });
      }),
    );
    return out;
  }

  #topicMessages(prep: Prepared): TopicMessages[] {
    const t = this.#c.topics;
    const out: TopicMessages[] = [];
    if (prep.lightweight.length > 0) out.push({ topic: t.lightweight, messages: prep.lightweight });
    if (prep.heavyweight.length > 0) out.push({ topic: t.heavyweight, messages: prep.heavyweight });
    if (prep.dlq.length > 0) out.push({ topic: t.dlq, messages: prep.dlq });
    return out;
  }

  /**
   * Retries a retriable step with jittered backoff until it succeeds, the batch is abandoned,
   * or the error is not retriable. The producer and the log retry internally already; this
   * loop covers what outlasts their budgets (a broker restart, a long database outage).
   */
  async #retrying<T>(stage: string, fn: () => Promise<T>, signal: AbortSignal, abandonInFlight = true): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await (abandonInFlight ? abortable(fn(), signal) : fn());
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const retriable = (err as { retriable?: boolean }).retriable !== false;
        this.#o.metrics.errors.inc({ stage });
        this.#lastError = `${stage}: ${errorMessage(err)}`;
        if (!retriable || (!this.#running && attempt >= 2)) throw err;
        const delay = Math.min(10_000, 200 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
        this.#logger.warn(`${stage} failed; retrying`, { err, attempt: attempt + 1, delayMs: Math.round(delay) });
        await abortable(sleep(delay), signal);
      }
    }
  }

  async #flush(prep: Prepared, signal: AbortSignal): Promise<void> {
    const records = this.#topicMessages(prep);
    const producer = this.#producer!;
    const logged = prep.rows.length > 0 ? this.#retrying('log', () => this.#o.log.write(prep.rows), signal) : Promise.resolve();
    if (this.#c.exactlyOnce) {
      // Serialise transactions (one transactional producer), FIFO so a partition's chunks
      // commit their offsets in order.
      const previous = this.#txLock;
      let unlock!: () => void;
      this.#txLock = new Promise<void>((r) => (unlock = r));
      try {
        await previous;
        // Not abandoned mid-way: one transaction at a time, so it must end (commit or abort)
        // before the lock is released; #transaction aborts it itself when the batch is abandoned.
        await this.#retrying('transaction', () => this.#transaction(prep, records, logged, signal), signal, false);
      } finally {
        unlock();
      }
    } else {
      const produced =
        records.length > 0 ? this.#retrying('produce', () => producer.sendBatch({ topicMessages: records, acks: -1 }), signal) : Promise.resolve();
      if (process.env.TD_DEBUG_FLUSH === '1') {
        const t0 = performance.now();
        void produced.then(() => this.#logger.debug('flush produce', { ms: performance.now() - t0 }));
        void logged.then(() => this.#logger.debug('flush log', { ms: performance.now() - t0 }));
      }
      await Promise.all([produced, logged]);
    }
    this.counters.produced += prep.lightweight.length + prep.heavyweight.length + prep.dlq.length;
    this.counters.dlq += prep.dlq.length;
    const now = Date.now();
    for (const ts of prep.timestamps) {
      if (!Number.isFinite(ts)) continue;
      const ms = Math.max(0, now - ts);
      this.#o.metrics.endToEnd.observe(ms / 1000);
      this.#o.onEndToEnd?.(ms * 1000);
    }
  }

  async #transaction(prep: Prepared, records: TopicMessages[], logged: Promise<void>, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason;
    const tx = await this.#producer!.transaction();
    try {
      if (records.length > 0) await tx.sendBatch({ topicMessages: records, acks: -1 });
      // The rows must be durable before the offsets move, or a crash right after the commit
      // would lose them from Postgres for good.
      await abortable(logged, signal);
      await tx.sendOffsets({
        consumerGroupId: this.#c.groupId,
        topics: [{ topic: prep.topic, partitions: [{ partition: prep.partition, offset: nextOffset(prep.lastOffset) }] }],
      });
      await tx.commit();
      this.#o.metrics.commits.inc({ mode: 'exactly_once' });
      this.counters.committedBatches++;
    } catch (err) {
      await tx.abort().catch(() => {});
      throw err;
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Drains: stops fetching, lets running batches finish their chunk in flight and commit, then
   * leaves the group — all within `timeoutMs`. Returns true when it finished in time. Work not
   * committed in time is redelivered to the next owner (no duplicate rows).
   */
  stop(timeoutMs: number = this.#c.drainTimeoutMs): Promise<boolean> {
    if (!this.#stopping) {
      this.#stopping = (async () => {
        const started = Date.now();
        this.#emit({ type: 'draining' });
        this.#logger.info('draining: finishing in-flight work and committing', { inFlight: this.#slots.inUse, timeoutMs });
        if (this.#pressureTimer) clearInterval(this.#pressureTimer);
        const consumer = this.#consumer;
        const work = (async () => {
          // stop() waits for the running eachBatch calls, then leaves the group.
          if (consumer) await consumer.stop().catch((err: unknown) => this.#logger.warn('consumer stop failed', { err }));
        })();
        let timer: NodeJS.Timeout | undefined;
        const clean = await Promise.race([
          work.then(() => true),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), timeoutMs);
          }),
        ]);
        clearTimeout(timer);
        this.#running = false;
        this.#joined = false;
        const rest = Math.max(1000, timeoutMs - (Date.now() - started));
        await Promise.race([
          Promise.allSettled([consumer?.disconnect(), this.#producer?.disconnect()]),
          sleep(rest),
        ]);
        const ms = Date.now() - started;
        if (clean) this.#logger.info('drained', { ms });
        else this.#logger.warn('drain timed out; uncommitted work will be redelivered (no duplicate rows)', { ms, inFlight: this.#slots.inUse });
        this.#emit({ type: 'drained', clean, ms });
        return clean;
      })();
    }
    return this.#stopping;
  }
}
