// One worker slot of the pool: the batches queued for its worker thread and in flight on it,
// and the control requests waiting for its answers. The thread's life (spawn, start report,
// crash, replacement with backoff) is the ThreadHost's; the slot fails what its thread held when
// the host says the thread is gone. The pool decides what to send.
import { ThreadHost } from '../../threads/host.js';
import { workerScript } from '../../threads/script.js';
import type { Batch, Task } from './batcher.js';
import { WorkerCrashedError } from './errors.js';
import type { FromWorker, RouteResults, ToWorker, WorkerInit } from './messages.js';

const RESPAWN_BACKOFF_MS = [0, 50, 200, 1000, 2000];
const SCRIPT = workerScript(import.meta.url, 'worker');

/** What a slot needs from its pool. */
export interface SlotHost {
  /** workerData for a (re)spawned worker: read at each spawn, so a replacement starts with the current model and settings. */
  workerInit(): WorkerInit;
  /** Whether a dead worker is replaced (false while closing, or before create() finished). */
  replaces(): boolean;
  onReady(slot: WorkerSlot): void;
  onResults(slot: WorkerSlot, msg: RouteResults): void;
  /** A task of this slot failed without reaching the worker (`queued`) or on it. */
  onTaskFailed(task: Task, err: unknown, queued: boolean): void;
  /** The worker died (after its tasks were failed); `replaced` says whether a new one comes. */
  onCrash(slot: WorkerSlot, replaced: boolean): void;
}

interface Control {
  match: (m: FromWorker) => boolean;
  resolve: (m: FromWorker) => void;
  reject: (e: unknown) => void;
}

export class WorkerSlot {
  /** Waiting to be posted, oldest first; the last one may still be open. */
  queue: Batch[] = [];
  inflight = new Map<number, Batch>();
  /** Tasks queued and in flight: what dispatch balances. */
  load = 0;
  flushScheduled = false;
  /** Counts the worker threads this slot has lost: a changed value means a replacement. */
  generation = 0;
  readonly #thread: ThreadHost<ToWorker, FromWorker>;
  #controls = new Set<Control>();

  constructor(
    readonly index: number,
    private readonly host: SlotHost,
  ) {
    this.#thread = new ThreadHost<ToWorker, FromWorker>({
      name: `router worker ${index}`,
      script: SCRIPT,
      workerData: () => host.workerInit(),
      crashError: (message, cause) => new WorkerCrashedError(message, { cause }),
      onReady: () => host.onReady(this),
      onMessage: (m) => this.#onMessage(m),
      onExit: ({ error, replacing }) => this.#onExit(error, replacing),
      replace: { backoffMs: RESPAWN_BACKOFF_MS, when: () => host.replaces() },
    });
  }

  get ready(): boolean {
    return this.#thread.ready;
  }

  get alive(): boolean {
    return this.#thread.alive;
  }

  /** Starts a worker; resolves when it is ready, rejects when it dies first. */
  spawn(): Promise<void> {
    return this.#thread.start();
  }

  /** Resolves at the next 'ready' of this slot's worker; rejects if it dies first. */
  whenReady(): Promise<void> {
    return this.#thread.whenReady();
  }

  /** Posts to the worker (which must be ready). */
  post(msg: ToWorker, transfer?: readonly ArrayBuffer[]): void {
    this.#thread.post(msg, transfer);
  }

  /** A batch answered: the worker is healthy again. */
  answered(batchId: number): Batch | undefined {
    const batch = this.inflight.get(batchId);
    if (!batch) return undefined; // a batch of a crashed generation: already failed
    this.inflight.delete(batchId);
    this.#thread.healthy();
    return batch;
  }

  /** Sends a control message and waits for the worker's matching answer (or its death). */
  control<T extends FromWorker>(msg: ToWorker, match: (m: FromWorker) => m is T): Promise<T> {
    if (!this.#thread.ready) return Promise.reject(new WorkerCrashedError(`router worker ${this.index} is not running`));
    return new Promise<T>((resolve, reject) => {
      this.#controls.add({ match, resolve: resolve as (m: FromWorker) => void, reject });
      this.#thread.post(msg);
    });
  }

  #onMessage(m: FromWorker): void {
    if (m.type === 'results') {
      this.host.onResults(this, m);
      return;
    }
    for (const c of this.#controls) {
      if (c.match(m)) {
        this.#controls.delete(c);
        c.resolve(m);
        return;
      }
    }
  }

  #onExit(err: Error, replacing: boolean): void {
    this.generation++;
    this.failInFlight(err);
    this.#rejectControls(err);
    if (!replacing) {
      // No replacement: what was waiting for this worker fails now.
      this.failQueued(err);
      this.host.onCrash(this, false);
      return;
    }
    // Its queued tasks wait for the replacement.
    this.host.onCrash(this, true);
  }

  /** Fails every task posted to the worker. */
  failInFlight(err: unknown): void {
    for (const batch of this.inflight.values()) {
      for (const t of batch.tasks) {
        this.load--;
        this.host.onTaskFailed(t, err, false);
      }
    }
    this.inflight.clear();
  }

  /** Fails every task not yet posted. */
  failQueued(err: unknown): void {
    for (const batch of this.queue.splice(0)) {
      for (const t of batch.tasks) {
        this.load--;
        this.host.onTaskFailed(t, err, true);
      }
    }
  }

  #rejectControls(err: unknown): void {
    for (const c of this.#controls) c.reject(err);
    this.#controls.clear();
  }

  /** Terminates the worker for good; everything still held fails with `err`. */
  async terminate(err: unknown): Promise<void> {
    await this.#thread.terminate();
    this.failInFlight(err);
    this.failQueued(err);
    this.load = 0;
    this.#rejectControls(err);
  }
}
