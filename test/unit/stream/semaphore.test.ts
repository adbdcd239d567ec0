import { describe, expect, it } from 'vitest';
import { Semaphore } from '../../../src/stream/semaphore.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('Semaphore', () => {
  it('grants up to capacity, then queues FIFO', async () => {
    const s = new Semaphore(3);
    expect(await s.acquire(2)).toBe(2);
    const order: string[] = [];
    const a = s.acquire(2).then(() => order.push('a'));
    const b = s.acquire(1).then(() => order.push('b'));
    await tick();
    // b would fit (1 free) but a is first: FIFO, no starvation of big chunks.
    expect(order).toEqual([]);
    expect(s.inUse).toBe(2);
    expect(s.waiting).toBe(2);
    s.release(2);
    await a;
    await b;
    expect(order).toEqual(['a', 'b']);
    expect(s.inUse).toBe(3);
  });

  it('clamps a request above capacity instead of waiting forever', async () => {
    const s = new Semaphore(4);
    expect(await s.acquire(10)).toBe(4);
    s.release(4);
    expect(s.inUse).toBe(0);
  });

  it('refuses releasing more than was acquired', () => {
    const s = new Semaphore(1);
    expect(() => s.release(1)).toThrow(/more permits/);
  });

  it('rejects a nonsensical capacity', () => {
    expect(() => new Semaphore(0)).toThrow(RangeError);
  });
});
