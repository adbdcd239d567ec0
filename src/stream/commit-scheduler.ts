// At-least-once offset commits: one commit in flight at a time, requests coalesced while it
// runs, and a retry shortly after a failed one (the work is durable; only the commit is late).
// What may be committed is the OffsetTracker's business (./offsets.ts); how is the caller's.
import { OffsetTracker, type CommitOffset } from './offsets.js';

export interface CommitSchedulerOptions {
  /** Commits the offsets (the consumer's commitOffsets). */
  commit: (offsets: CommitOffset[]) => Promise<void>;
  /** False while no commit can be accepted (mid-rebalance): the next generation replays. */
  canCommit: () => boolean;
  onCommitted?: () => void;
  onError?: (err: unknown) => void;
  retryMs?: number;
}

export class CommitScheduler {
  readonly offsets = new OffsetTracker();
  readonly #o: CommitSchedulerOptions;
  #committing: Promise<void> | undefined;
  #again = false;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: CommitSchedulerOptions) {
    this.#o = opts;
  }

  /** True while a commit is in flight. */
  get busy(): boolean {
    return this.#committing !== undefined;
  }

  /** Commits what the tracker says is finished, now or right after the commit in flight. */
  schedule(): void {
    if (this.#stopped) return;
    if (this.#committing) {
      this.#again = true;
      return;
    }
    this.#committing = this.#commitNow().finally(() => {
      this.#committing = undefined;
      if (this.#again) {
        this.#again = false;
        this.schedule();
      }
    });
  }

  /** No more retries after this (a drain that has given up). */
  stop(): void {
    this.#stopped = true;
    if (this.#retry) clearTimeout(this.#retry);
  }

  async #commitNow(): Promise<void> {
    if (!this.#o.canCommit()) return;
    const offsets = this.offsets.takeCommittable();
    if (offsets.length === 0) return;
    try {
      await this.#o.commit(offsets);
      this.offsets.committed(offsets);
      this.#o.onCommitted?.();
    } catch (err) {
      // The offsets stay in the tracker and go with the next commit.
      this.#o.onError?.(err);
      if (!this.#retry && !this.#stopped) {
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.schedule();
        }, this.#o.retryMs ?? 500);
        this.#retry.unref();
      }
    }
  }
}
