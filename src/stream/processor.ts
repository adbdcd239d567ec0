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
// Flow. kafkajs fetches a round of batches (one per partition) and hands up to
// `partitionsConcurrency` of them to eachBatch at once. Requests are taken in chunks; a chunk
// holds permits of a process-wide semaphore (TD_MAX_IN_FLIGHT) from decoding until its records
// are acknowledged and its rows durable — that is the bound on work in memory. In at-least-once
// mode eachBatch returns as soon as its chunks are scored and handed to the flusher, so the next
// fetch overlaps the previous round's Kafka acknowledgements and Postgres writes; an offset
// tracker (./offsets.ts) commits, per partition, the end of the longest finished prefix of
// chunks. When the decision log (or the pool) reports pressure, the request partitions are
// paused; a chunk that cannot get permits waits, heart-beating: nothing is dropped and the
// consumer stays in its group. Exactly-once mode runs each chunk as one transaction inside
// eachBatch (produce, wait for the rows, sendOffsets, commit), one transaction at a time.
//
// Rebalances and shutdown. A batch stops taking new chunks when the consumer stops, drains, or
// the partition is revoked/seeked (isRunning/isStale). After a rebalance kafkajs restarts every
// partition from its committed offset; chunks of the old generation still finish (their rows
// are idempotent, their records harmless duplicates) but are never committed, so a partition
// that moved to another member cannot be set back. A drain pauses fetching, waits until every
// chunk is durable and committed (bounded by TD_DRAIN_TIMEOUT_MS), then leaves the group.
import { EventEmitter, setMaxListeners } from 'node:events';
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Producer, TopicMessages } from 'kafkajs';
import type { Config } from '../config.js';
import type { ValidatedRequest } from '../engine/validate.js';
import type { RoutingDecision } from '../engine/types.js';
import { InvalidInputError, errorMessage, oneLine } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import type { ScoreResult, ScoreTask, ScoringBreaker } from '../resilience/breaker.js';
import { decodeRequest } from '../wire/decode-request.js';
import { DecodeError } from '../wire/errors.js';
import { encodingOf, getHeader, type Encoding, type Headers } from '../wire/headers.js';
import { dlqMessage } from './dlq.js';
import { DECISION_PRODUCER } from './kafka.js';
import { DECISION_HEADERS, decisionMessages } from './producer.js';
import { OffsetTracker, type TrackedChunk } from './offsets.js';
import { MessageLists, ROUTE, RecordPacker, unpackRecords, type RouteTopics } from './records.js';
import { ProducerThread, type ProducerThreadOptions } from './send/thread.js';
import { Semaphore } from './semaphore.js';
import { FEATURE_COUNT, decisionFeatures } from '../engine/features.js';
import { RequestTracer } from '../observe/tracing.js';
import { TRACE_HEADERS } from '../wire/trace.js';

/** One decision as the log stores it: the decision plus where its request came from. */
export interface LoggedDecision extends RoutingDecision {
  decided_at: Date;
  /** The candidate's feature vector, for retraining (FEEDBACK, issue 8). */
  features?: Float32Array | undefined;
  source_topic: string;
  source_partition: number;
  source_offset: string;
  /** The request's W3C trace id, when its record carried a trace context (or a span began one). */
  trace_id?: string | undefined;
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
  /**
   * Which records go to the scorer as raw bytes (decoded on a worker thread) instead of being
   * decoded here; none when absent.
   */
  encodedScoring?: (encoding: Encoding) => boolean;
  /** Engine time of each scored request (µs), for the control plane's latency view. */
  onEngineLatency?: (us: number) => void;
  /** Record timestamp → decisions acknowledged and durable (µs), per request. */
  onEndToEnd?: (us: number) => void;
  /**
   * At-least-once mode: produce from a thread of its own (./send/thread.ts) instead of this
   * one. Default true. Exactly-once mode always produces here (its transactions carry the
   * consumed offsets, which only this thread's consumer knows).
   */
  producerThread?: boolean;
  /** Builds the producer thread (default: `new ProducerThread(opts)`); tests keep a handle on it. */
  createProducerThread?: (opts: ProducerThreadOptions) => ProducerThread;
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
  /** Decision and DLQ records: packed for the producer thread, or kafkajs Messages. */
  records: RecordPacker | MessageLists;
  rows: LoggedDecision[];
  /** Request record timestamps (ms) of the decided requests, for end-to-end latency. */
  timestamps: number[];
  decided: number;
}

