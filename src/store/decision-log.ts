// The decision log: every RoutingDecision becomes one row of routing_decisions (docs/contracts.md §6), written
// off the hot path.
//
// How it behaves (the buffer: ./log-buffer.ts; writing a batch: ./batch-writer.ts; the rows'
// encoding: ./decision-rows.ts)
// - `append(rows)` is synchronous and cheap: the rows go into a bounded in-memory FIFO and get
//   consecutive sequence numbers; the call returns the LAST one as a token.
// - A background flusher writes batches (`batchSize` rows, or whatever is buffered once the
//   oldest row is `flushIntervalMs` old) with ONE statement per batch:
//   INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT (request_id, candidate_id) DO NOTHING.
//   Replays (redelivery after a crash, a retry after a commit whose reply was lost) add no row.
// - Retriable failures (connection lost, server restarting...) are retried forever with jittered
//   exponential backoff, behind an opossum breaker so a dead Postgres gets a trial call now and
//   then instead of a stream of connection attempts. A row-level data error (SQLSTATE 22xxx/23xxx)
//   splits the batch in halves until the bad rows are alone; they are reported through 'rejected'
//   and every healthy row is still written. Other errors (missing table, permissions) keep the
//   rows and are retried: they are not the rows' fault. See ./errors.ts.
// - Backpressure: the backlog (buffered + being written) is bounded by `maxBuffered` — append
//   throws DecisionLogFullError rather than grow past it. Above `highWaterMark` the log emits
//   'pressure' and hasCapacity() turns false; at `lowWaterMark` it emits 'relief'. The stream
//   checks hasCapacity()/waitForCapacity() before taking more work, so it pauses instead of dropping.
//
// Durability contract with the stream (the design chosen for "every decision is a row in
// Postgres", even across SIGKILL):
//   const token = log.append(decisions);          // after the decisions were produced
//   await Promise.all([kafkaAck, log.flushed(token)]);
//   commit offsets;                                // only now
// flushed(token) resolves once every row appended up to that token is durably in Postgres (or was
// rejected as bad data and reported). A crash before that point leaves the offset uncommitted:
// the request is redelivered, decided again and inserted idempotently. While Postgres is down,
// flushed() stays pending, the backlog grows to highWaterMark and the stream pauses.
// close({ timeout }) stops appends, flushes what it can within the timeout and rejects the
// flushed() promises of rows that did not make it (their offsets must not be committed).
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { TinyDancerError } from '../errors.js';
import { DEFAULT_BACKOFF, sleep, type BackoffOptions } from './backoff.js';
import { BatchWriter, type BreakerOptions, type BreakerState, type FlushInfo, type RejectedRow, type RetryInfo } from './batch-writer.js';
import type { DecisionRow } from './decision-rows.js';
import { DecisionLogClosedError } from './errors.js';
import { LogBuffer, type BacklogInfo, type LogToken } from './log-buffer.js';

export type { DecisionRow } from './decision-rows.js';
export { encodeBatch } from './decision-rows.js';
export type { BreakerState, FlushInfo, RejectedRow, RetryInfo } from './batch-writer.js';
export type { BacklogInfo, LogToken } from './log-buffer.js';

export interface DecisionLogOptions {
  /** Pool to write through (create it with createPool(); the log does not end it). */
  pool: pg.Pool;
  /** Schema holding routing_decisions (migrated). Default 'public'. */
  schema?: string;
  /** Rows per INSERT. Default 500. */
  batchSize?: number;
  /** A partial batch is written once its oldest row waited this long. Default 50 ms. */
  flushIntervalMs?: number;
  /** Hard bound on the backlog (buffered + being written). Default 50 000. */
  maxBuffered?: number;
  /** 'pressure' at or above this backlog. Default 80 % of maxBuffered. */
  highWaterMark?: number;
  /** 'relief' at or below this backlog. Default half of highWaterMark. */
  lowWaterMark?: number;
  /** Batches written at once (each holds one connection). Default 2. */
  concurrency?: number;
  /** Retry delays. Default 100 ms doubling to 5 s, half jittered. */
  backoff?: Partial<BackoffOptions>;
  /** The breaker in front of Postgres. */
  breaker?: BreakerOptions;
}

export interface DecisionLogEvents {
  pressure: [BacklogInfo];
  relief: [BacklogInfo];
  flushed: [FlushInfo];
  retry: [RetryInfo];
  rejected: [RejectedRow];
  breaker: [BreakerState];
}

