// A counting semaphore with FIFO waiters and multi-permit acquisition: the bound on in-flight
// requests. A chunk of k requests takes its k permits at once, so two partial chunks can never
// each hold half the permits and wait for the other half (the classic deadlock of acquiring
// permits one by one).

export class Semaphore {
  #available: number;
  readonly #capacity: number;
  readonly #waiters: { n: number; resolve: () => void }[] = [];

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`semaphore capacity must be a positive integer, got ${capacity}`);
    this.#capacity = capacity;
    this.#available = capacity;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Permits in use. */
  get inUse(): number {
    return this.#capacity - this.#available;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** Waits for `n` permits (n is clamped to the capacity, so a huge request cannot wait forever). */
  acquire(n = 1): Promise<number> {
    const k = Math.min(Math.max(1, Math.floor(n)), this.#capacity);
    if (this.#waiters.length === 0 && this.#available >= k) {
      this.#available -= k;
      return Promise.resolve(k);
    }
    return new Promise<number>((resolve) => {
      this.#waiters.push({ n: k, resolve: () => resolve(k) });
    });
  }

  /** Returns permits (pass what acquire resolved with). */
  release(n: number): void {
    this.#available += n;
    if (this.#available > this.#capacity) throw new Error(`semaphore released more permits than acquired (${this.#available} > ${this.#capacity})`);
    // FIFO: the head waits even if a later, smaller request would fit, so big chunks do not starve.
    while (this.#waiters.length > 0 && this.#waiters[0]!.n <= this.#available) {
      const w = this.#waiters.shift()!;
      this.#available -= w.n;
      w.resolve();
    }
  }
}
