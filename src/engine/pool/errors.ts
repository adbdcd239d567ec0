// Errors of the worker pool. All are retriable: the request itself was fine, the pool could not
// take it or lost it, so the caller (the stream's retry loop) may send it again.
import { TinyDancerError } from '../../errors.js';
import { ThreadCrashedError } from '../../threads/error.js';

/** A worker thread died (exit, uncaught error) while holding this task; it has been replaced. */
export class WorkerCrashedError extends ThreadCrashedError {}

/** The pool's bounded queue is full: back off and retry rather than queue without bound. */
export class PoolSaturatedError extends TinyDancerError {
  constructor(message: string) {
    super(message, { retriable: true });
  }
}

/** The pool is closing or closed; the task was not (or not completely) run. */
export class PoolClosedError extends TinyDancerError {
  constructor(message: string) {
    super(message, { retriable: true });
  }
}
