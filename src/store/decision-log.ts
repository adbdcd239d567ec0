// The decision log: every RoutingDecision becomes one row of routing_decisions (SPEC §6), written
// off the hot path.
//
// How it behaves
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
import CircuitBreaker from 'opossum';
import type pg from 'pg';
import { TinyDancerError } from '../errors.js';
import { DEFAULT_BACKOFF, backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import {
  DecisionLogClosedError,
  DecisionLogFullError,
  RowEncodingError,
  classifyPgError,
  errorMessageWithCode,
  pgErrorCode,
  type PgErrorKind,
} from './errors.js';
import { quoteSchema, withClient } from './pg.js';

/**
 * One row of the log. A RoutingDecision (src/wire/types.ts) is a DecisionRow as it is; the
 * optional fields add what the stream knows about where and when it was decided.
 */
export interface DecisionRow {
  request_id: string;
  candidate_id: string;
  rank: number;
  confidence: number;
  uncertainty: number;
  use_lightweight: boolean;
  reason: string;
  model_version: string;
  inference_time_us: number;
  /** When the decision was made: a Date or Unix milliseconds. Default: the time of append(). */
  decided_at?: Date | number;
  /** The engine's input vector for this candidate, kept for retraining (issue 8). */
  features?: ArrayLike<number> | null;
  /** Candidate metadata; stored as jsonb when non-empty. */
  metadata?: Record<string, string> | null;
  /** The Kafka record the request came from. */
  source_topic?: string | null;
  source_partition?: number | null;
  source_offset?: string | number | bigint | null;
  /** The policy that decided it ('global', 'tenant:<name>'); NULL when not given. */
  policy?: string | undefined;
  /** The request's W3C trace id (32 hex digits), when it came with a trace context. */
  trace_id?: string | null | undefined;
}

/** Sequence number of the last row of an append(); pass it to flushed(). */
export type LogToken = number;

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
  breaker?: {
    /** Open when this share (%) of recent writes failed. Default 50. */
    errorThresholdPercentage?: number;
    /** ...and at least this many writes were tried in the window. Default 4. */
    volumeThreshold?: number;
    /** Stay open this long, then let one trial write through. Default 2 000 ms. */
    resetTimeoutMs?: number;
    /** Rolling statistics window. Default 10 000 ms. */
    rollingCountTimeoutMs?: number;
  };
}

export interface BacklogInfo {
  backlog: number;
  maxBuffered: number;
}

export interface FlushInfo {
  rows: number;
  /** Rows that were new; rows − inserted were already there (replays). */
  inserted: number;
  durationMs: number;
}

export interface RetryInfo {
  error: Error;
  kind: PgErrorKind;
  code: string;
  /** 1 for the first retry of this batch. */
  attempt: number;
  delayMs: number;
  rows: number;
}

