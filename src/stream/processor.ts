// The stream processor: the loop that wires the stages together. Request topic in → decode and
// score (through the breaker) → the chunk stage (./chunk.ts: decisions, DLQ records, rows) →
// a delivery sink (./sink.ts) → offsets committed. Invalid records go to the DLQ and the stream
// goes on.
//
// Delivery. A request's response record (the responses topic, when set) travels with its
// decisions in the same chunk, so it has their guarantee. At-least-once (default,
// ./alo-sink.ts): a chunk's offsets are committed only after its decisions are acknowledged by
// every in-sync replica (idempotent producer, acks=-1) AND its rows are durable in Postgres;
// the commit scheduler (./commit-scheduler.ts) commits, per partition, the end of the longest
// finished prefix of chunks. A crash at any point replays from the last commit; a replay adds
// no row (the log is idempotent on (request_id, candidate_id)) and may repeat decision and
// response records. Exactly-once (TD_EXACTLY_ONCE=true, ./transactional-sink.ts): a
// partition's decisions, responses, DLQ records and consumed offsets are one Kafka transaction
// per commit interval on that partition's own transactional producer, committed only once the
// rows are durable; read_committed consumers see each decision and response once.
//
// Flow. kafkajs fetches a round of batches (one per partition) and hands up to
// `partitionsConcurrency` of them to eachBatch at once. Requests are taken in chunks; a chunk
// holds permits of a process-wide semaphore (TD_MAX_IN_FLIGHT) from decoding until the sink
// delivered it, or until it holds nothing in memory any more (exactly-once: records sent, rows
// durable, its transaction waiting for its tick) — that is the bound on work in memory. eachBatch returns as soon as its chunks are
// scored and handed to the sink, so the next fetch overlaps the previous round's Kafka
// acknowledgements, Postgres writes and transactions. When the decision log (or the pool)
// reports pressure, the request partitions are paused; a chunk that cannot get permits waits,
// heart-beating: nothing is dropped and the consumer stays in its group.
//
// Rebalances and shutdown. A batch stops taking new chunks when the consumer stops, drains, or
// the partition is revoked/seeked (isRunning/isStale). After a rebalance kafkajs restarts every
// partition from its committed offset; at-least-once chunks of the old generation still finish
// (their rows are idempotent, their records harmless duplicates) but are never committed, so a
// partition that moved to another member cannot be set back. A drain pauses fetching, waits
// until every chunk is durable and committed (bounded by TD_DRAIN_TIMEOUT_MS), then leaves the
// group.
import { EventEmitter, setMaxListeners } from 'node:events';
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { Config } from '../config.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { countingObserver, newStreamCounters, type StreamCounters } from './accounting.js';
import { AtLeastOnceSink } from './alo-sink.js';
import { Backpressure } from './backpressure.js';
import type { ScoringBreaker } from '../resilience/breaker.js';
import { buildChunk, type Chunk, type ChunkObserver, type ResponseOptions } from './chunk.js';
import { scoreRecord, type Decoder, type Scoring } from './score.js';
import { RequestTracer } from '../observe/tracing.js';
import { decodeRequest } from '../engine/decode.js';
import type { Encoding } from '../wire/headers.js';
import { CommitScheduler } from './commit-scheduler.js';
import type { TrackedChunk } from './offsets.js';
import type { RecordWriter, RouteTopics } from './records.js';
import { ROUTE } from './records.js';
import { abortable, type RetryOptions } from './retry.js';
import type { ProducerThread, ProducerThreadOptions } from './send/thread.js';
import { Semaphore } from './semaphore.js';
import type { BatchTicket, DecisionLogPort, DeliverySink } from './sink.js';
import { StaleChunkError, TransactionalSink } from './transactional-sink.js';

export type { LoggedDecision } from './chunk.js';
export type { DecisionLogPort } from './sink.js';
export type { StreamCounters } from './accounting.js';

