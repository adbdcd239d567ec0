// Jittered exponential backoff. The jitter matters more than the curve: when Postgres comes back,
// every instance (and every in-flight batch within one) would otherwise retry in the same
// millisecond and knock it over again.

export interface BackoffOptions {
  /** Delay of the first retry, before jitter. */
  initialMs: number;
  /** No delay exceeds this. */
  maxMs: number;
  /** Growth per attempt. */
  factor: number;
  /**
   * Share of the delay that is random, 0..1: the delay is drawn uniformly from
   * [base · (1 − jitter), base], so 1 is "full jitter" and 0 is none.
   */
  jitter: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialMs: 100,
  maxMs: 5_000,
  factor: 2,
  jitter: 0.5,
});

/**
 * The delay before retry number `attempt` (0 = the first retry). Pure: `random` is injected so
 * tests can pin it; it must return values in [0, 1).
 */
export function backoffDelay(attempt: number, options: Partial<BackoffOptions> = {}, random: () => number = Math.random): number {
  const { initialMs, maxMs, factor, jitter } = { ...DEFAULT_BACKOFF, ...options };
  const n = Math.max(0, Math.floor(attempt));
  // Cap the exponent first so a long outage (attempt in the thousands) cannot overflow to Infinity.
  const base = Math.min(maxMs, initialMs * Math.pow(factor, Math.min(n, 64)));
  const j = Math.min(1, Math.max(0, jitter));
  return Math.max(0, Math.round(base * (1 - j * random())));
}

/** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
