// The audit history of the fleet's desired state (docs/contracts.md §6, §10): every record of the
// control topic, applied or refused, as one row of `control_history`, keyed by its offset in the
// topic. The topic is where state lives; this table is where an operator asks "who changed what,
// and when" after compaction has dropped the older records.
//
// Every replica mirrors what it reads, and the topic has one partition, so the offset names a
// record fleet-wide: the first replica's insert wins and the others' are no-ops. A row is never
// updated. A replica replays the whole topic at start-up, so a record whose row was not written
// (Postgres down for longer than the retries) is mirrored again by the next replica that starts,
// as long as compaction kept it.
import type pg from 'pg';
import { backoffDelay, sleep } from './backoff.js';
import { isRetriablePgError, errorMessageWithCode } from './errors.js';
import { quoteSchema, silentLog, type StoreLog } from './pg.js';

export type ControlHistoryKind = 'model' | 'thresholds' | 'policy' | 'policy-delete' | 'unknown';

export interface ControlHistoryEntry {
  /** The record's offset in the control topic (one partition). */
  offset: number;
  key: string;
  kind: ControlHistoryKind;
  /** What the record set, without model bytes: version and sha256, thresholds, a policy. */
  detail: Record<string, unknown>;
  writtenBy?: string;
  /** Unix ms, as the writer stated it. */
  writtenAt?: number;
  outcome: 'applied' | 'refused';
  /** Why it was refused. */
  error?: string;
}

export interface ControlHistoryOptions {
  pool: Pick<pg.Pool, 'query'>;
  schema?: string;
  log?: StoreLog;
  /** Entries waiting for Postgres beyond this are dropped, oldest first (a replay re-mirrors them). */
  maxPending?: number;
  /** Attempts per entry while Postgres fails retriably. */
  attempts?: number;
}

/** Writes entries in topic order, one at a time, off the caller's path. */
export class ControlHistory {
  readonly #pool: Pick<pg.Pool, 'query'>;
  readonly #table: string;
  readonly #log: StoreLog;
  readonly #maxPending: number;
  readonly #attempts: number;
  readonly #pending: ControlHistoryEntry[] = [];
  readonly #closing = new AbortController();
  #running: Promise<void> | undefined;
  #dropped = 0;
  #written = 0;

  constructor(opts: ControlHistoryOptions) {
    this.#pool = opts.pool;
    this.#table = `${quoteSchema(opts.schema ?? 'public')}.control_history`;
    this.#log = opts.log ?? silentLog;
    this.#maxPending = Math.max(1, opts.maxPending ?? 10_000);
    this.#attempts = Math.max(1, opts.attempts ?? 8);
  }

  /** Entries inserted by this replica (not counting the ones another replica wrote first). */
  get written(): number {
    return this.#written;
  }

  /** Entries given up (queue full, retries exhausted, or a non-retriable error). */
  get dropped(): number {
    return this.#dropped;
  }

  record(entry: ControlHistoryEntry): void {
    if (this.#closing.signal.aborted) return;
    this.#pending.push(entry);
    if (this.#pending.length > this.#maxPending) {
      this.#pending.shift();
      this.#drop('the control history queue is full; the oldest entry was dropped (a replica start-up mirrors it again)');
    }
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
  }

  /** Waits until every recorded entry was written or given up, then stops. */
  async close(timeoutMs = 5_000): Promise<void> {
    // The deadline's timer ends with the wait, so it never holds the process open.
    const done = new AbortController();
    const deadline = sleep(timeoutMs, done.signal);
    await Promise.race([this.#idle(), deadline]);
    done.abort();
    this.#closing.abort();
  }

  async #idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #drain(): Promise<void> {
    for (let entry = this.#pending.shift(); entry; entry = this.#pending.shift()) {
      await this.#write(entry);
      if (this.#closing.signal.aborted) return;
    }
  }

  async #write(e: ControlHistoryEntry): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.#pool.query(
          `INSERT INTO ${this.#table} (control_offset, record_key, kind, detail, written_by, written_at, outcome, error)
           VALUES ($1, $2, $3, $4, $5, to_timestamp($6::double precision / 1000), $7, $8)
           ON CONFLICT (control_offset) DO NOTHING`,
          [e.offset, e.key, e.kind, JSON.stringify(e.detail), e.writtenBy ?? null, e.writtenAt ?? null, e.outcome, e.error ?? null],
        );
        this.#written += r.rowCount ?? 0;
        return;
      } catch (err) {
        if (!isRetriablePgError(err) || attempt + 1 >= this.#attempts || this.#closing.signal.aborted) {
          this.#drop(`control history entry at offset ${e.offset} not written: ${errorMessageWithCode(err)}`);
          return;
        }
        await sleep(backoffDelay(attempt), this.#closing.signal);
      }
    }
  }

  #drop(message: string): void {
    this.#dropped++;
    this.#log.warn(message);
  }
}
