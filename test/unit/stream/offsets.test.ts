import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OffsetTracker } from '../../../src/stream/offsets.js';

describe('OffsetTracker', () => {
  it('commits only the end of the longest finished prefix of chunks, per partition', () => {
    const t = new OffsetTracker();
    t.startGeneration(1);
    const a = t.begin('in', 0, 1, '0', '9');
    const b = t.begin('in', 0, 1, '10', '19');
    const c = t.begin('in', 0, 1, '20', '29');
    const other = t.begin('in', 1, 1, '0', '4');
    expect(t.finish(b)).toBe(false); // a is still running: nothing may be committed
    expect(t.takeCommittable()).toEqual([]);
    expect(t.finish(a)).toBe(true);
    expect(t.takeCommittable()).toEqual([{ topic: 'in', partition: 0, offset: '20' }]);
    t.finish(other);
    t.finish(c);
    const ready = t.takeCommittable();
    expect(ready).toEqual(expect.arrayContaining([
      { topic: 'in', partition: 0, offset: '30' },
      { topic: 'in', partition: 1, offset: '5' },
    ]));
    t.committed(ready);
    expect(t.takeCommittable()).toEqual([]);
    expect(t.settled()).toBe(true);
  });

  it('keeps an offset whose commit failed (or moved on meanwhile) until it is confirmed', () => {
    const t = new OffsetTracker();
    t.startGeneration(3);
    const a = t.begin('in', 0, 3, '100', '109');
    t.finish(a);
    const first = t.takeCommittable();
    const b = t.begin('in', 0, 3, '110', '119');
    t.finish(b); // moved on before the first commit was confirmed
    t.committed(first);
    expect(t.takeCommittable()).toEqual([{ topic: 'in', partition: 0, offset: '120' }]);
    expect(t.settled()).toBe(false);
  });

  it('never commits work of an older generation, and forgets it at a rebalance', () => {
    const t = new OffsetTracker();
    t.startGeneration(1);
    const old = t.begin('in', 0, 1, '0', '9');
    t.startGeneration(2); // rebalance: partition 0 restarts from its committed offset
    expect(t.finish(old)).toBe(false);
    expect(t.takeCommittable()).toEqual([]);
    const fresh = t.begin('in', 0, 2, '0', '9');
    const stale = t.begin('in', 0, 1, '10', '19'); // begun by a batch of the old generation
    t.finish(stale);
    expect(t.takeCommittable()).toEqual([]);
    t.finish(fresh);
    expect(t.takeCommittable()).toEqual([{ topic: 'in', partition: 0, offset: '10' }]);
  });

  it('a failed chunk drops itself and everything after it, and says where to consume again', () => {
    const t = new OffsetTracker();
    t.startGeneration(1);
    const a = t.begin('in', 0, 1, '0', '9');
    const b = t.begin('in', 0, 1, '10', '19');
    const c = t.begin('in', 0, 1, '20', '29');
    expect(t.fail(b)).toBe('10');
    t.finish(c); // dropped: its completion is ignored
    t.finish(a);
    expect(t.takeCommittable()).toEqual([{ topic: 'in', partition: 0, offset: '10' }]);
    expect(t.pending()).toBe(0);
  });

  it('offsets beyond 2^53 stay exact', () => {
    const t = new OffsetTracker();
    t.startGeneration(1);
    const a = t.begin('in', 0, 1, '9007199254740993', '9007199254740999');
    t.finish(a);
    expect(t.takeCommittable()).toEqual([{ topic: 'in', partition: 0, offset: '9007199254741000' }]);
  });

  it('property: whatever order chunks finish in, the committed offset never passes an unfinished chunk', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(fc.nat(), { minLength: 1, maxLength: 40 }), (count, picks) => {
        const t = new OffsetTracker();
        t.startGeneration(1);
        const chunks = Array.from({ length: count }, (_, i) => t.begin('in', 0, 1, String(i * 10), String(i * 10 + 9)));
        const finished = new Set<number>();
        let committed = 0;
        for (const p of picks) {
          const i = p % count;
          t.finish(chunks[i]!);
          finished.add(i);
          for (const o of t.takeCommittable()) {
            const next = Number(o.offset);
            expect(next).toBeGreaterThanOrEqual(committed);
            // Every chunk below the committed offset is finished.
            for (let k = 0; k * 10 < next; k++) expect(finished.has(k)).toBe(true);
            committed = next;
            t.committed([o]);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
