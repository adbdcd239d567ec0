// The decision log's buffer: a FIFO of appended rows numbered by consecutive tokens, the batches
// taken from it and not yet settled, the flushed(token) promises, and the backlog watermarks
// that tell the stream to pause ('pressure') and to go on ('relief').
import { TinyDancerError } from '../errors.js';
import type { DecisionRow } from './decision-rows.js';
import { DecisionLogClosedError, DecisionLogFullError } from './errors.js';

/** Sequence number of the last row of an append(); pass it to flushed(). */
export type LogToken = number;

export interface BacklogInfo {
  backlog: number;
  maxBuffered: number;
}

/** Rows taken from the buffer to be written together. */
export interface PendingBatch {
  rows: DecisionRow[];
  /** append() time of each row, Unix ms: the default decided_at. */
  times: number[];
}

export interface BufferLimits {
  /** Hard bound on the backlog (buffered + being written). */
  maxBuffered: number;
  /** Pressure at or above this backlog. */
  highWaterMark: number;
  /** Relief at or below this backlog. */
  lowWaterMark: number;
}

interface Waiter {
  token: LogToken;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class LogBuffer {
  // rows[head..] are buffered, in sequence order. Compacted now and then.
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
  /** After a close that ran out of time: tokens above this can never be settled. */
  #abandonedAbove: number | undefined;
  /** Rows appended over the buffer's life. */
  appended = 0;

  constructor(
    readonly limits: BufferLimits,
    private readonly on: { pressure: (info: BacklogInfo) => void; relief: (info: BacklogInfo) => void },
  ) {}

  /**
   * Appends rows (appended at `now`) and returns the token of the last one (or, for none, of the
   * last row appended before). DecisionLogFullError, nothing appended, when they would take the
   * backlog past maxBuffered.
   */
  push(rows: readonly DecisionRow[], now: number): LogToken {
    const n = rows.length;
    if (n === 0) return this.#nextSeq - 1;
    const { maxBuffered, highWaterMark } = this.limits;
    if (n > maxBuffered) {
      // Waiting would never help: say so instead of throwing a retriable "full".
      throw new TinyDancerError(`cannot append ${n} rows at once: the decision log holds at most ${maxBuffered} (maxBuffered)`);
    }
    const backlog = this.backlog();
    if (backlog + n > maxBuffered) throw new DecisionLogFullError(backlog, maxBuffered, n);
    for (let i = 0; i < n; i++) {
      this.#rows.push(rows[i]!);
      this.#times.push(now);
    }
    this.#nextSeq += n;
    this.appended += n;
    if (!this.#pressured && backlog + n >= highWaterMark) {
      this.#pressured = true;
      this.on.pressure({ backlog: backlog + n, maxBuffered });
    }
    return this.#nextSeq - 1;
  }

  /** The token of the last row appended (0: none yet). */
  lastToken(): LogToken {
    return this.#nextSeq - 1;
  }

  /** Rows appended and not yet taken for writing. */
  buffered(): number {
    return this.#rows.length - this.#head;
  }

  /** Rows taken for writing and not yet settled. */
  inFlightRows(): number {
    return this.#inFlightRows;
  }

  /** Batches taken for writing and not yet settled. */
  inFlightBatches(): number {
    return this.#inFlight.size;
  }

  /** Rows appended and not yet settled (buffered + being written). */
  backlog(): number {
    return this.buffered() + this.#inFlightRows;
  }

  /** Every row with a token up to this one is settled. */
  durable(): LogToken {
    let lowest = this.#nextSeq - this.buffered(); // first buffered seq
    for (const start of this.#inFlight.keys()) if (start < lowest) lowest = start;
    return lowest - 1;
  }

  /** True from pressure until relief. */
  get pressured(): boolean {
    return this.#pressured;
  }

  /** append() time of the oldest row not yet settled, Infinity when there is none. */
  oldestPendingAt(): number {
    let oldest = this.#head < this.#times.length ? this.#times[this.#head]! : Infinity;
    for (const firstAt of this.#inFlight.values()) if (firstAt < oldest) oldest = firstAt;
    return oldest;
  }

  /** Resolves once every row up to `token` is settled; see DecisionLog.flushed. */
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

  /** Resolves when the pressure is relieved; rejects when `signal` aborts. */
  waitForCapacity(signal?: AbortSignal): Promise<void> {
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

  /** Rejects every waitForCapacity() caller. */
  rejectCapacityWaiters(err: Error): void {
    for (const w of this.#capacityWaiters.splice(0)) w.reject(err);
  }

  /** Takes the oldest `n` buffered rows for writing; `start` is the token of the first. */
  take(n: number): { start: number; batch: PendingBatch } {
    const start = this.#nextSeq - this.buffered();
    const batch: PendingBatch = {
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
    return { start, batch };
  }

  /** The batch taken at `start` is settled: resolves the flushed() callers it completes, and relief. */
  settle(start: number, n: number): void {
    this.#inFlight.delete(start);
    this.#inFlightRows -= n;
    if (this.#abandonedAbove === undefined) {
      const durable = this.durable();
      while (this.#waiters.length > 0 && this.#waiters[0]!.token <= durable) this.#waiters.shift()!.resolve();
    }
    if (this.#pressured && this.backlog() <= this.limits.lowWaterMark) {
      this.#pressured = false;
      const info = { backlog: this.backlog(), maxBuffered: this.limits.maxBuffered };
      for (const w of this.#capacityWaiters.splice(0)) w.resolve();
      this.on.relief(info);
    }
  }

  /** Gives up on every row not settled yet: their flushed() promises reject with `err`. */
  abandon(err: Error): void {
    this.#abandonedAbove = this.durable();
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }
}
