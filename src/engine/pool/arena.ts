// Arenas: the one ArrayBuffer per batch that carries its numbers to a worker and its results
// back (messages.ts says why). Here: how a request's numbers are packed into an arena, and the
// cache of arenas kept for reuse between batches.
import { StagedArrays } from '../simd/staging.js';
import type { CandidateArrays, ValidateOptions } from '../validate.js';
import { TASK_STRIDE, reducedBytes } from './messages.js';

/** Default arena size; larger requests get an arena of their own size. */
export const ARENA_BYTES = 256 * 1024;
/**
 * Arena of a batch expected to stay small (a low load: few tasks, few candidates). WHY: when
 * the load is low the batch target is small, and a burst of requests (serve hands a chunk of
 * requests to the pool at once) opens many small batches queued behind the worker; with a
 * standard arena each they held far more memory than they used, a visible share of serve's RSS.
 */
export const SMALL_ARENA_BYTES = 32 * 1024;
/**
 * Room a batch's arena needs per byte of task input, for the results that come back in it: a
 * reduced task's 24 B per candidate become 80 B of decisions and features.
 */
export const RESULT_ROOM_FACTOR = 4;
/** Bytes of one task's descriptor row (messages.ts, TASK_STRIDE float64). */
export const INDEX_ROW_BYTES = TASK_STRIDE * 8;

export function align(n: number, a: number): number {
  return (n + a - 1) & ~(a - 1);
}

/** The part of a batch packing writes: its arena and the bytes of it already used. */
export interface ArenaSpace {
  arena: ArrayBuffer;
  used: number;
}

/** A reduced request's numbers inside an arena (CandidateArrays plus the similarities). */
export type PackedNumbers = CandidateArrays & { similarity: Float32Array };

const EMPTY_F32 = new Float32Array(0);

/**
 * Reserves a reduced request's numbers in `b` at its `used` mark (8-aligned) and returns views
 * of them in the layout messages.ts gives for TaskKind.Reduced.
 */
export function packNumbers(b: ArenaSpace, n: number, embeddings: Float32Array = EMPTY_F32): PackedNumbers {
  const off = align(b.used, 8);
  b.used = off + reducedBytes(n);
  return {
    embeddings,
    createdAt: new Float64Array(b.arena, off, n),
    accessCount: new Float64Array(b.arena, off + 8 * n, n),
    successRate: new Float32Array(b.arena, off + 16 * n, n),
    similarity: new Float32Array(b.arena, off + 20 * n, n),
  };
}

/** Copies raw payload bytes into `b` at its `used` mark (8-aligned); returns their offset. */
export function packBytes(b: ArenaSpace, bytes: Uint8Array): number {
  const off = align(b.used, 8);
  new Uint8Array(b.arena, off, bytes.length).set(bytes);
  b.used = off + bytes.length;
  return off;
}

/**
 * ValidateOptions that make validateRequest write a request's embeddings into this thread's
 * SIMD staging memory (the similarity kernel reads them in place) and its other numbers
 * straight into the chosen worker's open batch. State is per call: set `slot`, read the rest
 * after validation.
 */
export class Packer<S, B extends ArenaSpace> implements ValidateOptions {
  readonly deferFiniteCheck = true;
  slot: S | null = null;
  batch: B | null = null;
  usedBefore = 0;
  numbers: PackedNumbers | null = null;
  readonly #staged = new StagedArrays();
  constructor(private readonly room: (slot: S, need: number) => B) {}

  allocQuery(dim: number): Float32Array {
    return this.#staged.allocQuery(dim);
  }

  allocCandidates(n: number, dim: number): CandidateArrays {
    const b = this.room(this.slot!, reducedBytes(n) + 8);
    this.batch = b;
    this.usedBefore = b.used;
    const nums = packNumbers(b, n, this.#staged.embeddings(n, dim));
    this.numbers = nums;
    return nums;
  }
}

/**
 * Arenas kept for reuse. Enough standard ones are kept for the peak the pool's bounds allow
 * (the queue's bytes plus every worker's in-flight batches): a fresh arena costs page faults on
 * first touch and GC accounting, which showed up as several times the CPU per request when the
 * pool ran short of recycled ones. Small ones, for a burst of small batches. Oversized one-off
 * arenas are dropped.
 */
export class ArenaCache {
  #standard: ArrayBuffer[] = [];
  #small: ArrayBuffer[] = [];
  constructor(
    private readonly standardKept: number,
    private readonly smallKept: number,
  ) {}

  /** An arena with room for `need` bytes; a small one when the whole batch should fit in it. */
  take(need: number, expected = need): ArrayBuffer {
    if (expected <= SMALL_ARENA_BYTES && need <= SMALL_ARENA_BYTES) return this.#small.pop() ?? new ArrayBuffer(SMALL_ARENA_BYTES);
    if (need <= ARENA_BYTES) return this.#standard.pop() ?? new ArrayBuffer(ARENA_BYTES);
    return new ArrayBuffer(align(need, 65536));
  }

  release(arena: ArrayBuffer): void {
    if (arena.byteLength === ARENA_BYTES) {
      if (this.#standard.length < this.standardKept) this.#standard.push(arena);
    } else if (arena.byteLength === SMALL_ARENA_BYTES && this.#small.length < this.smallKept) this.#small.push(arena);
  }

  /** Bytes of idle arenas held. */
  get bytes(): number {
    return this.#standard.length * ARENA_BYTES + this.#small.length * SMALL_ARENA_BYTES;
  }
}
