// Retrying a delivery step (a produce, a log write, a transaction) with the project's one backoff
// policy (../store/backoff.ts). The producer and the log retry internally already; this loop
// covers what outlasts their budgets (a broker restart, a long database outage).
import { backoffDelay, sleep, type BackoffOptions } from '../store/backoff.js';

/** The stream's retry curve: 200 ms doubling to 10 s, half of it jitter. */
export const STREAM_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 200, maxMs: 10_000, factor: 2, jitter: 0.5 });

/** Resolves/rejects with `p`, or rejects with the signal's reason as soon as it aborts. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

export interface RetryOptions {
  /** Stops waiting for an attempt in flight when the signal aborts (default true). */
  abandonInFlight?: boolean;
  /** Told of every failed attempt before the decision to retry. */
  onError?: (err: unknown, attempt: number, delayMs: number | undefined) => void;
  /** False once retrying should stop after a few attempts (the processor is shutting down). */
  persistent?: () => boolean;
}

/**
 * Runs `fn` until it succeeds, the signal aborts (rejects with its reason), or an error is not
 * retriable (`retriable: false`, as kafkajs and the store mark them).
 */
export async function retrying<T>(fn: () => Promise<T>, signal: AbortSignal, opts: RetryOptions = {}): Promise<T> {
  const abandon = opts.abandonInFlight ?? true;
  for (let attempt = 0; ; attempt++) {
    try {
      return await (abandon ? abortable(fn(), signal) : fn());
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const retriable = (err as { retriable?: boolean } | undefined)?.retriable !== false;
      const giveUp = !retriable || (opts.persistent?.() === false && attempt >= 2);
      const delay = giveUp ? undefined : backoffDelay(attempt, STREAM_BACKOFF);
      opts.onError?.(err, attempt, delay);
      if (delay === undefined) throw err;
      await sleep(delay, signal);
      if (signal.aborted) throw signal.reason;
    }
  }
}
