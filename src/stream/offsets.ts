// Which offsets may be committed. Chunks of a partition are flushed concurrently (decisions
// produced, rows logged) and finish in any order; an offset may be committed only when every
// chunk before it is done. Per partition, this keeps the chunks in offset order and hands out
// the end of the longest finished prefix.
//
// Entries belong to a consumer-group generation. After a rebalance kafkajs restarts every
// partition from its committed offset, so work of an older generation is redone by the new
// one: its late completions must not be committed (they could move a partition that another
// member now owns back to an older offset). `takeCommittable` only ever returns offsets of the
// generation it is asked for, and `startGeneration` forgets the older ones.
// Pure bookkeeping: no I/O, no timers.

export interface TrackedChunk {
  readonly topic: string;
  readonly partition: number;
  readonly generation: number;
  /** First and last offset of the chunk (decimal strings, as kafkajs has them). */
  readonly first: string;
  readonly last: string;
  done: boolean;
}

export interface CommitOffset {
  topic: string;
  partition: number;
  /** The next offset to consume: last finished offset + 1. */
  offset: string;
}

interface Track {
  generation: number;
  chunks: TrackedChunk[];
  /** Highest offset ready to commit and not yet confirmed committed. */
  toCommit: string | undefined;
}

function key(topic: string, partition: number): string {
  return `${partition}\u0000${topic}`;
}

export class OffsetTracker {
  readonly #tracks = new Map<string, Track>();
  #generation = 0;

  get generation(): number {
    return this.#generation;
  }

  /** A new group generation: everything tracked for older ones is dropped. */
  startGeneration(generation: number): void {
    this.#generation = generation;
    for (const [k, t] of this.#tracks) if (t.generation !== generation) this.#tracks.delete(k);
  }

  /** Registers a chunk about to be flushed. Chunks of a partition must be begun in offset order. */
  begin(topic: string, partition: number, generation: number, first: string, last: string): TrackedChunk {
    const chunk: TrackedChunk = { topic, partition, generation, first, last, done: false };
    if (generation !== this.#generation) return chunk; // stale already: tracked nowhere, never committed
    const k = key(topic, partition);
    let t = this.#tracks.get(k);
    if (!t) {
      t = { generation, chunks: [], toCommit: undefined };
      this.#tracks.set(k, t);
    }
    t.chunks.push(chunk);
    return chunk;
  }

  /** Marks a chunk durable; returns true when that made something committable. */
  finish(chunk: TrackedChunk): boolean {
    chunk.done = true;
    const t = this.#tracks.get(key(chunk.topic, chunk.partition));
    if (!t || t.generation !== chunk.generation) return false;
    let advanced = false;
    while (t.chunks.length > 0 && t.chunks[0]!.done) {
      t.toCommit = t.chunks.shift()!.last;
      advanced = true;
    }
    return advanced;
  }

  /**
   * A chunk could not be flushed: it and every later chunk of its partition are dropped (they
   * will be consumed again from `chunk.first`). Returns the offset to seek to, or undefined when
   * the chunk belongs to an older generation (the group already restarted from its commits).
   */
  fail(chunk: TrackedChunk): string | undefined {
    const t = this.#tracks.get(key(chunk.topic, chunk.partition));
    if (!t || t.generation !== chunk.generation) return undefined;
    const i = t.chunks.indexOf(chunk);
    if (i < 0) return undefined;
    t.chunks.length = i;
    return chunk.first;
  }

  /** Offsets ready to commit for the current generation (they stay until `committed`). */
  takeCommittable(): CommitOffset[] {
    const out: CommitOffset[] = [];
    for (const [k, t] of this.#tracks) {
      if (t.generation !== this.#generation || t.toCommit === undefined) continue;
      const sep = k.indexOf('\u0000');
      out.push({ topic: k.slice(sep + 1), partition: Number(k.slice(0, sep)), offset: (BigInt(t.toCommit) + 1n).toString() });
    }
    return out;
  }

  /** Confirms a commit; offsets that moved on meanwhile stay to be committed. */
  committed(offsets: CommitOffset[]): void {
    for (const o of offsets) {
      const t = this.#tracks.get(key(o.topic, o.partition));
      if (t && t.toCommit !== undefined && (BigInt(t.toCommit) + 1n).toString() === o.offset) t.toCommit = undefined;
    }
  }

  /** Chunks not finished yet (all generations still tracked). */
  pending(): number {
    let n = 0;
    for (const t of this.#tracks.values()) n += t.chunks.length;
    return n;
  }

  /** True when nothing waits to be finished or committed in the current generation. */
  settled(): boolean {
    for (const t of this.#tracks.values()) {
      if (t.generation === this.#generation && (t.chunks.length > 0 || t.toCommit !== undefined)) return false;
    }
    return true;
  }
}
