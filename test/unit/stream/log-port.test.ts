import { describe, expect, it } from 'vitest';
import { DecisionLogFullError } from '../../../src/store/errors.js';
import { decisionLogPort, type DecisionLogLike } from '../../../src/stream/log-port.js';
import type { LoggedDecision } from '../../../src/stream/processor.js';

/** A log with a bounded buffer that a test drains by hand. */
class FakeLog implements DecisionLogLike {
  buffered: LoggedDecision[] = [];
  durableUpTo = 0;
  seq = 0;
  appendCalls = 0;
  waiters: { token: number; resolve: () => void }[] = [];
  constructor(readonly maxBuffered: number, readonly highWaterMark: number) {}
  append(rows: readonly LoggedDecision[]): number {
    this.appendCalls++;
    if (this.buffered.length + rows.length > this.maxBuffered) throw new DecisionLogFullError(this.buffered.length, this.maxBuffered, rows.length);
    this.buffered.push(...rows);
    this.seq += rows.length;
    return this.seq;
  }
  flushed(token: number): Promise<void> {
    if (token <= this.durableUpTo) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ token, resolve }));
  }
  hasCapacity(): boolean {
    return this.buffered.length < this.highWaterMark;
  }
  async waitForCapacity(): Promise<void> {
    while (!this.hasCapacity()) await new Promise((r) => setTimeout(r, 5));
  }
  backlog(): number {
    return this.buffered.length;
  }
  /** Writes `n` rows "to Postgres". */
  drain(n: number): void {
    const k = Math.min(n, this.buffered.length);
    this.buffered.splice(0, k);
    this.durableUpTo += k;
    for (const w of [...this.waiters]) {
      if (w.token <= this.durableUpTo) {
        w.resolve();
        this.waiters.splice(this.waiters.indexOf(w), 1);
      }
    }
  }
}

const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ request_id: `r${i}` }) as unknown as LoggedDecision);

describe('decisionLogPort', () => {
  it('resolves only once the rows are durable', async () => {
    const log = new FakeLog(100, 80);
    const port = decisionLogPort(log);
    let done = false;
    const p = port.write(rows(10)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    log.drain(10);
    await p;
    expect(done).toBe(true);
  });

  it('waits (without spinning) when the rows do not fit although the log is below its high-water mark', async () => {
    const log = new FakeLog(100, 80);
    const port = decisionLogPort(log, () => true, 10);
    log.append(rows(70)); // below the high-water mark: hasCapacity() is true, but 40 more do not fit
    const p = port.write(rows(40));
    await new Promise((r) => setTimeout(r, 60));
    // Polled a few times, not thousands (a microtask spin would starve this very timer).
    expect(log.appendCalls).toBeGreaterThan(2);
    expect(log.appendCalls).toBeLessThan(20);
    log.drain(70);
    await new Promise((r) => setTimeout(r, 30));
    log.drain(40);
    await p;
    expect(log.durableUpTo).toBe(110);
  });

  it('splits a write larger than the whole buffer', async () => {
    const log = new FakeLog(100, 80);
    const port = decisionLogPort(log, () => true, 5);
    const p = port.write(rows(230));
    const timer = setInterval(() => log.drain(50), 10);
    await p;
    clearInterval(timer);
    expect(log.durableUpTo).toBeGreaterThanOrEqual(230);
  });

  it('passes other failures through and reports pressure', async () => {
    const log = new FakeLog(100, 80);
    log.append = () => {
      throw new Error('closed');
    };
    const port = decisionLogPort(log);
    await expect(port.write(rows(1))).rejects.toThrow('closed');
    expect(port.underPressure()).toBe(false);
    log.buffered = rows(90);
    expect(port.underPressure()).toBe(true);
    expect(port.backlog()).toBe(90);
  });
});
