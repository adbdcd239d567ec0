// One worker thread's life, seen from the thread that owns it: spawn, the start report, a crash
// (an exit nobody asked for) reported once with a retriable error so the owner can fail what the
// thread held, replacement with backoff where the owner wants one, and a bounded close.
//
// The owner keeps its own bookkeeping of work sent (the pool's batches, the producer's sends);
// the host only says when the thread that held it is gone. Events of a thread that was already
// replaced are ignored, so an owner never hears from two generations at once.
import { Worker, type ResourceLimits } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import { ThreadCrashedError, ThreadStartError } from './error.js';
import type { CloseThread, ThreadReady, ThreadStartFailed } from './messages.js';
import type { WorkerScript } from './script.js';

export interface ThreadExit {
  /** The thread's exit code. */
  code: number;
  /** Retriable; its message names the thread and the exit code, its cause the thread's error. */
  error: Error;
  /** Whether the thread had reported ready. */
  wasReady: boolean;
  /** Whether a replacement is on its way. */
  replacing: boolean;
}

export interface ThreadHostOptions<From> {
  /** Names the thread in errors: "router worker 0", "the producer thread". */
  name: string;
  script: WorkerScript;
  /** workerData, read at each spawn: a replacement starts from the owner's current state. */
  workerData: () => unknown;
  resourceLimits?: ResourceLimits;
  /** Every message of the current thread except its start report. */
  onMessage: (m: From) => void;
  onReady?: (m: From) => void;
  /** The error a crash is reported with (default ThreadCrashedError); it must be retriable. */
  crashError?: (message: string, cause: unknown) => Error;
  /** The current thread ended unasked (not by close() or terminate()). */
  onExit: (exit: ThreadExit) => void;
  /**
   * Replace a crashed thread at once, then after these delays for consecutive crashes (reset by
   * healthy()), while `when()` holds. Without it the next start() spawns a new thread.
   */
  replace?: { backoffMs: readonly number[]; when: () => boolean };
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class ThreadHost<To extends { type: string }, From extends { type: string }> {
  readonly #opts: ThreadHostOptions<From>;
  #worker: Worker | null = null;
  #ready = false;
  #starting: Promise<void> | null = null;
  #waiters: Waiter[] = [];
  /** close() or terminate() was called: exits are expected and nothing is replaced. */
  #stopped = false;
  #closing: Promise<boolean> | null = null;
  #consecutiveCrashes = 0;

  constructor(opts: ThreadHostOptions<From>) {
    this.#opts = opts;
  }

  get name(): string {
    return this.#opts.name;
  }

  /** A thread is running and reported ready. */
  get ready(): boolean {
    return this.#ready;
  }

  /** A thread is running (ready or still starting). */
  get alive(): boolean {
    return this.#worker !== null;
  }

  /**
   * Resolves once a thread is ready: at once when one is, else the current start or a new
   * spawn. Rejects with ThreadStartError when the thread reported it cannot start, or
   * ThreadCrashedError when it ended first.
   */
  start(): Promise<void> {
    if (this.#stopped) return Promise.reject(new ThreadCrashedError(`${this.#opts.name} is closed`));
    if (this.#ready) return Promise.resolve();
    if (this.#worker) return this.whenReady();
    this.#starting ??= this.#spawn().finally(() => {
      this.#starting = null;
    });
    return this.#starting;
  }

  /** Resolves at the next ready report of this host's thread; rejects if that thread dies first. */
  whenReady(): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Posts to the ready thread; throws a ThreadCrashedError when there is none. */
  post(msg: To, transfer?: readonly ArrayBuffer[]): void {
    const w = this.#worker;
    if (!w || !this.#ready) throw new ThreadCrashedError(`${this.#opts.name} is not running`);
    w.postMessage(msg, transfer as ArrayBuffer[] | undefined);
  }

  /** The thread answered work: the next crash starts the backoff from the beginning. */
  healthy(): void {
    this.#consecutiveCrashes = 0;
  }

  /**
   * Ends the running thread at once, as a crash would: onExit is called and a replacement
   * follows. A thread still starting is left alone, so repeated kills cannot keep every new
   * thread from ever starting.
   */
  async kill(): Promise<void> {
    if (this.#ready) await this.#worker?.terminate();
  }

  /** Ends the thread at once, expectedly: no onExit, no replacement. */
  async terminate(): Promise<void> {
    this.#stopped = true;
    await this.#worker?.terminate();
  }

  /**
   * Asks the thread to finish and end (`message`, which it answers by exiting) and waits up to
   * `timeoutMs`; then terminates it. Returns whether it ended in time. Nothing is replaced after.
   */
  close(message: To & CloseThread, timeoutMs: number): Promise<boolean> {
    this.#stopped = true;
    const run = async (): Promise<boolean> => {
      const w = this.#worker ?? (await this.#starting?.then(() => this.#worker, () => null));
      if (!w) return true;
      const exited = new Promise<boolean>((resolve) => w.once('exit', () => resolve(true)));
      w.postMessage(message);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, timeoutMs));
      });
      const inTime = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (!inTime) await w.terminate();
      return inTime;
    };
    this.#closing ??= run();
    return this.#closing;
  }

  #spawn(): Promise<void> {
    const { script, resourceLimits } = this.#opts;
    const w = new Worker(script.target, {
      workerData: this.#opts.workerData(),
      eval: script.eval,
      ...(resourceLimits ? { resourceLimits } : {}),
    });
    this.#worker = w;
    this.#ready = false;
    const ready = this.whenReady();
    let lastError: unknown;
    let reported: ThreadStartError | undefined;
    w.on('message', (m: From) => {
      if (this.#worker !== w) return;
      if (m.type === 'ready') {
        this.#ready = true;
        for (const r of this.#waiters.splice(0)) r.resolve();
        this.#opts.onReady?.(m as From & ThreadReady);
      } else if (m.type === 'start-failed') {
        reported = new ThreadStartError(this.#opts.name, (m as unknown as ThreadStartFailed).error);
      } else {
        this.#opts.onMessage(m);
      }
    });
    w.on('error', (err) => {
      if (this.#worker === w) lastError = err;
    });
    w.on('exit', (code) => {
      if (this.#worker !== w) return;
      const wasReady = this.#ready;
      this.#worker = null;
      this.#ready = false;
      if (this.#stopped) {
        this.#rejectWaiters(new ThreadCrashedError(`${this.#opts.name} was closed`));
        return;
      }
      const why = reported ?? lastError;
      const message = `${this.#opts.name} exited with code ${code}${why !== undefined ? `: ${errorMessage(why)}` : ''}`;
      const error = this.#opts.crashError?.(message, why) ?? new ThreadCrashedError(message, { cause: why });
      this.#rejectWaiters(reported ?? error);
      const replacing = this.#scheduleReplacement();
      this.#opts.onExit({ code, error, wasReady, replacing });
    });
    return ready;
  }

  #scheduleReplacement(): boolean {
    const replace = this.#opts.replace;
    if (!replace || !replace.when()) return false;
    const steps = replace.backoffMs;
    const delay = steps[Math.min(this.#consecutiveCrashes, steps.length - 1)] ?? 0;
    this.#consecutiveCrashes++;
    const respawn = (): void => {
      if (this.#stopped || this.#worker || !replace.when()) return;
      // A replacement that cannot start ends in its own exit: the next backoff step.
      this.start().catch(() => {});
    };
    if (delay === 0) respawn();
    else setTimeout(respawn, delay);
    return true;
  }

  #rejectWaiters(err: unknown): void {
    for (const r of this.#waiters.splice(0)) r.reject(err);
  }
}
