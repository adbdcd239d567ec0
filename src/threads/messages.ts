// What every worker thread of the service says about its own life, whatever else its contract
// holds (engine/pool/messages.ts, stream/send/messages.ts): one start report, first.
import type { ThreadError } from './error.js';

/** The thread is ready for work; `ready` messages may carry more (the pool's model version). */
export interface ThreadReady {
  type: 'ready';
}

/** The thread could not start; it ends right after posting this. */
export interface ThreadStartFailed {
  type: 'start-failed';
  error: ThreadError;
}

/** Asks a thread to finish what it holds and end; it answers by exiting. */
export interface CloseThread {
  type: 'close';
}