/** First guess of a chunk's packed bytes per request (10 decisions ≈ 1.5 KB; the pack grows). */
const PACK_BYTES_PER_REQUEST = 2048;

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
  readonly #tracer: RequestTracer;
  #consumer: Consumer | undefined;
  /** The producer on this thread (exactly-once mode, or producerThread: false)... */
  #producer: Producer | undefined;
  /** ...or the producer thread (at-least-once mode, the default). */
  #thread: ProducerThread | undefined;
  readonly #routeTopics: RouteTopics;
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
  #draining = false;
  /** Aborted when a drain starts: batches stop waiting for permits or transactions. */
  readonly #drainCtl = new AbortController();
  /** Aborted when the drain's deadline passes: flushes stop waiting for Kafka or Postgres. */
  readonly #deadlineCtl = new AbortController();
  readonly #offsets = new OffsetTracker();
  #committing: Promise<void> | undefined;
  #commitAgain = false;
  #commitRetry: NodeJS.Timeout | undefined;
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
    // Every chunk in flight waits on these two signals (its produce and log steps, each through
    // abortable()): as many listeners as permits allow, removed as the steps settle. Node's
    // default of 10 would warn of a leak whenever more than a few chunks are in flight.
    setMaxListeners(4 * opts.config.maxInFlight + 16, this.#drainCtl.signal, this.#deadlineCtl.signal);
    const maxBytes = opts.config.maxMessageBytes;
    const t = opts.config.topics;
    this.#routeTopics = [t.lightweight, t.heavyweight, t.dlq];
    this.#tracer = new RequestTracer({ enabled: opts.config.tracing });
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
    if (c.exactlyOnce) {
      this.#producer = kafka.producer({
        ...DECISION_PRODUCER,
        maxInFlightRequests: 1,
        transactionalId: c.transactionalId,
        // Short, so a crashed instance's open transaction stops blocking read_committed
        // consumers soon; a chunk's transaction lasts milliseconds when the log is healthy.
        transactionTimeout: 30_000,
      });
    } else if (this.#o.producerThread !== false) {
      const opts: ProducerThreadOptions = {
        brokers: c.brokers,
        clientId: c.clientId,
        kafkaSecurity: c.kafkaSecurity,
        topics: this.#routeTopics,
        logger: this.#logger,
        onUnexpectedExit: () => this.#o.metrics.producerThreadExits.inc(),
      };
      this.#thread = this.#o.createProducerThread ? this.#o.createProducerThread(opts) : new ProducerThread(opts);
    } else {
      this.#producer = kafka.producer(DECISION_PRODUCER);
    }
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
      this.#offsets.startGeneration(this.#generation);
      this.#assignment = Object.fromEntries(Object.entries(payload.memberAssignment).map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
      this.#o.metrics.rebalances.inc();
      this.#logger.info('joined consumer group', { groupId: c.groupId, memberId: payload.memberId, assignment: this.#assignment });
      this.#emit({ type: 'joined', assignment: this.#assignment });
      // A pause does not survive a re-join in kafkajs; re-apply it.
      if (this.#paused) consumer.pause([{ topic: c.topics.requests }]);
    });
    consumer.on(ev.REBALANCING, () => {
      this.#joined = false;
      // Nothing of the ending generation is committed any more: the next one replays it.
      this.#offsets.startGeneration(-this.#generation - 1);
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

    if (this.#thread) await this.#thread.start();
    else await this.#producer!.connect();
    this.#logger.info('decision producer connected', { on: this.#thread ? 'producer thread' : 'consuming thread', exactlyOnce: c.exactlyOnce });
    await consumer.connect();
    // fromBeginning: a group without committed offsets starts at the earliest offset (SPEC §2).
    await consumer.subscribe({ topics: [c.topics.requests], fromBeginning: true });
    this.#running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: c.partitionsConcurrency,
      eachBatch: (payload) => (c.exactlyOnce ? this.#onBatchTransactional(payload) : this.#onBatch(payload)),
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

  /**
   * Heartbeats while a batch waits (for permits, for a transaction). A heartbeat error (the
   * group is rebalancing, the member was fenced) aborts the waits: it is rethrown as is,
   * because kafkajs recognises it and re-joins. A drain aborts them too.
   */
  #batchSignal(p: EachBatchPayload): { signal: AbortSignal; flushSignal: AbortSignal; done: () => void } {
    const ctl = new AbortController();
    const ticker = setInterval(() => {
      p.heartbeat().catch((err: unknown) => {
        if (!ctl.signal.aborted) ctl.abort(err);
      });
    }, this.#o.heartbeatIntervalMs ?? 1000);
    return {
      signal: AbortSignal.any([ctl.signal, this.#drainCtl.signal]),
      // A transaction in flight is abandoned (aborted) on a rebalance or at the drain's
      // deadline, not when the drain starts: it is short and commits its own offsets.
      flushSignal: AbortSignal.any([ctl.signal, this.#deadlineCtl.signal]),
      done: () => clearInterval(ticker),
    };
  }

  #takeMore(p: EachBatchPayload, signal: AbortSignal): boolean {
    return p.isRunning() && !p.isStale() && !signal.aborted && !this.#draining;
  }

  /** At-least-once: score chunk after chunk and hand each to the flusher; do not wait for it. */
  async #onBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const messages = batch.messages;
    if (messages.length === 0) return;
    const generation = this.#generation;
    const { signal, done } = this.#batchSignal(p);
    try {
      for (let i = 0; i < messages.length; i += this.#chunkSize) {
        if (!this.#takeMore(p, signal) || generation !== this.#generation) break;
        const chunk = messages.slice(i, i + this.#chunkSize);
        const { permits, prepared } = await this.#admit(batch.topic, batch.partition, chunk, signal);
        const tracked = this.#offsets.begin(batch.topic, batch.partition, generation, chunk[0]!.offset, prepared.lastOffset);
        // Not abandoned on a rebalance: the work finishes (idempotent rows, at most duplicate
        // records) and simply is not committed. Only the drain's deadline cuts it short.
        this.#flush(prepared, this.#deadlineCtl.signal)
          .then(
            () => this.#finished(tracked),
            (err: unknown) => this.#failed(tracked, err),
          )
          .finally(() => this.#release(permits));
        p.resolveOffset(prepared.lastOffset);
      }
    } catch (err) {
      this.#batchFailed(batch, err, signal);
    } finally {
      done();
    }
  }

  /**
   * How a batch loop ends on an error (both commit modes): a drain's abort ends it quietly (the
   * drain commits what finished); a rebalance or lost session is logged and rethrown as is, so
   * kafkajs recognises it and re-joins; anything else is rethrown.
   */
  #batchFailed(batch: EachBatchPayload['batch'], err: unknown, signal: AbortSignal): void {
    if (this.#draining && signal.aborted) return;
    if (signal.aborted && err === signal.reason) {
      this.#logger.info('batch abandoned: the group is rebalancing or the member lost its session', {
        topic: batch.topic,
        partition: batch.partition,
        reason: errorMessage(err),
      });
    }
    throw err;
  }

  #finished(chunk: TrackedChunk): void {
    if (this.#offsets.finish(chunk)) this.#scheduleCommit();
  }

  #failed(chunk: TrackedChunk, err: unknown): void {
    this.#o.metrics.errors.inc({ stage: 'flush' });
    this.#lastError = errorMessage(err);
    if (this.#draining) return; // the drain's deadline passed: redelivered after the restart
    const seekTo = this.#offsets.fail(chunk);
    this.#logger.error('could not deliver a chunk of decisions; consuming it again', {
      err,
      topic: chunk.topic,
      partition: chunk.partition,
      from: chunk.first,
      to: chunk.last,
    });
    if (seekTo !== undefined) {
      try {
        this.#consumer?.seek({ topic: chunk.topic, partition: chunk.partition, offset: seekTo });
      } catch (seekErr) {
        this.#logger.warn('seek failed; the partition resumes from its committed offset after the next rebalance', { err: seekErr });
      }
    }
  }

  /** Commits what the tracker says is finished; one commit at a time, coalesced. */
  #scheduleCommit(): void {
    if (this.#committing) {
      this.#commitAgain = true;
      return;
    }
    this.#committing = this.#commitNow().finally(() => {
      this.#committing = undefined;
      if (this.#commitAgain) {
        this.#commitAgain = false;
        this.#scheduleCommit();
      }
    });
  }

  async #commitNow(): Promise<void> {
    const consumer = this.#consumer;
    if (!consumer || !this.#joined) return; // mid-rebalance: the next generation replays it
    const offsets = this.#offsets.takeCommittable();
    if (offsets.length === 0) return;
    try {
      await consumer.commitOffsets(offsets);
      this.#offsets.committed(offsets);
      this.#o.metrics.commits.inc({ mode: 'at_least_once' });
      this.counters.committedBatches++;
    } catch (err) {
      // The work is durable; the offsets stay in the tracker and are committed next time.
      this.#o.metrics.errors.inc({ stage: 'commit' });
      this.#logger.warn('offset commit failed; retrying shortly', { err });
      if (!this.#commitRetry) {
        this.#commitRetry = setTimeout(() => {
          this.#commitRetry = undefined;
          this.#scheduleCommit();
        }, 500);
        this.#commitRetry.unref();
      }
    }
  }

  /** Exactly-once: each chunk is one transaction, finished inside eachBatch, in order. */
  async #onBatchTransactional(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const messages = batch.messages;
    if (messages.length === 0) return;
    const { signal, flushSignal, done } = this.#batchSignal(p);
    let pending: { done: Promise<void>; last: string } | undefined;
    try {
      for (let i = 0; i < messages.length; i += this.#chunkSize) {
        if (!this.#takeMore(p, signal)) break;
        const chunk = messages.slice(i, i + this.#chunkSize);
        const { permits, prepared } = await this.#admit(batch.topic, batch.partition, chunk, signal);
        // The next chunk is scored while this one's transaction runs; transactions themselves
        // are serialised (#flush), so offsets are committed in order.
        if (pending) {
          await abortable(pending.done, signal);
          p.resolveOffset(pending.last);
        }
        const flushed = this.#flush(prepared, flushSignal).finally(() => this.#release(permits));
        flushed.catch(() => {});
        pending = { done: flushed, last: prepared.lastOffset };
      }
      if (pending) {
        await abortable(pending.done, signal);
        p.resolveOffset(pending.last);
      }
    } catch (err) {
      this.#batchFailed(batch, err, signal);
    } finally {
      done();
    }
  }

  /**
   * Admits one chunk into the bounded in-flight window (both commit modes share it): takes its
   * permits, then decodes and scores it. The caller gives the permits back with #release once
   * the chunk's records and rows are settled.
   */
  async #admit(
    topic: string,
    partition: number,
    chunk: KafkaMessage[],
    signal: AbortSignal,
  ): Promise<{ permits: number; prepared: Prepared }> {
    const permits = await this.#acquire(chunk.length, signal);
    this.#o.metrics.inFlight.set(this.#slots.inUse);
    try {
      return { permits, prepared: await this.#prepare(topic, partition, chunk) };
    } catch (err) {
      this.#release(permits);
      throw err;
    }
  }

  #release(permits: number): void {
    this.#slots.release(permits);
    this.#o.metrics.inFlight.set(this.#slots.inUse);
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

  /** Decodes and scores one chunk; never rejects for bad input or engine failure. */
  async #prepare(topic: string, partition: number, chunk: KafkaMessage[]): Promise<Prepared> {
    const out: Prepared = {
      topic,
      partition,
      lastOffset: chunk[chunk.length - 1]!.offset,
      records: this.#thread ? new RecordPacker(chunk.length * PACK_BYTES_PER_REQUEST) : new MessageLists(),
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
        const t = this.#tracer.begin(getHeader(headers, TRACE_HEADERS.traceparent), getHeader(headers, TRACE_HEADERS.tracestate), { topic, partition, offset: msg.offset });
        const reject = (err: unknown) => {
          const kind = err instanceof DecodeError ? err.kind : err instanceof InvalidInputError ? 'invalid' : 'internal';
          const reason = err instanceof InvalidInputError ? oneLine(err.message) : `internal error while decoding: ${errorMessage(err)}`;
          if (!(err instanceof InvalidInputError)) this.#logger.error('decoder failed unexpectedly; record sent to the DLQ', { err, topic, partition, offset: msg.offset });
          const dead = dlqMessage({ topic, partition, offset: msg.offset, key: msg.key, value: msg.value, headers }, reason);
          if (t.headers) Object.assign(dead.headers, t.headers);
          t.rejected(reason);
          out.records.add(ROUTE.dlq, dead.key, dead.value, dead.headers);
          m.dlq.inc({ reason: kind });
          m.requests.inc({ encoding, outcome: 'rejected' });
          k.rejected++;
        };
        // Decoded here, or (TD_DECODE_IN_WORKERS) by the pool's worker from the raw bytes; then
        // the request is decoded here only if the breaker's fallback needs it.
        let req: ValidatedRequest | undefined;
        const decodeHere = (): ValidatedRequest => (req ??= this.#decode(msg.value, encoding));
        let task: ScoreTask;
        try {
          const raw = msg.value;
          task =
            this.#o.encodedScoring?.(encoding) === true && raw !== null && raw.length > 0 && raw.length <= this.#c.maxMessageBytes
              ? { kind: 'encoded', bytes: raw, encoding }
              : { kind: 'validated', request: decodeHere() };
        } catch (err) {
          reject(err);
          return;
        }
        let scored: ScoreResult;
        try {
          scored = await this.#o.breaker.score(task, decodeHere);
        } catch (err) {
          reject(err);
          return;
        }
        if (!scored.fallback) {
          m.engine.observe(scored.engineSeconds);
          this.#o.onEngineLatency?.(scored.response.inference_time_us);
        } else k.fallbacks++;
        const correlation = getHeader(headers, DECISION_HEADERS.correlationId) ?? `${topic}/${partition}/${msg.offset}`;
        decisionMessages(scored.response, encoding, correlation, out.records, t.headers);
        t.decided(scored.response.decisions, scored.fallback);
        const decidedAt = new Date();
        // FEEDBACK (issue 8): each decision's feature vector goes to the log (features real[])
        // so `tiny-dancer retrain` can train on decisions that got outcomes.
        // They come with the engine's response (serve's RouterPool has returnFeatures: the
        // workers computed them anyway); otherwise (a breaker fallback, a pool without them)
        // they are computed here from the request if it was decoded here, else logged NULL.
        const shipped = scored.response.features;
        const featuresOf =
          shipped !== undefined && shipped.length === scored.response.decisions.length * FEATURE_COUNT
            ? (_id: string, r: number) => shipped.subarray(r * FEATURE_COUNT, (r + 1) * FEATURE_COUNT)
            : req
              ? decisionFeatures(req, decidedAt)
              : () => undefined;
        for (let r = 0; r < scored.response.decisions.length; r++) {
          const d = scored.response.decisions[r]!;
          // PERF: spelled out rather than `{ ...d, … }`: a spread copy per decision was a
          // visible share of the main thread's time and garbage at full rate.
          out.rows.push({
            request_id: d.request_id,
            candidate_id: d.candidate_id,
            confidence: d.confidence,
            uncertainty: d.uncertainty,
            use_lightweight: d.use_lightweight,
            rank: d.rank,
            model_version: d.model_version,
            reason: d.reason,
            metadata: d.metadata,
            inference_time_us: d.inference_time_us,
            features: featuresOf(d.candidate_id, r),
            decided_at: decidedAt,
            source_topic: topic,
            source_partition: partition,
            source_offset: msg.offset,
            trace_id: t.traceId,
          });
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

  /** A chunk's records as kafkajs wants them, whichever writer gathered them. */
  #topicMessages(out: Prepared['records']): TopicMessages[] {
    if (out instanceof MessageLists) return out.topicMessages(this.#routeTopics);
    const pack = out.finish();
    return unpackRecords(pack.buffer, pack.length, this.#routeTopics);
  }

  async #flush(prep: Prepared, signal: AbortSignal): Promise<void> {
    const out = prep.records;
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
        await this.#retrying('transaction', () => this.#transaction(prep, this.#topicMessages(out), logged, signal), signal, false);
      } finally {
        unlock();
      }
    } else {
      let produced: Promise<unknown> = Promise.resolve();
      if (out.size > 0) {
        if (out instanceof RecordPacker) {
          const pack = out.finish();
          produced = this.#retrying('produce', () => this.#thread!.send(pack), signal);
        } else {
          const topicMessages = this.#topicMessages(out);
          produced = this.#retrying('produce', () => this.#producer!.sendBatch({ topicMessages, acks: -1 }), signal);
        }
      }
      await Promise.all([produced, logged]);
    }
    this.counters.produced += out.size;
    this.counters.dlq += out.count(ROUTE.dlq);
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
   * Drains: stops fetching and taking new chunks, waits until every chunk in flight is
   * acknowledged, logged and committed, then leaves the group — all within `timeoutMs`. Returns
   * true when it finished in time. Work not committed in time is redelivered to the next owner
   * (no duplicate rows).
   */
  stop(timeoutMs: number = this.#c.drainTimeoutMs): Promise<boolean> {
    if (!this.#stopping) {
      this.#stopping = (async () => {
        const started = Date.now();
        const deadline = started + timeoutMs;
        this.#emit({ type: 'draining' });
        this.#logger.info('draining: finishing in-flight work and committing', { inFlight: this.#slots.inUse, timeoutMs });
        if (this.#pressureTimer) clearInterval(this.#pressureTimer);
        this.#draining = true;
        this.#drainCtl.abort(new Error('draining'));
        const consumer = this.#consumer;
        // Paused, the consumer stays in the group (so commits are still accepted) but fetches
        // nothing new.
        if (consumer && this.#running) consumer.pause([{ topic: this.#c.topics.requests }]);
        let clean = false;
        while (Date.now() < deadline) {
          if (this.#slots.inUse === 0 && !this.#committing) {
            if (this.#offsets.settled()) {
              clean = true;
              break;
            }
            this.#scheduleCommit();
          }
          await sleep(20);
        }
        if (!clean) this.#deadlineCtl.abort(new Error('drain deadline'));
        if (this.#commitRetry) clearTimeout(this.#commitRetry);
        const rest = () => Math.max(1000, deadline - Date.now());
        // stop() waits for running eachBatch calls (they return at once now), then leaves.
        if (consumer) {
          await Promise.race([consumer.stop().catch((err: unknown) => this.#logger.warn('consumer stop failed', { err })), sleep(rest())]);
        }
        this.#running = false;
        this.#joined = false;
        await Promise.race([Promise.allSettled([consumer?.disconnect(), this.#producer?.disconnect(), this.#thread?.close(rest())]), sleep(rest())]);
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
