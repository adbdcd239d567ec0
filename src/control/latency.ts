// Latency percentiles over the most recent samples, in constant memory: a ring of the last
// `capacity` values. Recording is O(1) with no allocation (it sits on the routing path);
// the percentiles sort a copy, which only a stats call pays for.
import type { LatencyView } from './target.js';

export class LatencyWindow {
  readonly #ring: Float64Array;
  #next = 0;
  #size = 0;

  constructor(capacity = 4096) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.#ring = new Float64Array(capacity);
  }

  record(value: number): void {
    if (!Number.isFinite(value) || value < 0) return;
    this.#ring[this.#next] = value;
    this.#next = (this.#next + 1) % this.#ring.length;
    if (this.#size < this.#ring.length) this.#size++;
  }

  get size(): number {
    return this.#size;
  }

  /** Nearest-rank percentiles of the samples held (all 0 when there are none). */
  summary(): LatencyView {
    const n = this.#size;
    if (n === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    const sorted = this.#ring.slice(0, n).sort();
    const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
    return { count: n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[n - 1]! };
  }
}
