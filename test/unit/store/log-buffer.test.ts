// The decision log's buffer without Postgres: tokens, the backlog bound, flushed() settling in
// token order whatever order batches finish in, watermarks, and giving up on close.
import { describe, expect, it } from 'vitest';
import type { DecisionRow } from '../../../src/store/decision-rows.js';
import { DecisionLogClosedError, DecisionLogFullError } from '../../../src/store/errors.js';
import { LogBuffer, type BacklogInfo } from '../../../src/store/log-buffer.js';

const row = (i: number): DecisionRow => ({
  request_id: `r${i}`, candidate_id: 'c', rank: 0, confidence: 0.5, uncertainty: 0, use_lightweight: true,
  reason: 'model', model_version: 'v1', inference_time_us: 1,
});
const rows = (n: number, from = 0): DecisionRow[] => Array.from({ length: n }, (_, i) => row(from + i));

function buffer(limits = { maxBuffered: 10, highWaterMark: 8, lowWaterMark: 4 }) {
  const events: Array<[string, BacklogInfo]> = [];
  const b = new LogBuffer(limits, { pressure: (i) => events.push(['pressure', i]), relief: (i) => events.push(['relief', i]) });
  return { b, events };
}

/** Lets promise callbacks run. */
const tick = () => new Promise((r) => setImmediate(r));

describe('LogBuffer', () => {
  it('numbers rows with consecutive tokens and takes them oldest first', () => {
    const { b } = buffer();
    expect(b.push([], 1)).toBe(0);
    expect(b.push(rows(3), 100)).toBe(3);
    expect(b.push(rows(2, 3), 200)).toBe(5);
    expect(b.lastToken()).toBe(5);
    expect(b.appended).toBe(5);
    const { start, batch } = b.take(4);
    expect(start).toBe(1);
    expect(batch.rows.map((r) => r.request_id)).toEqual(['r0', 'r1', 'r2', 'r3']);
    expect(batch.times).toEqual([100, 100, 100, 200]);
    expect(b.buffered()).toBe(1);
    expect(b.inFlightRows()).toBe(4);
    expect(b.backlog()).toBe(5);
    expect(b.oldestPendingAt()).toBe(100);
  });

  it('refuses rows past maxBuffered, appending none of them', () => {
    const { b } = buffer();
    b.push(rows(9), 0);
    expect(() => b.push(rows(2), 0)).toThrow(DecisionLogFullError);
    expect(() => b.push(rows(11), 0)).toThrow(/at most 10/);
    expect(b.backlog()).toBe(9);
    expect(b.appended).toBe(9);
  });

  it('settles flushed() in token order, whichever batch finishes first', async () => {
    const { b } = buffer();
    b.push(rows(4), 0);
    const first = b.take(2);
    const second = b.take(2);
    const settled: number[] = [];
    void b.flushed(2).then(() => settled.push(2));
    void b.flushed(4).then(() => settled.push(4));
    b.settle(second.start, 2);
    await tick();
    expect(settled).toEqual([]);
    expect(b.durable()).toBe(0);
    b.settle(first.start, 2);
    await tick();
    expect(settled).toEqual([2, 4]);
    expect(b.durable()).toBe(4);
    await expect(b.flushed(3)).resolves.toBeUndefined();
    await expect(b.flushed(9)).rejects.toThrow(RangeError);
  });

  it('signals pressure at the high watermark and relief at the low one, releasing waiters', async () => {
    const { b, events } = buffer();
    b.push(rows(8), 0);
    expect(b.pressured).toBe(true);
    expect(events).toEqual([['pressure', { backlog: 8, maxBuffered: 10 }]]);
    let released = false;
    void b.waitForCapacity().then(() => { released = true; });
    const t = b.take(3);
    b.settle(t.start, 3); // backlog 5: still above the low watermark
    await tick();
    expect(released).toBe(false);
    const u = b.take(1);
    b.settle(u.start, 1);
    await tick();
    expect(released).toBe(true);
    expect(b.pressured).toBe(false);
    expect(events[1]).toEqual(['relief', { backlog: 4, maxBuffered: 10 }]);
    await expect(b.waitForCapacity()).resolves.toBeUndefined();
  });

  it('a waitForCapacity() caller can abort, or be rejected at close', async () => {
    const { b } = buffer();
    b.push(rows(8), 0);
    const ac = new AbortController();
    const aborted = b.waitForCapacity(ac.signal);
    ac.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    const closed = b.waitForCapacity();
    b.rejectCapacityWaiters(new DecisionLogClosedError('closed'));
    await expect(closed).rejects.toThrow(DecisionLogClosedError);
  });

  it('abandon() rejects every unsettled flushed() and all later ones above what was durable', async () => {
    const { b } = buffer();
    b.push(rows(3), 0);
    const t = b.take(1);
    b.settle(t.start, 1);
    const pending = b.flushed(3);
    b.abandon(new DecisionLogClosedError('closed with rows unwritten'));
    await expect(pending).rejects.toThrow(/unwritten/);
    await expect(b.flushed(1)).resolves.toBeUndefined();
    await expect(b.flushed(2)).rejects.toThrow(DecisionLogClosedError);
  });

  it('compacts the FIFO without losing order', () => {
    const { b } = buffer({ maxBuffered: 5000, highWaterMark: 4000, lowWaterMark: 100 });
    b.push(rows(3000), 0);
    const a = b.take(2000);
    b.settle(a.start, 2000);
    const next = b.take(10);
    expect(next.start).toBe(2001);
    expect(next.batch.rows[0]!.request_id).toBe('r2000');
    expect(b.buffered()).toBe(990);
  });
});