export interface RejectedRow {
  row: DecisionRow;
  error: Error;
  code: string;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

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

interface Batch {
  rows: DecisionRow[];
  /** append() time of each row, Unix ms: the default decided_at. */
  times: number[];
}

interface Waiter {
  token: LogToken;
  resolve: () => void;
  reject: (err: Error) => void;
}

const COLUMNS = [
  'request_id',
  'candidate_id',
  'rank',
  'confidence',
  'uncertainty',
  'use_lightweight',
  'reason',
  'model_version',
  'inference_time_us',
  'decided_at',
  'features',
  'metadata',
  'source_topic',
  'source_partition',
  'source_offset',
  'policy',
  'trace_id',
] as const;

function insertSql(schema: string): string {
  const t = `${quoteSchema(schema)}.routing_decisions`;
  // decided_at travels as Unix ms (float8). Features travel as ONE flat real[] of every row's
  // vector plus a per-row offset and length: unnest would flatten a real[][] anyway, and one
  // numeric array literal parses several times faster than a text[] of per-row literals. The
  // flat array is a bound constant, so each row's slice is cheap.
  return `INSERT INTO ${t} (${COLUMNS.join(', ')})
SELECT request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version,
       inference_time_us, to_timestamp(decided_ms / 1000.0::float8),
       CASE WHEN f_len IS NULL THEN NULL ELSE ($11::real[])[f_off + 1 : f_off + f_len] END,
       metadata, source_topic, source_partition, source_offset, policy, trace_id
FROM unnest($1::text[], $2::text[], $3::int4[], $4::float4[], $5::float4[], $6::bool[], $7::text[], $8::text[],
            $9::float8[], $10::float8[], $12::jsonb[], $13::text[], $14::int4[], $15::int8[], $16::int4[], $17::int4[], $18::text[],
            $19::text[])
  AS u(request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version,
       inference_time_us, decided_ms, metadata, source_topic, source_partition, source_offset, f_off, f_len, policy, trace_id)
ON CONFLICT (request_id, candidate_id) DO NOTHING`;
}

/** A float as Postgres reads it, including the non-finite values real accepts. */
function floatText(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  return String(x);
}

/**
 * A value for a real (float4) column: 9 significant digits carry every float32 exactly, and
 * toPrecision(9) is about twice as fast as String() for them (which writes a float32 widened to a
 * double with up to 17 digits) — the float texts were ~6 % of serve's consuming thread.
 */
function float4Text(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(9) : floatText(x);
}

function float4(v: unknown): string {
  return typeof v === 'number' ? float4Text(v) : 'NULL';
}

function metadataJson(m: Record<string, string> | null | undefined): string | null {
  if (m == null) return null;
  if (typeof m !== 'object') throw new RowEncodingError('metadata is not an object');
  for (const _ in m) {
    try {
      return JSON.stringify(m);
    } catch (err) {
      throw new RowEncodingError(`metadata cannot be encoded as JSON: ${(err as Error).message}`);
    }
  }
  return null; // empty: not worth a jsonb
}

function decidedMs(v: Date | number | undefined, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  return v instanceof Date ? v.getTime() : Number(v);
}

function offsetText(v: string | number | bigint | null | undefined): string | null {
  if (v === undefined || v === null) return null;
  return String(v);
}

/**
 * An element of a Postgres array literal for a text-like value: always double-quoted (so
 * "NULL", empty strings, commas, braces and spaces need nothing more), with the two characters
 * that are special inside quotes, `"` and `\`, backslash-escaped.
 */
function quoted(s: string): string {
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(ESCAPED, '\\$&')}"` : `"${s}"`;
}
const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/**
 * The 19 bind parameters of a batch ($1..$19 of the insert), each an array literal in Postgres's
 * text form. Throws RowEncodingError for a row JavaScript cannot encode (the batch is then split
 * to find it, like a row Postgres refuses).
 *
 * PERF: the literals are built here, one string per column, instead of handing pg JavaScript
 * arrays: pg's generic conversion (prepareValue → arrayString → escapeElement per element) was
 * ~8% of the service's main thread at full rate. A value of the wrong type becomes NULL, so
 * Postgres refuses the row (NOT NULL), not the whole batch.
 */
export function encodeBatch(rows: readonly DecisionRow[], times: readonly number[]): string[] {
  const n = rows.length;
  const cols = new Array<string>(19).fill('');
  // $11: every row's features, flattened into one numeric literal ($16/$17: offset and length).
  let flat = '';
  let flatLen = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    const sep = i === 0 ? '' : ',';
    cols[0] += sep + text(r.request_id);
    cols[1] += sep + text(r.candidate_id);
    cols[2] += sep + int(r.rank);
    cols[3] += sep + float4(r.confidence);
    cols[4] += sep + float4(r.uncertainty);
    cols[5] += sep + (typeof r.use_lightweight === 'boolean' ? (r.use_lightweight ? 't' : 'f') : 'NULL');
    cols[6] += sep + text(r.reason);
    cols[7] += sep + text(r.model_version);
    cols[8] += sep + float(r.inference_time_us);
    cols[9] += sep + float(decidedMs(r.decided_at, times[i] ?? Date.now()));
    const meta = metadataJson(r.metadata);
    cols[11] += sep + (meta === null ? 'NULL' : quoted(meta));
    cols[12] += sep + (r.source_topic == null ? 'NULL' : text(r.source_topic));
    cols[13] += sep + (r.source_partition == null ? 'NULL' : int(r.source_partition));
    const off = offsetText(r.source_offset);
    cols[14] += sep + (off === null ? 'NULL' : quoted(off));
    cols[17] += sep + (r.policy == null ? 'NULL' : text(r.policy));
    cols[18] += sep + (r.trace_id == null ? 'NULL' : text(r.trace_id));
    const f = r.features;
    if (f == null) {
      cols[15] += `${sep}NULL`;
      cols[16] += `${sep}NULL`;
    } else {
      const len = f.length;
      if (typeof len !== 'number' || !Number.isInteger(len) || len < 0) throw new RowEncodingError('features is not an array of numbers');
      cols[15] += sep + String(flatLen);
      cols[16] += sep + String(len);
      for (let j = 0; j < len; j++) {
        if (flatLen > 0) flat += ',';
        flat += float4Text(Number(f[j]));
        flatLen++;
      }
    }
  }
  for (let c = 0; c < 19; c++) cols[c] = `{${c === 10 ? flat : cols[c]}}`;
  return cols;
}

