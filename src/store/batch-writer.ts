// Writes one batch of decision rows until it is settled: ONE insert statement per batch, retried
// while the failure is retriable (jittered backoff, behind a breaker), split in halves on bad
// rows until they stand alone. See ./errors.ts for how failures are classified.
import CircuitBreaker from 'opossum';
import type pg from 'pg';
import { backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { encodeBatch, insertSql, type DecisionRow } from './decision-rows.js';
import { DecisionLogClosedError, classifyPgError, errorMessageWithCode, pgErrorCode, type PgErrorKind } from './errors.js';
import type { PendingBatch } from './log-buffer.js';
import { withClient } from './pg.js';

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

export interface BreakerOptions {
  /** Open when this share (%) of recent writes failed. Default 50. */
  errorThresholdPercentage?: number;
  /** ...and at least this many writes were tried in the window. Default 4. */
  volumeThreshold?: number;
  /** Stay open this long, then let one trial write through. Default 2 000 ms. */
  resetTimeoutMs?: number;
  /** Rolling statistics window. Default 10 000 ms. */
  rollingCountTimeoutMs?: number;
}

/** What the writer reports as it goes. */
export interface WriterEvents {
  flushed: (info: FlushInfo) => void;
  retry: (info: RetryInfo) => void;
  rejected: (row: RejectedRow) => void;
  breaker: (state: BreakerState) => void;
}

export interface BatchWriterOptions {
  pool: pg.Pool;
  schema: string;
  backoff: BackoffOptions;
  breaker: BreakerOptions;
  /** Aborted: retries stop and write() rejects with DecisionLogClosedError. */
  signal: AbortSignal;
  on: WriterEvents;
}

export class BatchWriter {
  inserted = 0;
  duplicates = 0;
  rejected = 0;
  retries = 0;
  batches = 0;
  lastError: string | undefined;

  readonly #pool: pg.Pool;
  readonly #sql: string;
  readonly #backoff: BackoffOptions;
  readonly #breaker: CircuitBreaker<[PendingBatch], number>;
  readonly #signal: AbortSignal;
  readonly #on: WriterEvents;

  constructor(opts: BatchWriterOptions) {
    this.#pool = opts.pool;
    this.#sql = insertSql(opts.schema);
    this.#backoff = opts.backoff;
    this.#signal = opts.signal;
    this.#on = opts.on;
    const b = opts.breaker;
    // A dead Postgres gets a trial call now and then instead of a stream of connection attempts.
    this.#breaker = new CircuitBreaker((batch: PendingBatch) => this.#insert(batch), {
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
    this.#breaker.on('open', () => this.#on.breaker('open'));
    this.#breaker.on('halfOpen', () => this.#on.breaker('half-open'));
    this.#breaker.on('close', () => this.#on.breaker('closed'));
  }

  /** Rows settled so far (inserted + already present + rejected). */
  get settled(): number {
    return this.inserted + this.duplicates + this.rejected;
  }

  breakerState(): BreakerState {
    if (this.#breaker.opened) return 'open';
    if (this.#breaker.halfOpen) return 'half-open';
    return 'closed';
  }

  shutdown(): void {
    this.#breaker.shutdown();
  }

  /** Writes a batch until it is settled: retried while retriable, split on bad rows. */
  async write(batch: PendingBatch): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.#signal.aborted) throw new DecisionLogClosedError('decision log closed');
      const t0 = performance.now();
      try {
        const inserted = await this.#breaker.fire(batch);
        const rows = batch.rows.length;
        this.inserted += inserted;
        this.duplicates += rows - inserted;
        this.batches++;
        this.#on.flushed({ rows, inserted, durationMs: performance.now() - t0 });
        return;
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        const kind = classifyPgError(error);
        if (kind === 'row') {
          await this.#isolate(batch, error);
          return;
        }
        this.retries++;
        const code = pgErrorCode(error);
        // "Breaker is open" says nothing new: keep the failure that opened it as the last error.
        if (code !== 'EOPENBREAKER') this.lastError = errorMessageWithCode(error);
        const delayMs = backoffDelay(attempt, this.#backoff);
        this.#on.retry({ error, kind, code, attempt: attempt + 1, delayMs, rows: batch.rows.length });
        await sleep(delayMs, this.#signal);
      }
    }
  }

  /** A batch failed on its data: write each half on its own until the bad rows stand alone. */
  async #isolate(batch: PendingBatch, error: Error): Promise<void> {
    const n = batch.rows.length;
    if (n === 1) {
      this.rejected++;
      this.lastError = errorMessageWithCode(error);
      this.#on.rejected({ row: batch.rows[0]!, error, code: pgErrorCode(error) });
      return;
    }
    const mid = n >>> 1;
    await this.write({ rows: batch.rows.slice(0, mid), times: batch.times.slice(0, mid) });
    await this.write({ rows: batch.rows.slice(mid), times: batch.times.slice(mid) });
  }

  async #insert(batch: PendingBatch): Promise<number> {
    const values = encodeBatch(batch.rows, batch.times);
    const result = await withClient(this.#pool, (client) => client.query(this.#sql, values));
    return result.rowCount ?? 0;
  }
}