export type { Decoder } from './score.js';

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

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Processor extends EventEmitter {
  readonly #o: ProcessorOptions;
  readonly #c: Config;
  readonly #logger: Logger;
  readonly #slots: Semaphore;
  readonly #chunkSize: number;
  readonly #scoring: Scoring;
  #consumer: Consumer | undefined;
  #sink: DeliverySink | undefined;
  /** At-least-once mode: commits the consumer's offsets of delivered chunks. */
  readonly #commits: CommitScheduler;
  readonly #routeTopics: RouteTopics;
  /** The responses topic's options (docs/contracts.md §12); undefined while it is off. */
  readonly #responses: ResponseOptions | undefined;
  #running = false;
  #joined = false;
  #memberId: string | undefined;
  #generation = 0;
  #assignment: Record<string, number[]> = {};
  readonly #backpressure: Backpressure;
  #lastError: string | undefined;
  #stopping: Promise<boolean> | undefined;
  #draining = false;
  /** Aborted when a drain starts: batches stop waiting for permits or transactions. */
  readonly #drainCtl = new AbortController();
  /** Aborted when the drain's deadline passes: deliveries stop waiting for Kafka or Postgres. */
  readonly #deadlineCtl = new AbortController();
  readonly #observer: ChunkObserver;
  readonly counters: StreamCounters = newStreamCounters();

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
    this.#routeTopics = t.responses === undefined ? [t.lightweight, t.heavyweight, t.dlq] : [t.lightweight, t.heavyweight, t.dlq, t.responses];
    this.#responses = t.responses === undefined ? undefined : { topK: opts.config.responseTopK };
    this.#scoring = {
      breaker: opts.breaker,
      decode: opts.decode ?? ((value, encoding) => decodeRequest(value, encoding, { maxBytes })),
      encodedScoring: opts.encodedScoring,
      maxMessageBytes: maxBytes,
      tracer: new RequestTracer({ enabled: opts.config.tracing }),
    };
    this.#commits = new CommitScheduler({
      commit: (offsets) => this.#consumer!.commitOffsets(offsets),
      canCommit: () => this.#consumer !== undefined && this.#joined,
      onCommitted: () => {
        this.#o.metrics.commits.inc({ mode: 'at_least_once' });
        this.counters.committedBatches++;
      },
      onError: (err) => {
        this.#o.metrics.errors.inc({ stage: 'commit' });
        this.#logger.warn('offset commit failed; retrying shortly', { err });
      },
    });
    this.#observer = countingObserver(this.counters, opts.metrics, this.#logger, opts.onEngineLatency);
    this.#backpressure = new Backpressure({
      topic: opts.config.topics.requests,
      log: opts.log,
      pressure: opts.pressure,
      metrics: opts.metrics,
      logger: this.#logger,
      ownedPartitions: () => Object.values(this.#assignment).reduce((n, ps) => n + ps.length, 0),
      onChange: (e) => this.#emit(e),
    });
  }

  status(): ProcessorStatus {
    return {
      running: this.#running,
      joined: this.#joined,
      memberId: this.#memberId,
      generation: this.#generation,
      assignment: this.#assignment,
      paused: this.#backpressure.paused,
      pauseReason: this.#backpressure.reason,
      inFlight: this.#slots.inUse,
      exactlyOnce: this.#c.exactlyOnce,
      lastError: this.#lastError,
    };
  }

  #emit(event: ProcessorEvent): void {
    this.emit('event', event);
  }

  /** Retry hooks of a delivery stage: metrics, a log line per failed attempt, the last error. */
  #retry(stage: string): RetryOptions {
    return {
      persistent: () => this.#running,
      onError: (err, attempt, delayMs) => {
        this.#o.metrics.errors.inc({ stage });
        this.#lastError = `${stage}: ${errorMessage(err)}`;
        if (delayMs !== undefined) this.#logger.warn(`${stage} failed; retrying`, { err, attempt: attempt + 1, delayMs });
      },
    };
  }

  #createSink(): DeliverySink {
    const { kafka } = this.#o;
    const c = this.#c;
    if (c.exactlyOnce) {
      return new TransactionalSink({
        kafka,
        log: this.#o.log,
        topics: this.#routeTopics,
        groupId: c.groupId,
        idPrefix: c.transactionalId,
        commitIntervalMs: c.eosCommitIntervalMs,
        maxRequests: Math.max(this.#chunkSize, Math.floor(c.maxInFlight / 2)),
        // Short, so a crashed instance's open transaction stops blocking read_committed
        // consumers soon when no one takes its partitions over.
        transactionTimeoutMs: 30_000,
        fencedWaitMs: this.#o.sessionTimeoutMs ?? c.sessionTimeoutMs,
        seek: (topic, partition, offset) => this.#consumer?.seek({ topic, partition, offset }),
        logger: this.#logger,
        retry: this.#retry('log'),
        onCommitted: () => {
          this.#o.metrics.commits.inc({ mode: 'exactly_once' });
          this.counters.committedBatches++;
        },
        onError: (stage, err) => {
          this.#o.metrics.errors.inc({ stage });
          this.#lastError = `${stage}: ${errorMessage(err)}`;
        },
      });
    }
    const retry = (stage: 'produce' | 'log') => this.#retry(stage);
    const thread: ProducerThreadOptions | undefined =
      this.#o.producerThread !== false
        ? { brokers: c.brokers, clientId: c.clientId, kafkaSecurity: c.kafkaSecurity, topics: this.#routeTopics, logger: this.#logger, onUnexpectedExit: () => this.#o.metrics.producerThreadExits.inc() }
        : undefined;
    return new AtLeastOnceSink({ kafka, log: this.#o.log, topics: this.#routeTopics, thread, createProducerThread: this.#o.createProducerThread, retry });
  }

  async start(): Promise<void> {
    const { kafka } = this.#o;
    const c = this.#c;
    const sink = this.#createSink();
    this.#sink = sink;
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
      this.#commits.offsets.startGeneration(this.#generation);
      this.#assignment = Object.fromEntries(Object.entries(payload.memberAssignment).map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
      sink.assigned(this.#assignment);
      this.#o.metrics.rebalances.inc();
      this.#logger.info('joined consumer group', { groupId: c.groupId, memberId: payload.memberId, assignment: this.#assignment });
      this.#emit({ type: 'joined', assignment: this.#assignment });
      this.#backpressure.reapply();
    });
    consumer.on(ev.REBALANCING, () => {
      this.#joined = false;
      // Nothing of the ending generation is committed any more: the next one replays it.
      this.#commits.offsets.startGeneration(-this.#generation - 1);
      sink.rebalancing();
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

    await sink.start();
    this.#logger.info('decision producer connected', {
      on: sink instanceof AtLeastOnceSink ? sink.on : 'one transactional producer per owned partition',
      exactlyOnce: c.exactlyOnce,
    });
    await consumer.connect();
    // fromBeginning: a group without committed offsets starts at the earliest offset (docs/contracts.md §2).
    await consumer.subscribe({ topics: [c.topics.requests], fromBeginning: true });
    this.#running = true;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: c.partitionsConcurrency,
      eachBatch: (payload) => this.#onBatch(payload),
    });
    this.#backpressure.start(consumer);
  }

  // ---- batch handling -----------------------------------------------------------------------

  /**
   * Heartbeats while a batch waits (for permits, for the sink). A heartbeat error (the group is
   * rebalancing, the member was fenced) aborts the waits: it is rethrown as is, because kafkajs
   * recognises it and re-joins. A drain aborts them too.
   */
  #batchSignal(p: EachBatchPayload): { signal: AbortSignal; done: () => void } {
    const ctl = new AbortController();
    const ticker = setInterval(() => {
      p.heartbeat().catch((err: unknown) => {
        if (!ctl.signal.aborted) ctl.abort(err);
      });
    }, this.#o.heartbeatIntervalMs ?? 1000);
    return {
      signal: AbortSignal.any([ctl.signal, this.#drainCtl.signal]),
      done: () => clearInterval(ticker),
    };
  }

  #takeMore(p: EachBatchPayload, signal: AbortSignal): boolean {
    return p.isRunning() && !p.isStale() && !signal.aborted && !this.#draining;
  }

  /** Scores chunk after chunk and hands each to the sink; does not wait for its delivery. */
  async #onBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const messages = batch.messages;
    if (messages.length === 0) return;
    const sink = this.#sink!;
    const generation = this.#generation;
    const { signal, done } = this.#batchSignal(p);
    try {
      const ticket = await sink.beginBatch(batch.topic, batch.partition, messages[0]!.offset, signal);
      if (!ticket) return;
      for (let i = 0; i < messages.length; i += this.#chunkSize) {
        if (!this.#takeMore(p, signal) || generation !== this.#generation) break;
        const { permits, chunk } = await this.#admit(sink, batch.topic, batch.partition, messages.slice(i, i + this.#chunkSize), signal);
        const tracked = sink.commitsOffsets ? undefined : this.#commits.offsets.begin(batch.topic, batch.partition, generation, chunk.firstOffset, chunk.lastOffset);
        // Not abandoned on a rebalance: the work finishes (at-least-once: idempotent rows, at
        // most duplicate records, simply not committed; exactly-once: the open transaction
        // commits or is fenced). Only the drain's deadline cuts it short.
        let held = true;
        const release = () => {
          if (!held) return;
          held = false;
          this.#release(permits);
        };
        sink
          .deliver(chunk, ticket, this.#deadlineCtl.signal, release)
          .then(
            () => this.#delivered(chunk, tracked),
            (err: unknown) => this.#failed(chunk, ticket, tracked, err),
          )
          .finally(release);
        p.resolveOffset(chunk.lastOffset);
      }
    } catch (err) {
      this.#batchFailed(batch, err, signal);
    } finally {
      done();
    }
  }

  /**
   * How a batch loop ends on an error: a drain's abort ends it quietly (the drain commits what
   * finished); a rebalance or lost session is logged and rethrown as is, so kafkajs recognises
   * it and re-joins; anything else is rethrown.
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

  #delivered(chunk: Chunk, tracked: TrackedChunk | undefined): void {
    this.counters.produced += chunk.records.size;
    this.counters.dlq += chunk.records.count(ROUTE.dlq);
    const now = Date.now();
    for (const ts of chunk.timestamps) {
      if (!Number.isFinite(ts)) continue;
      const ms = Math.max(0, now - ts);
      this.#o.metrics.endToEnd.observe(ms / 1000);
      this.#o.onEndToEnd?.(ms * 1000);
    }
    if (tracked && this.#commits.offsets.finish(tracked)) this.#commits.schedule();
  }

  #failed(chunk: Chunk, ticket: BatchTicket, tracked: TrackedChunk | undefined, err: unknown): void {
    if (err instanceof StaleChunkError) return; // its partition is consumed again from its commit
    this.#o.metrics.errors.inc({ stage: 'flush' });
    this.#lastError = errorMessage(err);
    if (this.#draining) return; // the drain's deadline passed: redelivered after the restart
    if (!tracked) {
      // The transactional sink aborted the transaction and moved the partition back itself.
      this.#logger.debug('chunk not delivered: its transaction was aborted', { topic: ticket.topic, partition: ticket.partition, err: errorMessage(err) });
      return;
    }
    const seekTo = this.#commits.offsets.fail(tracked);
    this.#logger.error('could not deliver a chunk of decisions; consuming it again', {
      err,
      topic: chunk.topic,
      partition: chunk.partition,
      from: chunk.firstOffset,
      to: chunk.lastOffset,
    });
    if (seekTo !== undefined) {
      try {
        this.#consumer?.seek({ topic: chunk.topic, partition: chunk.partition, offset: seekTo });
      } catch (seekErr) {
        this.#logger.warn('seek failed; the partition resumes from its committed offset after the next rebalance', { err: seekErr });
      }
    }
  }

  /**
   * Admits one chunk into the bounded in-flight window: takes its permits, then decodes, scores
   * and builds it. The caller gives the permits back with #release once the sink settled it.
   */
  async #admit(
    sink: DeliverySink,
    topic: string,
    partition: number,
    messages: KafkaMessage[],
    signal: AbortSignal,
  ): Promise<{ permits: number; chunk: Chunk }> {
    const permits = await this.#acquire(messages.length, signal);
    this.#o.metrics.inFlight.set(this.#slots.inUse);
    try {
      this.counters.consumed += messages.length;
      const outcomes = await Promise.all(messages.map((msg) => scoreRecord(msg, this.#scoring, topic, partition)));
      return { permits, chunk: buildChunk<RecordWriter>(topic, partition, outcomes, sink.writer(messages.length), this.#observer, new Date(), this.#responses) };
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
    // The window is full: what holds it should finish now. Open transactions commit at once
    // instead of at their tick, so the sends queued behind them can start.
    if (this.#slots.inUse + n > this.#slots.capacity) this.#sink?.flush();
    const granted = this.#slots.acquire(n);
    try {
      return await abortable(granted, signal);
    } catch (err) {
      void granted.then((k) => this.#slots.release(k));
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
        this.#backpressure.stop();
        this.#draining = true;
        this.#drainCtl.abort(new Error('draining'));
        const consumer = this.#consumer;
        // Paused, the consumer stays in the group (so commits are still accepted) but fetches
        // nothing new.
        if (consumer && this.#running) consumer.pause([{ topic: this.#c.topics.requests }]);
        const sink = this.#sink;
        let clean = false;
        while (Date.now() < deadline) {
          // Open transactions commit now rather than at the end of their interval.
          sink?.flush();
          if (this.#slots.inUse === 0 && !this.#commits.busy && (sink?.settled() ?? true)) {
            if (this.#commits.offsets.settled()) {
              clean = true;
              break;
            }
            this.#commits.schedule();
          }
          await sleep(20);
        }
        if (!clean) this.#deadlineCtl.abort(new Error('drain deadline'));
        this.#commits.stop();
        const rest = () => Math.max(1000, deadline - Date.now());
        // stop() waits for running eachBatch calls (they return at once now), then leaves.
        if (consumer) {
          await Promise.race([consumer.stop().catch((err: unknown) => this.#logger.warn('consumer stop failed', { err })), sleep(rest())]);
        }
        this.#running = false;
        this.#joined = false;
        await Promise.race([Promise.allSettled([consumer?.disconnect(), sink?.close(rest())]), sleep(rest())]);
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