function text(v: unknown): string {
  return typeof v === 'string' ? quoted(v) : 'NULL';
}

function int(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : 'NULL';
}

function float(v: unknown): string {
  return typeof v === 'number' ? floatText(v) : 'NULL';
}

export class DecisionLog extends EventEmitter<DecisionLogEvents> {
  readonly schema: string;
  readonly batchSize: number;
  readonly flushIntervalMs: number;
  readonly maxBuffered: number;
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly concurrency: number;

  readonly #pool: pg.Pool;
  readonly #sql: string;
  readonly #backoff: BackoffOptions;
  readonly #breaker: CircuitBreaker<[Batch], number>;
  readonly #abort = new AbortController();

  // The FIFO: rows[head..] are buffered, in sequence order. Compacted now and then.
  #rows: DecisionRow[] = [];
  #times: number[] = [];
  #head = 0;
  /** Sequence number the next appended row gets (tokens start at 1; 0 means "nothing"). */
  #nextSeq = 1;
  /** Batches being written: first sequence number → append time of their oldest row. */
  readonly #inFlight = new Map<number, number>();
  #inFlightRows = 0;
  /** flushed() callers, ordered by token. */
  #waiters: Waiter[] = [];
  #capacityWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  #pressured = false;
  /** Set when the oldest buffered row is due (timer) or on close: write partial batches too. */
  #flushDue = false;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #closing = false;
  /** After a close that ran out of time: tokens above this can never be settled. */
  #abandonedAbove: number | undefined;
  #closed: Promise<CloseResult> | undefined;

  #appended = 0;
  #inserted = 0;
  #duplicates = 0;
  #rejected = 0;
  #retries = 0;
  #batches = 0;
  #lastError: string | undefined;

