// Patience at start-up: Postgres or the broker not answering yet is the normal state of a
// cluster that is being (re)started, not a reason to exit. Each dependency is tried again with
// the shared backoff until it answers or one deadline for the whole start-up passes
// (TD_STARTUP_TIMEOUT_MS; 0 waits forever). Meanwhile readiness says what is awaited and why,
// and the log gets one line per window of attempts, not one per attempt, so a long outage does
// not bury everything else. Errors a retry cannot mend (a refused password, a missing
// permission, a bad certificate) are not waited on: they end start-up at once (docs/contracts.md §2).
import { ControlError } from './control/target.js';
import { TinyDancerError, errorMessage, oneLine } from './errors.js';
import type { Logger } from './observe/logger.js';
import { backoffDelay, sleep, type BackoffOptions } from './store/backoff.js';

/** Start-up gave up: a dependency did not answer within the start-up timeout. Exit status 1. */
export class StartupTimeoutError extends TinyDancerError {}

export interface StartupPatienceOptions {
  /** Whole start-up budget in ms; 0 means no limit. */
  timeoutMs: number;
  logger: Logger;
  /** Aborted when the service is stopped during start-up. */
  signal: AbortSignal;
  /** At most one "still waiting" line per dependency per window. Default 15 s. */
  logWindowMs?: number;
  backoff?: Partial<BackoffOptions>;
}

interface Waiting {
  what: string;
  since: number;
  attempts: number;
  error: string;
}

export class StartupPatience {
  readonly #o: StartupPatienceOptions;
  readonly #deadline: number;
  readonly #waiting = new Map<string, Waiting>();

  constructor(options: StartupPatienceOptions) {
    this.#o = options;
    this.#deadline = options.timeoutMs === 0 ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
  }

  /** Readiness checks of the dependencies being waited for (empty when none is). */
  checks(): Record<string, string> {
    const out: Record<string, string> = {};
    const now = Date.now();
    for (const [key, w] of this.#waiting) {
      const left = Number.isFinite(this.#deadline) ? `, giving up in ${Math.max(0, Math.round((this.#deadline - now) / 1000))} s` : '';
      out[key] = `waiting for ${w.what} (${w.attempts} attempts in ${Math.round((now - w.since) / 1000)} s${left}): ${w.error}`;
    }
    return out;
  }

  /**
   * Runs `attempt` until it succeeds. A failure `retriable` says yes to is tried again after a
   * backoff; any other failure is thrown as it is. Throws StartupTimeoutError at the deadline
   * (also in the middle of a slow attempt) and ControlError('aborted') when stopped.
   */
  async until<T>(key: string, what: string, attempt: () => Promise<T>, retriable: (err: unknown) => boolean): Promise<T> {
    const { logger, signal } = this.#o;
    const windowMs = this.#o.logWindowMs ?? 15_000;
    const since = Date.now();
    let nextLineAt = 0;
    let inWindow = 0;
    for (let n = 0; ; n++) {
      if (signal.aborted) throw new ControlError('aborted', 'stopped during start-up');
      let result: { ok: true; value: T } | { ok: false; err: unknown };
      try {
        result = { ok: true, value: await this.#bounded(attempt(), key, what) };
      } catch (err) {
        if (err instanceof StartupTimeoutError || err instanceof ControlError) throw err;
        result = { ok: false, err };
      }
      if (result.ok) {
        this.#waiting.delete(key);
        if (n > 0) logger.info(`${what} answered; start-up continues`, { attempts: n + 1, waitedMs: Date.now() - since });
        return result.value;
      }
      if (!retriable(result.err)) throw result.err;
      const error = oneLine(errorMessage(result.err), 300);
      this.#waiting.set(key, { what, since, attempts: n + 1, error });
      inWindow++;
      const now = Date.now();
      if (now >= this.#deadline) throw this.#timeout(what, error);
      if (now >= nextLineAt) {
        logger.warn(`${what} is not answering; start-up waits for it`, {
          error,
          attempts: inWindow,
          waitedMs: now - since,
          ...(Number.isFinite(this.#deadline) ? { giveUpInMs: this.#deadline - now } : { giveUpInMs: 'never' }),
        });
        nextLineAt = now + windowMs;
        inWindow = 0;
      }
      const delay = Math.min(backoffDelay(n, { initialMs: 250, maxMs: 5_000, ...this.#o.backoff }), this.#deadline - now);
      await sleep(delay, signal);
    }
  }

  #timeout(what: string, error: string): StartupTimeoutError {
    return new StartupTimeoutError(
      `${what} did not answer within TD_STARTUP_TIMEOUT_MS=${this.#o.timeoutMs} ms (the start-up timeout); last error: ${error}`,
    );
  }

  /** The attempt, cut short by the deadline or a stop (a slow connect must not outlive either). */
  #bounded<T>(p: Promise<T>, key: string, what: string): Promise<T> {
    const { signal } = this.#o;
    const left = this.#deadline - Date.now();
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        cleanup();
        reject(new ControlError('aborted', 'stopped during start-up'));
      };
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      if (Number.isFinite(left)) {
        timer = setTimeout(() => {
          cleanup();
          const w = this.#waiting.get(key);
          reject(this.#timeout(what, w?.error ?? 'no answer yet'));
        }, Math.max(0, left));
      }
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          cleanup();
          resolve(v);
        },
        (err: unknown) => {
          cleanup();
          reject(err);
        },
      );
    });
  }
}
