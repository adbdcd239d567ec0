// One worker slot of the pool: the worker thread's lifecycle (spawn, ready, crash, replacement
// with backoff) and the batches queued for it and in flight on it. The pool decides what to
// send; the slot keeps track of what was sent and fails it when the worker dies.
import { Worker } from 'node:worker_threads';
import { ModelError, errorMessage } from '../../errors.js';
import { workerScript } from '../../worker-script.js';
import type { Batch, Task } from './batcher.js';
import { WorkerCrashedError } from './errors.js';
import type { FromWorker, RouteResults, ToWorker, WorkerInit } from './messages.js';

const RESPAWN_BACKOFF_MS = [0, 50, 200, 1000, 2000];
const SCRIPT = workerScript(import.meta.url, 'worker');

/** What a slot needs from its pool. */
export interface SlotHost {
  /** workerData for a (re)spawned worker: read at each spawn, so a replacement starts with the current model and settings. */
  workerInit(): WorkerInit;
  /** The pool has been terminated: a worker's exit is expected, not a crash. */
  terminated(): boolean;
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
  worker: Worker | null = null;
  ready = false;
  /** Waiting to be posted, oldest first; the last one may still be open. */
  queue: Batch[] = [];
  inflight = new Map<number, Batch>();
  /** Tasks queued and in flight: what dispatch balances. */
  load = 0;
  flushScheduled = false;
  #controls = new Set<Control>();
  #consecutiveCrashes = 0;
  #lastError: unknown = undefined;
  #readyWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(
    readonly index: number,
    private readonly host: SlotHost,
  ) {}

  /** Starts a worker; resolves when it is ready, rejects when it dies first. */
  spawn(): Promise<void> {
    const w = new Worker(SCRIPT.target, { workerData: this.host.workerInit(), eval: SCRIPT.eval });
    this.worker = w;
    this.ready = false;
    this.#lastError = undefined;
    const ready = this.whenReady();
    w.on('message', (m: FromWorker) => this.#onMessage(w, m));
    w.on('error', (err) => {
      if (this.worker === w) this.#lastError = err;
    });
    w.on('exit', (code) => this.#onExit(w, code));
    return ready;
  }

  /** Resolves at the next 'ready' of this slot's worker; rejects if it dies first. */
  whenReady(): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  /** A batch answered: the worker is healthy again. */
  answered(batchId: number): Batch | undefined {
    const batch = this.inflight.get(batchId);
    if (!batch) return undefined; // a batch of a crashed generation: already failed
    this.inflight.delete(batchId);
    this.#consecutiveCrashes = 0;
    return batch;
  }

  /** Sends a control message and waits for the worker's matching answer (or its death). */
  control<T extends FromWorker>(msg: ToWorker, match: (m: FromWorker) => m is T): Promise<T> {
    const w = this.worker;
    if (!w || !this.ready) return Promise.reject(new WorkerCrashedError(`router worker ${this.index} is not running`));
    return new Promise<T>((resolve, reject) => {
      this.#controls.add({ match, resolve: resolve as (m: FromWorker) => void, reject });
      w.postMessage(msg);
    });
  }

  #onMessage(w: Worker, m: FromWorker): void {
    if (this.worker !== w) return;
    switch (m.type) {
      case 'results':
        this.host.onResults(this, m);
        return;
      case 'ready':
        this.ready = true;
        for (const r of this.#readyWaiters.splice(0)) r.resolve();
        this.host.onReady(this);
        return;
      case 'init-failed':
        this.#lastError = new ModelError(`worker ${this.index} could not start: ${m.message}`);
        return;
      default:
        for (const c of this.#controls) {
          if (c.match(m)) {
            this.#controls.delete(c);
            c.resolve(m);
            return;
          }
        }
    }
  }

  #onExit(w: Worker, code: number): void {
    if (this.worker !== w) return;
    this.worker = null;
    this.ready = false;
    if (this.host.terminated()) return;
    const why = this.#lastError !== undefined ? `: ${errorMessage(this.#lastError)}` : '';
    const err = new WorkerCrashedError(`router worker ${this.index} exited with code ${code}${why}`, { cause: this.#lastError });
    this.failInFlight(err);
    this.#rejectWaiters(err);
    if (!this.host.replaces()) {
      // No replacement: what was waiting for this worker fails now.
      this.failQueued(err);
      this.host.onCrash(this, false);
      return;
    }
    const delay = RESPAWN_BACKOFF_MS[Math.min(this.#consecutiveCrashes, RESPAWN_BACKOFF_MS.length - 1)]!;
    this.#consecutiveCrashes++;
    const respawn = (): void => {
      if (!this.host.replaces() || this.worker) return;
      // A replacement that fails to start is handled by its own exit event (next backoff step).
      this.spawn().catch(() => {});
    };
    if (delay === 0) respawn();
    else setTimeout(respawn, delay);
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

  #rejectWaiters(err: unknown): void {
    for (const c of this.#controls) c.reject(err);
    this.#controls.clear();
    for (const r of this.#readyWaiters.splice(0)) r.reject(err);
  }

  /** After the worker was terminated: everything still held fails with `err`. */
  abandon(err: unknown): void {
    this.failInFlight(err);
    this.failQueued(err);
    this.load = 0;
    this.#rejectWaiters(err);
    this.worker = null;
    this.ready = false;
  }
}