export interface DecisionLogMetrics {
  appended: number;
  inserted: number;
  duplicates: number;
  rejected: number;
  retries: number;
  batches: number;
  backlog: number;
  buffered: number;
  inFlightRows: number;
  pressured: boolean;
  breaker: BreakerState;
  /** Every row up to this token is settled. */
  durable: LogToken;
  /** Age of the oldest row not yet written, 0 when there is none. */
  oldestPendingMs: number;
  lastError: string | undefined;
}

export interface CloseResult {
  /** Rows settled over the log's life (inserted + already present + rejected). */
  settled: number;
  /** Rows still unwritten when the timeout ran out (their flushed() promises rejected). */
  unwritten: number;
}

export class DecisionLog extends EventEmitter<DecisionLogEvents> {
  readonly schema: string;
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  readonly maxBuffered: number;
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly concurrency: number;

  readonly #abort = new AbortController();
  readonly #buffer: LogBuffer;
  readonly #writer: BatchWriter;
  /** Set when the oldest buffered row is due (timer) or on close: write partial batches too. */
  #flushDue = false;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #closing = false;
  #closed: Promise<CloseResult> | undefined;

  constructor(options: DecisionLogOptions) {
    super();
    this.schema = options.schema ?? 'public';
    this.batchSize = positiveInt('batchSize', options.batchSize ?? 500);
    this.flushIntervalMs = Math.max(0, options.flushIntervalMs ?? 50);
    this.maxBuffered = positiveInt('maxBuffered', options.maxBuffered ?? 50_000);
    this.highWaterMark = positiveInt('highWaterMark', options.highWaterMark ?? Math.max(1, Math.floor(this.maxBuffered * 0.8)));
    this.lowWaterMark = Math.max(0, Math.floor(options.lowWaterMark ?? this.highWaterMark / 2));
    this.concurrency = positiveInt('concurrency', options.concurrency ?? 2);
    if (this.highWaterMark > this.maxBuffered || this.lowWaterMark >= this.highWaterMark) {
      throw new TinyDancerError(
        `decision log watermarks must satisfy lowWaterMark < highWaterMark <= maxBuffered (got ${this.lowWaterMark}, ${this.highWaterMark}, ${this.maxBuffered})`,
      );
    }
    this.#buffer = new LogBuffer(
      { maxBuffered: this.maxBuffered, highWaterMark: this.highWaterMark, lowWaterMark: this.lowWaterMark },
      { pressure: (info) => this.emit('pressure', info), relief: (info) => this.emit('relief', info) },
    );
    this.#writer = new BatchWriter({
      pool: options.pool,
      schema: this.schema,
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
      breaker: options.breaker ?? {},
      signal: this.#abort.signal,
      on: {
        flushed: (info) => this.emit('flushed', info),
        retry: (info) => this.emit('retry', info),
        rejected: (row) => this.emit('rejected', row),
        breaker: (state) => this.emit('breaker', state),
      },
    });
  }

  // ---- the stream's side -------------------------------------------------------------------

  /**
   * Queues rows for writing and returns the token of the last one (or, for an empty list, of the
   * last row appended before). Synchronous; never waits for Postgres. Throws
   * DecisionLogFullError (retriable, nothing appended) when the rows would take the backlog past
   * maxBuffered, and DecisionLogClosedError after close(). Do not mutate the rows afterwards.
   */
  append(rows: readonly DecisionRow[]): LogToken {
    if (this.#closing) throw new DecisionLogClosedError('decision log is closed; no more rows are accepted');
    if (rows.length === 0) return this.#buffer.lastToken();
    const token = this.#buffer.push(rows, Date.now());
    this.#schedule();
    return token;
  }

  /**
   * Resolves once every row up to `token` is durably in Postgres (or rejected as bad data and
   * reported through 'rejected'). Rejects with DecisionLogClosedError when close() gave up on
   * some of them: do not commit the offsets they came from.
   */
  flushed(token: LogToken): Promise<void> {
    return this.#buffer.flushed(token);
  }

  /** append() then flushed(): resolves when these rows are durably written. */
  appendAndTrack(rows: readonly DecisionRow[]): Promise<void> {
    let token: LogToken;
    try {
      token = this.append(rows);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.flushed(token);
  }

  /** False from 'pressure' until 'relief': take no new work. */
  hasCapacity(): boolean {
    return !this.#buffer.pressured && !this.#closing;
  }

  /** Resolves when hasCapacity() is true; rejects when the log closes or `signal` aborts. */
  waitForCapacity(signal?: AbortSignal): Promise<void> {
    if (this.#closing) return Promise.reject(new DecisionLogClosedError('decision log is closed'));
    return this.#buffer.waitForCapacity(signal);
  }

  /** Rows appended and not yet settled (buffered + being written). */
  backlog(): number {
    return this.#buffer.backlog();
  }

  /** Every row with a token up to this one is settled. */
  durable(): LogToken {
    return this.#buffer.durable();
  }

  metrics(): DecisionLogMetrics {
    const oldest = this.#buffer.oldestPendingAt();
    const w = this.#writer;
    return {
      appended: this.#buffer.appended,
      inserted: w.inserted,
      duplicates: w.duplicates,
      rejected: w.rejected,
      retries: w.retries,
      batches: w.batches,
      backlog: this.backlog(),
      buffered: this.#buffer.buffered(),
      inFlightRows: this.#buffer.inFlightRows(),
      pressured: this.#buffer.pressured,
      breaker: w.breakerState(),
      durable: this.durable(),
      oldestPendingMs: oldest === Infinity ? 0 : Math.max(0, Date.now() - oldest),
      lastError: w.lastError,
    };
  }

  /**
   * Stops accepting rows, writes what is buffered, and returns within `timeout` ms (default
   * 10 s). Rows not written by then are counted in `unwritten` and their flushed() promises
   * reject. Does not end the pool. Idempotent.
   */
  close(options: { timeout?: number } = {}): Promise<CloseResult> {
    this.#closed ??= this.#close(Math.max(0, options.timeout ?? 10_000));
    return this.#closed;
  }

  async #close(timeout: number): Promise<CloseResult> {
    this.#closing = true;
    this.#buffer.rejectCapacityWaiters(new DecisionLogClosedError('decision log is closed'));
    this.#flushDue = true;
    this.#pump();
    const target = this.#buffer.lastToken();
    const timer = new AbortController();
    const drained = await Promise.race([
      this.flushed(target).then(
        () => true,
        () => false,
      ),
      sleep(timeout, timer.signal).then(() => false),
    ]);
    timer.abort();
    this.#clearTimers();
    let unwritten = 0;
    if (!drained) {
      unwritten = this.backlog();
      // Stop the retry loops; a statement already sent may still land (harmless: idempotent).
      this.#buffer.abandon(new DecisionLogClosedError(`decision log closed with ${unwritten} rows unwritten after ${timeout} ms`));
      this.#abort.abort();
    }
    this.#writer.shutdown();
    return { settled: this.#writer.settled, unwritten };
  }

  // ---- the flusher ---------------------------------------------------------------------------

  #schedule(): void {
    const buffered = this.#buffer.buffered();
    if (buffered === 0) return;
    if (buffered >= this.batchSize || this.#flushDue) {
      this.#immediate ??= setImmediate(() => {
        this.#immediate = undefined;
        this.#pump();
      });
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#flushDue = true;
        this.#pump();
      }, this.flushIntervalMs);
    }
  }

  #clearTimers(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
  }

  /** Starts as many batches as concurrency allows. */
  #pump(): void {
    if (this.#abort.signal.aborted) return;
    while (this.#buffer.inFlightBatches() < this.concurrency) {
      const buffered = this.#buffer.buffered();
      if (buffered === 0) break;
      if (buffered < this.batchSize && !this.#flushDue) break;
      this.#startBatch(Math.min(buffered, this.batchSize));
    }
    if (this.#buffer.buffered() === 0) {
      if (!this.#closing) this.#flushDue = false;
      if (this.#timer) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
      }
    } else if (this.#buffer.inFlightBatches() < this.concurrency) {
      this.#schedule();
    }
    // Otherwise a batch completing calls #pump() again.
  }

  #startBatch(n: number): void {
    const { start, batch } = this.#buffer.take(n);
    const done = (): void => {
      this.#buffer.settle(start, n);
      this.#pump();
    };
    // A rejection is only close() abandoning the retries; the rows stay unwritten.
    this.#writer.write(batch).then(done, done);
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new TinyDancerError(`decision log ${name} must be a whole number ≥ 1, got ${v}`);
  return v;
}
