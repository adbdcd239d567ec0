// The batching policy: how concurrent route() calls are coalesced into batches, one message per
// worker. A slot has at most MAX_INFLIGHT batches posted (one running, one waiting in its port
// so the worker never idles on a round trip); tasks arriving meanwhile fill the next batch, so
// batches grow with load, up to a target sized from the load (retarget).
import type { RoutingResponse } from '../../wire/types.js';
import { ArenaCache, INDEX_ROW_BYTES, RESULT_ROOM_FACTOR, align } from './arena.js';
import { T_N, type RouteBatch, type TaskMeta } from './messages.js';

/**
 * A batch is closed at this many candidates. All decision objects of a batch are built in one
 * go when its results arrive; a burst of them large enough outlives young-generation GCs and
 * gets promoted, costing more CPU than the scoring.
 */
export const MAX_BATCH_CANDIDATES = 1024;
/** Batches posted to one worker at a time: one running, one waiting in its port. */
export const MAX_INFLIGHT = 2;

export interface Task {
  id: number;
  resolve: (r: RoutingResponse) => void;
  reject: (e: unknown) => void;
  requestId: string;
  ids: string[];
  /** null when every candidate's metadata is empty: decisions then share EMPTY_METADATA. */
  candidateMetadata: Record<string, string>[] | null;
  bytes: number;
  /** The request's td-top-k (wire/response.ts), passed on in its response. */
  topK?: number | undefined;
}

const settled = (): void => {};
/** Shared by every settled task, so frozen: a write into it would show in all of them. */
const NO_IDS = Object.freeze([]) as unknown as string[];

/**
 * Resolves or rejects a task's promise, then drops what the task points to. WHY: a task (or its
 * batch) still in flight when a young-generation collection comes may be promoted to the old
 * generation, where it stays, dead, until the next full collection. Until then everything it
 * still references survives every scavenge: its `resolve` leads to the promise, and the promise
 * to the response of 100 decision objects built after the promotion. Those are then promoted in
 * their turn, old space refills, and under V8's incremental marking the cycle keeps going: the
 * calling thread spends its time collecting (most visible with many requests of many candidates
 * in flight; the README's benchmark section has the numbers).
 */
export function settleTask(task: Task, outcome: { ok: true; response: RoutingResponse } | { ok: false; error: unknown }): void {
  const { resolve, reject } = task;
  task.resolve = settled;
  task.reject = settled;
  task.ids = NO_IDS;
  task.candidateMetadata = null;
  if (outcome.ok) resolve(outcome.response);
  else reject(outcome.error);
}

/** Empties an answered batch, for the same reason as settleTask. */
export function releaseBatch(batch: Batch): void {
  batch.tasks.length = 0;
  batch.index.length = 0;
  batch.meta = null;
}

export interface Batch {
  id: number;
  arena: ArrayBuffer;
  used: number;
  /** TASK_STRIDE numbers per task. */
  index: number[];
  tasks: Task[];
  meta: TaskMeta[] | null;
  sealed: boolean;
  /** Candidates of its validated tasks: bounds the decision objects built at once for it. */
  candidates: number;
}

export class Batcher {
  /** Tasks per batch for the current load; recomputed at every flush (retarget). */
  #target: number;
  #nextBatch = 1;

  constructor(
    private readonly maxBatch: number,
    readonly arenas: ArenaCache,
  ) {
    this.#target = maxBatch;
  }

  get target(): number {
    return this.#target;
  }

  /**
   * The open batch at the end of `queue` if it has room for `need` more bytes (plus a task's
   * index row), else a new one appended to `queue`.
   */
  batchWithRoom(queue: Batch[], need: number): Batch {
    const last = queue[queue.length - 1];
    need += INDEX_ROW_BYTES;
    if (last && !last.sealed) {
      if (last.arena.byteLength - align(last.used, 16) - (last.tasks.length + 1) * INDEX_ROW_BYTES - 8 >= need) return last;
      if (last.tasks.length === 0) {
        this.arenas.release(last.arena);
        last.arena = this.arenas.take(need);
        last.used = 0;
        return last;
      }
      last.sealed = true;
    }
    const arena = this.arenas.take(need + 8, this.#target * need * RESULT_ROOM_FACTOR + 8);
    const batch: Batch = { id: this.#nextBatch++, arena, used: 0, index: [], tasks: [], meta: null, sealed: false, candidates: 0 };
    queue.push(batch);
    return batch;
  }

  /** Adds a task with its descriptor row; seals the batch once it reached its size. */
  add(batch: Batch, task: Task, row: readonly number[]): void {
    for (const v of row) batch.index.push(v);
    batch.tasks.push(task);
    batch.candidates += row[T_N]!;
    if (batch.tasks.length >= this.#target || batch.candidates >= MAX_BATCH_CANDIDATES) batch.sealed = true;
  }

  /**
   * Sizes the next batches so every worker always has one batch running and one waiting while
   * this thread fills the next: outstanding tasks / (workers × MAX_INFLIGHT), within
   * [1, maxBatch]. WHY: with one batch as large as the whole load the two threads take turns —
   * the worker idles while this thread turns results into decisions and packs the next
   * requests, then this thread idles while the worker scores; two half-size batches keep both
   * busy. Computed when a flush runs, i.e. after the callers woken by the last results have
   * queued their next requests, so in a steady stream it sees the whole load; the first burst
   * after idling uses the previous estimate.
   */
  retarget(outstanding: number, workers: number): void {
    const perBatch = Math.ceil(outstanding / (workers * MAX_INFLIGHT));
    this.#target = Math.min(this.maxBatch, Math.max(1, perBatch));
  }

  /**
   * The next batch of `queue` to post to a worker with `inflight` batches, taken off the queue,
   * or null. The open (not yet full) batch goes only when the worker would otherwise idle (or
   * the pool is closing): while it has work, the open batch keeps filling. WHY: a closed loop
   * of callers preserves batch sizes (a batch of 16 coming back wakes 16 callers, who queue 16
   * new requests), so a partial batch posted early splits the load into more, smaller batches
   * for good, and throughput drops with them.
   */
  next(queue: Batch[], inflight: number, closing: boolean): Batch | null {
    while (inflight < MAX_INFLIGHT && queue.length > 0) {
      if (!queue[0]!.sealed && inflight > 0 && !closing) return null;
      const batch = queue.shift()!;
      if (batch.tasks.length > 0) return batch;
      this.arenas.release(batch.arena);
    }
    return null;
  }

  /** Seals `batch` and writes its descriptor rows into its arena: the message to post. */
  message(batch: Batch): RouteBatch {
    batch.sealed = true;
    const indexOffset = align(batch.used, 8);
    new Float64Array(batch.arena, indexOffset, batch.index.length).set(batch.index);
    return { type: 'route', batchId: batch.id, arena: batch.arena, indexOffset, count: batch.tasks.length, meta: batch.meta };
  }
}
