import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BACKOFF, backoffDelay, sleep } from '../../../src/store/backoff.js';

describe('backoffDelay', () => {
  const opts = { initialMs: 100, maxMs: 5_000, factor: 2, jitter: 0.5 };

  it('grows exponentially from initialMs when the jitter draws 0', () => {
    expect([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a, opts, () => 0))).toEqual([100, 200, 400, 800, 1600, 3200]);
  });

  it('is capped at maxMs', () => {
    expect(backoffDelay(6, opts, () => 0)).toBe(5_000);
    expect(backoffDelay(50, opts, () => 0)).toBe(5_000);
  });

  it('jitter takes up to its share off the delay', () => {
    // random → 1 removes the whole jitter share: 400 · (1 − 0.5).
    expect(backoffDelay(2, opts, () => 0.999999)).toBe(200);
    expect(backoffDelay(2, opts, () => 0.5)).toBe(300);
    expect(backoffDelay(2, { ...opts, jitter: 0 }, () => 0.9)).toBe(400);
    expect(backoffDelay(2, { ...opts, jitter: 1 }, () => 0.75)).toBe(100);
  });

  it('spreads retries: many draws at one attempt are not all equal', () => {
    const draws = new Set(Array.from({ length: 50 }, () => backoffDelay(3, opts)));
    expect(draws.size).toBeGreaterThan(10);
  });

  it('stays finite and within [base·(1−jitter), min(max, base)] for any attempt and draw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -5, max: 100_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const d = backoffDelay(attempt, opts, () => r);
          const base = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.max(0, attempt));
          return Number.isFinite(d) && d >= Math.floor(base * (1 - opts.jitter)) && d <= base;
        },
      ),
    );
  });

  it('uses the documented defaults', () => {
    expect(backoffDelay(0, {}, () => 0)).toBe(DEFAULT_BACKOFF.initialMs);
    expect(backoffDelay(100, {}, () => 0)).toBe(DEFAULT_BACKOFF.maxMs);
  });
});

describe('sleep', () => {
  it('waits about the given time', async () => {
    const t0 = performance.now();
    await sleep(60);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
  });

  it('returns at once when aborted', async () => {
    const ac = new AbortController();
    const t0 = performance.now();
    const p = sleep(10_000, ac.signal);
    setTimeout(() => ac.abort(), 20);
    await p;
    expect(performance.now() - t0).toBeLessThan(2_000);
    await sleep(10_000, ac.signal); // already aborted: immediate
    expect(performance.now() - t0).toBeLessThan(2_000);
  });
});
