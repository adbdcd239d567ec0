// The batching policy without workers: batch targets from the load, sealing, which batch is
// posted when, and arenas reused.
import { describe, expect, it } from 'vitest';
import { ARENA_BYTES, ArenaCache, SMALL_ARENA_BYTES, packBytes, packNumbers } from '../../../../src/engine/pool/arena.js';
import { Batcher, MAX_BATCH_CANDIDATES, MAX_INFLIGHT, releaseBatch, settleTask, type Batch, type Task } from '../../../../src/engine/pool/batcher.js';
import type { RoutingResponse } from '../../../../src/wire/types.js';
import { TASK_STRIDE } from '../../../../src/engine/pool/messages.js';

const task = (id: number): Task => ({ id, resolve: () => {}, reject: () => {}, requestId: `r${id}`, ids: [], candidateMetadata: null, bytes: 100 });
const row = (id: number, n: number): number[] => [id, 0, 16, n, 0, 0, -1];

describe('Batcher', () => {
  it('sizes batches from the outstanding load, within [1, maxBatch]', () => {
    const b = new Batcher(64, new ArenaCache(4, 4));
    expect(b.target).toBe(64);
    b.retarget(64, 1);
    expect(b.target).toBe(64 / MAX_INFLIGHT);
    b.retarget(0, 2);
    expect(b.target).toBe(1);
    b.retarget(10_000, 1);
    expect(b.target).toBe(64);
  });

  it('seals a batch at its target or at MAX_BATCH_CANDIDATES, then opens a new one', () => {
    const b = new Batcher(2, new ArenaCache(4, 4));
    const queue: Batch[] = [];
    const first = b.batchWithRoom(queue, 64);
    b.add(first, task(1), row(1, 3));
    expect(first.sealed).toBe(false);
    b.add(b.batchWithRoom(queue, 64), task(2), row(2, 3));
    expect(first.sealed).toBe(true);
    expect(first.index).toHaveLength(2 * TASK_STRIDE);
    const second = b.batchWithRoom(queue, 64);
    expect(second).not.toBe(first);
    b.add(second, task(3), row(3, MAX_BATCH_CANDIDATES));
    expect(second.sealed).toBe(true);
    expect(queue).toEqual([first, second]);
  });

  it('posts the open batch only when the worker would otherwise idle', () => {
    const b = new Batcher(8, new ArenaCache(4, 4));
    const queue: Batch[] = [];
    b.add(b.batchWithRoom(queue, 64), task(1), row(1, 1));
    expect(b.next(queue, 1, false)).toBeNull(); // the worker is busy: keep filling
    expect(b.next(queue, MAX_INFLIGHT, true)).toBeNull(); // no room on the worker
    const batch = b.next(queue, 0, false)!;
    expect(batch.tasks).toHaveLength(1);
    const msg = b.message(batch);
    expect(batch.sealed).toBe(true);
    expect(msg).toMatchObject({ type: 'route', batchId: batch.id, count: 1, meta: null });
    expect(Array.from(new Float64Array(msg.arena, msg.indexOffset, TASK_STRIDE))).toEqual(row(1, 1));
  });

  it('drops empty batches and returns their arenas', () => {
    const arenas = new ArenaCache(4, 4);
    const b = new Batcher(8, arenas);
    const queue: Batch[] = [];
    b.batchWithRoom(queue, 64);
    expect(b.next(queue, 0, false)).toBeNull();
    expect(queue).toHaveLength(0);
    expect(arenas.bytes).toBe(SMALL_ARENA_BYTES);
  });
});

describe('settled tasks and answered batches let go', () => {
  // What a settled task or an answered batch still points to survives young-generation
  // collections while they sit dead in the old generation (batcher.ts, settleTask).
  const response = { decisions: [], inference_time_us: 1, feature_time_us: 0, candidates_processed: 0, policy: 'global' } as RoutingResponse;

  it('settleTask resolves once, then the task holds neither its promise functions nor its lists', async () => {
    const t = task(1);
    t.ids = ['a', 'b'];
    t.candidateMetadata = [{ k: 'v' }, { k: 'w' }];
    const p = new Promise<RoutingResponse>((resolve, reject) => Object.assign(t, { resolve, reject }));
    const { resolve, reject } = t;
    settleTask(t, { ok: true, response });
    await expect(p).resolves.toBe(response);
    expect(t.resolve).not.toBe(resolve);
    expect(t.reject).not.toBe(reject);
    expect(t.ids).toHaveLength(0);
    expect(t.candidateMetadata).toBeNull();
    t.resolve(response); // a late second settle is a no-op, not an error
    t.reject(new Error('late'));
  });

  it('settleTask rejects with the outcome error', async () => {
    const t = task(2);
    const p = new Promise<RoutingResponse>((resolve, reject) => Object.assign(t, { resolve, reject }));
    const err = new Error('worker crashed');
    settleTask(t, { ok: false, error: err });
    await expect(p).rejects.toBe(err);
    expect(t.ids).toHaveLength(0);
  });

  it('releaseBatch empties the batch of its tasks, rows and metadata', () => {
    const b = new Batcher(4, new ArenaCache(4, 4));
    const batch = b.batchWithRoom([], 64);
    b.add(batch, task(3), row(3, 2));
    batch.meta = [{ metadata: { a: 'b' }, candidateMetadata: [] }];
    releaseBatch(batch);
    expect(batch.tasks).toHaveLength(0);
    expect(batch.index).toHaveLength(0);
    expect(batch.meta).toBeNull();
  });
});

describe('arena packing and reuse', () => {
  it('packs numbers and bytes 8-aligned after what is used', () => {
    const space = { arena: new ArrayBuffer(1024), used: 3 };
    const nums = packNumbers(space, 4);
    expect(nums.createdAt.byteOffset).toBe(8);
    expect(nums.similarity.byteOffset).toBe(8 + 20 * 4);
    expect(space.used).toBe(8 + 24 * 4);
    const off = packBytes(space, Uint8Array.from([1, 2, 3]));
    expect(off).toBe(8 + 24 * 4);
    expect(new Uint8Array(space.arena, off, 3)).toEqual(Uint8Array.from([1, 2, 3]));
  });

  it('keeps standard and small arenas up to their limits, drops one-off sizes', () => {
    const c = new ArenaCache(1, 1);
    const big = c.take(ARENA_BYTES + 1);
    expect(big.byteLength).toBeGreaterThan(ARENA_BYTES);
    c.release(big);
    expect(c.bytes).toBe(0);
    const std = c.take(1000, ARENA_BYTES);
    expect(std.byteLength).toBe(ARENA_BYTES);
    c.release(std);
    c.release(new ArrayBuffer(ARENA_BYTES)); // over the limit: dropped
    expect(c.bytes).toBe(ARENA_BYTES);
    expect(c.take(1000, ARENA_BYTES)).toBe(std);
    const small = c.take(100);
    expect(small.byteLength).toBe(SMALL_ARENA_BYTES);
  });
});
