// Start-up patience: retries what is retriable until it answers, throws the rest at once, gives
// up at the deadline (also in the middle of a slow attempt), stops on abort, reports what it
// waits for as readiness checks, and logs one line per window rather than one per attempt.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ControlError } from '../../src/control/target.js';
import { createLogger } from '../../src/observe/logger.js';
import { StartupPatience, StartupTimeoutError } from '../../src/startup.js';

function logged() {
  const lines: Array<{ level: string; msg: string } & Record<string, unknown>> = [];
  const logger = createLogger({ level: 'info', write: (l) => lines.push(JSON.parse(l)) });
  return { logger, lines };
}

const fast = { initialMs: 5, maxMs: 20, jitter: 0 };
const retriable = (err: unknown) => (err as Error).message.startsWith('down');

describe('StartupPatience', () => {
  it('retries a retriable failure until it answers, says what it waits for meanwhile, and logs once per window', async () => {
    const { logger, lines } = logged();
    const p = new StartupPatience({ timeoutMs: 10_000, logger, signal: new AbortController().signal, logWindowMs: 60_000, backoff: fast });
    let calls = 0;
    let seen: Record<string, string> = {};
    const v = await p.until('postgres', 'Postgres at x', async () => {
      calls++;
      if (calls === 3) seen = p.checks();
      if (calls < 6) throw new Error('down: Connection terminated unexpectedly');
      return 42;
    }, retriable);
    expect(v).toBe(42);
    expect(calls).toBe(6);
    expect(seen.postgres).toMatch(/^waiting for Postgres at x \(2 attempts in \d+ s, giving up in \d+ s\): down: Connection terminated unexpectedly$/);
    expect(p.checks()).toEqual({});
    expect(lines.filter((l) => l.msg === 'Postgres at x is not answering; start-up waits for it')).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'Postgres at x answered; start-up continues')).toHaveLength(1);
  });

  it('throws a failure that is not retriable at once', async () => {
    const { logger } = logged();
    const p = new StartupPatience({ timeoutMs: 10_000, logger, signal: new AbortController().signal, backoff: fast });
    let calls = 0;
    await expect(p.until('kafka', 'the broker', async () => {
      calls++;
      throw new Error('SASL authentication failed');
    }, retriable)).rejects.toThrow('SASL authentication failed');
    expect(calls).toBe(1);
  });

  it('gives up at the deadline with the last error, also in the middle of a slow attempt', async () => {
    const { logger } = logged();
    const p = new StartupPatience({ timeoutMs: 300, logger, signal: new AbortController().signal, backoff: fast });
    let calls = 0;
    const t0 = Date.now();
    const err = await p.until('postgres', 'Postgres at x', async () => {
      calls++;
      if (calls === 1) throw new Error('down: refused');
      return new Promise<never>(() => {}); // hangs
    }, retriable).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StartupTimeoutError);
    expect((err as Error).message).toBe('Postgres at x did not answer within TD_STARTUP_TIMEOUT_MS=300 ms (the start-up timeout); last error: down: refused');
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('0 waits without a deadline; an abort ends the wait', async () => {
    const { logger } = logged();
    const ctl = new AbortController();
    const p = new StartupPatience({ timeoutMs: 0, logger, signal: ctl.signal, backoff: fast });
    setTimeout(() => ctl.abort(), 200);
    const err = await p.until('kafka', 'the broker', async () => {
      throw new Error('down: refused');
    }, retriable).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlError);
    expect((err as ControlError).kind).toBe('aborted');
    expect(p.checks().kafka).toMatch(/^waiting for the broker \(\d+ attempts in \d+ s\): down: refused$/);
  });
});

describe('TD_STARTUP_TIMEOUT_MS', () => {
  it('defaults to 5 minutes, accepts 0 (forever), and names itself when bad', () => {
    expect(loadConfig({}).startupTimeoutMs).toBe(300_000);
    expect(loadConfig({ TD_STARTUP_TIMEOUT_MS: '0' }).startupTimeoutMs).toBe(0);
    expect(() => loadConfig({ TD_STARTUP_TIMEOUT_MS: '-1' })).toThrow(/^TD_STARTUP_TIMEOUT_MS="-1" is invalid: expected a whole number in \[0, 86400000\]$/);
    expect(() => loadConfig({ TD_STARTUP_TIMEOUT_MS: '5m' })).toThrow(/^TD_STARTUP_TIMEOUT_MS="5m" is invalid/);
  });
});