  constructor(options: DecisionLogOptions) {
    super();
    this.#pool = options.pool;
    this.schema = options.schema ?? 'public';
    this.#sql = insertSql(this.schema);
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
    this.#backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    const b = options.breaker ?? {};
    this.#breaker = new CircuitBreaker((batch: Batch) => this.#insert(batch), {
      name: 'decision-log',
      // Each attempt is bounded by the pool's statement and query timeouts instead: an opossum
      // timeout would abandon a query that is still running and retry beside it.
      timeout: false,
      errorThresholdPercentage: b.errorThresholdPercentage ?? 50,
      volumeThreshold: b.volumeThreshold ?? 4,
      resetTimeout: b.resetTimeoutMs ?? 2_000,
      rollingCountTimeout: b.rollingCountTimeoutMs ?? 10_000,
      enableSnapshots: false,
      // Bad rows say nothing about the database's health.
      errorFilter: (err: unknown) => classifyPgError(err) === 'row',
    });
    this.#breaker.on('open', () => this.emit('breaker', 'open'));
    this.#breaker.on('halfOpen', () => this.emit('breaker', 'half-open'));
    this.#breaker.on('close', () => this.emit('breaker', 'closed'));
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
    const n = rows.length;
    if (n === 0) return this.#nextSeq - 1;
    if (n > this.maxBuffered) {
      // Waiting would never help: say so instead of throwing a retriable "full".
      throw new TinyDancerError(`cannot append ${n} rows at once: the decision log holds at most ${this.maxBuffered} (maxBuffered)`);
    }
    const backlog = this.backlog();
    if (backlog + n > this.maxBuffered) throw new DecisionLogFullError(backlog, this.maxBuffered, n);
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      this.#rows.push(rows[i]!);
      this.#times.push(now);
    }
    this.#nextSeq += n;
    this.#appended += n;
    if (!this.#pressured && backlog + n >= this.highWaterMark) {
      this.#pressured = true;
      this.emit('pressure', { backlog: backlog + n, maxBuffered: this.maxBuffered });
    }
    this.#schedule();
    return this.#nextSeq - 1;
  }

  /**
   * Resolves once every row up to `token` is durably in Postgres (or rejected as bad data and
   * reported through 'rejected'). Rejects with DecisionLogClosedError when close() gave up on
   * some of them: do not commit the offsets they came from.
   */
  flushed(token: LogToken): Promise<void> {
    if (token <= this.durable()) return Promise.resolve();
    if (this.#abandonedAbove !== undefined) {
      return Promise.reject(new DecisionLogClosedError(`decision log closed before rows up to ${token} were written`));
    }
    if (token >= this.#nextSeq) {
      return Promise.reject(new RangeError(`token ${token} was never issued (last is ${this.#nextSeq - 1})`));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { token, resolve, reject };
      // Usually appended in order: scan from the end.
      let i = this.#waiters.length;
      while (i > 0 && this.#waiters[i - 1]!.token > token) i--;
      this.#waiters.splice(i, 0, w);
    });
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
    return !this.#pressured && !this.#closing;
  }

  /** Resolves when hasCapacity() is true; rejects when the log closes or `signal` aborts. */
  waitForCapacity(signal?: AbortSignal): Promise<void> {
    if (this.#closing) return Promise.reject(new DecisionLogClosedError('decision log is closed'));
    if (!this.#pressured) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<void>((resolve, reject) => {
      const entry = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        this.#capacityWaiters = this.#capacityWaiters.filter((e) => e !== entry);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#capacityWaiters.push(entry);
    });
  }

  /** Rows appended and not yet settled (buffered + being written). */
  backlog(): number {
    return this.#rows.length - this.#head + this.#inFlightRows;
  }

  /** Every row with a token up to this one is settled. */
  durable(): LogToken {
    let lowest = this.#nextSeq - (this.#rows.length - this.#head); // first buffered seq
    for (const start of this.#inFlight.keys()) if (start < lowest) lowest = start;
    return lowest - 1;
  }

  metrics(): DecisionLogMetrics {
    let oldest = this.#head < this.#times.length ? this.#times[this.#head]! : Infinity;
    for (const firstAt of this.#inFlight.values()) if (firstAt < oldest) oldest = firstAt;
    return {
      appended: this.#appended,
      inserted: this.#inserted,
      duplicates: this.#duplicates,
      rejected: this.#rejected,
      retries: this.#retries,
      batches: this.#batches,
      backlog: this.backlog(),
      buffered: this.#rows.length - this.#head,
      inFlightRows: this.#inFlightRows,
      pressured: this.#pressured,
      breaker: this.#breakerState(),
      durable: this.durable(),
      oldestPendingMs: oldest === Infinity ? 0 : Math.max(0, Date.now() - oldest),
      lastError: this.#lastError,
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
    for (const w of this.#capacityWaiters.splice(0)) w.reject(new DecisionLogClosedError('decision log is closed'));
    this.#flushDue = true;
    this.#pump();
    const target = this.#nextSeq - 1;
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
      this.#abandonedAbove = this.durable();
      // Stop the retry loops; a statement already sent may still land (harmless: idempotent).
      this.#abort.abort();
      const err = new DecisionLogClosedError(`decision log closed with ${unwritten} rows unwritten after ${timeout} ms`);
      for (const w of this.#waiters.splice(0)) w.reject(err);
    }
    this.#breaker.shutdown();
    return { settled: this.#inserted + this.#duplicates + this.#rejected, unwritten };
  }

  // ---- the flusher ---------------------------------------------------------------------------

  #schedule(): void {
    const buffered = this.#rows.length - this.#head;
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
    while (this.#inFlight.size < this.concurrency) {
      const buffered = this.#rows.length - this.#head;
      if (buffered === 0) break;
      if (buffered < this.batchSize && !this.#flushDue) break;
      this.#startBatch(Math.min(buffered, this.batchSize));
    }
    const left = this.#rows.length - this.#head;
    if (left === 0) {
      if (!this.#closing) this.#flushDue = false;
      if (this.#timer) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
      }
    } else if (this.#inFlight.size < this.concurrency) {
      this.#schedule();
    }
    // Otherwise a batch completing calls #pump() again.
  }

  #startBatch(n: number): void {
    const start = this.#nextSeq - (this.#rows.length - this.#head);
    const batch: Batch = {
      rows: this.#rows.slice(this.#head, this.#head + n),
      times: this.#times.slice(this.#head, this.#head + n),
    };
    this.#head += n;
    if (this.#head >= 1024 && this.#head * 2 >= this.#rows.length) {
      this.#rows = this.#rows.slice(this.#head);
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
    this.#inFlight.set(start, batch.times[0] ?? Date.now());
    this.#inFlightRows += n;
    this.#write(batch).then(
      () => this.#finishBatch(start, n),
      // Only close() abandoning the retries lands here; the rows stay unwritten.
      () => this.#finishBatch(start, n),
    );
  }

  #finishBatch(start: number, n: number): void {
    this.#inFlight.delete(start);
    this.#inFlightRows -= n;
    if (this.#abandonedAbove === undefined) {
      const durable = this.durable();
      while (this.#waiters.length > 0 && this.#waiters[0]!.token <= durable) this.#waiters.shift()!.resolve();
    }
    if (this.#pressured && this.backlog() <= this.lowWaterMark) {
      this.#pressured = false;
      const info = { backlog: this.backlog(), maxBuffered: this.maxBuffered };
      for (const w of this.#capacityWaiters.splice(0)) w.resolve();
      this.emit('relief', info);
    }
    this.#pump();
  }

  /** Writes a batch until it is settled: retried while retriable, split on bad rows. */
  async #write(batch: Batch): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.#abort.signal.aborted) throw new DecisionLogClosedError('decision log closed');
      const t0 = performance.now();
      try {
        const inserted = await this.#breaker.fire(batch);
        const rows = batch.rows.length;
        this.#inserted += inserted;
        this.#duplicates += rows - inserted;
        this.#batches++;
        this.emit('flushed', { rows, inserted, durationMs: performance.now() - t0 });
        return;
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        const kind = classifyPgError(error);
        if (kind === 'row') {
          await this.#isolate(batch, error);
          return;
        }
        this.#retries++;
        const code = pgErrorCode(error);
        // "Breaker is open" says nothing new: keep the failure that opened it as the last error.
        if (code !== 'EOPENBREAKER') this.#lastError = errorMessageWithCode(error);
        const delayMs = backoffDelay(attempt, this.#backoff);
        this.emit('retry', { error, kind, code, attempt: attempt + 1, delayMs, rows: batch.rows.length });
        await sleep(delayMs, this.#abort.signal);
      }
    }
  }

  /** A batch failed on its data: write each half on its own until the bad rows stand alone. */
  async #isolate(batch: Batch, error: Error): Promise<void> {
    const n = batch.rows.length;
    if (n === 1) {
      this.#rejected++;
      this.#lastError = errorMessageWithCode(error);
      this.emit('rejected', { row: batch.rows[0]!, error, code: pgErrorCode(error) });
      return;
    }
    const mid = n >>> 1;
    await this.#write({ rows: batch.rows.slice(0, mid), times: batch.times.slice(0, mid) });
    await this.#write({ rows: batch.rows.slice(mid), times: batch.times.slice(mid) });
  }

  async #insert(batch: Batch): Promise<number> {
    const values = encodeBatch(batch.rows, batch.times);
    const result = await withClient(this.#pool, (client) => client.query(this.#sql, values));
    return result.rowCount ?? 0;
  }

  #breakerState(): BreakerState {
    if (this.#breaker.opened) return 'open';
    if (this.#breaker.halfOpen) return 'half-open';
    return 'closed';
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new TinyDancerError(`decision log ${name} must be a whole number ≥ 1, got ${v}`);
  return v;
}
