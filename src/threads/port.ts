// The worker thread's side of the contract in ./messages.ts: its workerData, typed posting, and
// the start report.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { toThreadError } from './error.js';
import type { ThreadStartFailed } from './messages.js';

export interface ThreadPort<Init, To, From> {
  init: Init;
  port: MessagePort;
  post(msg: From, transfer?: readonly ArrayBuffer[]): void;
  onMessage(handler: (msg: To) => void): void;
  /** Reports why the thread cannot start; the caller then ends the thread. */
  startFailed(err: unknown, retriableUnlessSaid: boolean): void;
}

/** `what` names the module in the error thrown when it is not loaded as a worker thread. */
export function threadPort<Init, To, From>(what: string): ThreadPort<Init, To, From> {
  const port = parentPort;
  if (!port) throw new Error(`${what} must run as a worker thread`);
  return {
    init: workerData as Init,
    port,
    post: (msg, transfer) => port.postMessage(msg, transfer as ArrayBuffer[] | undefined),
    onMessage: (handler) => port.on('message', handler),
    startFailed: (err, retriableUnlessSaid) => {
      const msg: ThreadStartFailed = { type: 'start-failed', error: toThreadError(err, retriableUnlessSaid) };
      port.postMessage(msg);
    },
  };
}
