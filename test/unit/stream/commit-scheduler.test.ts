// The at-least-once commit scheduler and the stream's retry loop, without Kafka.
import { describe, expect, it } from 'vitest';
import { CommitScheduler } from '../../../src/stream/commit-scheduler.js';
import type { CommitOffset } from '../../../src/stream/offsets.js';
import { retrying } from '../../../src/stream/retry.js';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('CommitScheduler', () => {
  it('commits one at a time, coalescing what finished meanwhile into the next commit', async () => {
    const commits: CommitOffset[][] = [];
    let release!: () => void;
    const s = new CommitScheduler({
      canCommit: () => true,
      commit: async (o) => {
        commits.push(o);
        if (commits.length === 1) await new Promise<void>((r) => (release = r));
      },
    });
    s.offsets.startGeneration(1);
    const a = s.offsets.begin('t', 0, 1, '0', '9');
    const b = s.offsets.begin('t', 0, 1, '10', '19');
    const c = s.offsets.begin('t', 0, 1, '20', '29');
    s.offsets.finish(a);
    s.schedule();
    await tick();
    expect(s.busy).toBe(true);
    s.offsets.finish(b);
    s.schedule();
    s.offsets.finish(c);
    s.schedule();
    release();
    await tick(10);
    expect(commits).toEqual([[{ topic: 't', partition: 0, offset: '10' }], [{ topic: 't', partition: 0, offset: '30' }]]);
    expect(s.offsets.settled()).toBe(true);
  });

  it('keeps the offsets after a failed commit and retries them', async () => {
    let calls = 0;
    const errors: unknown[] = [];
    const s = new CommitScheduler({
      canCommit: () => true,
      retryMs: 5,
      onError: (e) => errors.push(e),
      commit: () => (++calls === 1 ? Promise.reject(new Error('coordinator moved')) : Promise.resolve()),
    });
    s.offsets.startGeneration(1);
    s.offsets.finish(s.offsets.begin('t', 1, 1, '0', '4'));
    s.schedule();
    await tick(50);
    expect(calls).toBe(2);
    expect(errors).toHaveLength(1);
    expect(s.offsets.settled()).toBe(true);
  });

  it('commits nothing while it cannot (mid-rebalance)', async () => {
    let calls = 0;
    const s = new CommitScheduler({ canCommit: () => false, commit: async () => void calls++ });
    s.offsets.startGeneration(1);
    s.offsets.finish(s.offsets.begin('t', 0, 1, '0', '0'));
    s.schedule();
    await tick(10);
    expect(calls).toBe(0);
  });
});

describe('retrying', () => {
  it('retries retriable failures with backoff until one succeeds', async () => {
    let n = 0;
    const delays: (number | undefined)[] = [];
    const v = await retrying(
      () => (++n < 3 ? Promise.reject(new Error('transient')) : Promise.resolve('ok')),
      new AbortController().signal,
      { onError: (_e, _a, d) => delays.push(d) },
    );
    expect(v).toBe('ok');
    expect(delays).toHaveLength(2);
    expect(delays.every((d) => d !== undefined && d >= 100 && d <= 400)).toBe(true);
  });

  it('gives up at once on a non-retriable error, and on abort with the signal reason', async () => {
    const fatal = Object.assign(new Error('fatal'), { retriable: false });
    await expect(retrying(() => Promise.reject(fatal), new AbortController().signal)).rejects.toBe(fatal);
    const ctl = new AbortController();
    const reason = new Error('drain deadline');
    const p = retrying(() => new Promise(() => {}), ctl.signal);
    ctl.abort(reason);
    await expect(p).rejects.toBe(reason);
  });
});
