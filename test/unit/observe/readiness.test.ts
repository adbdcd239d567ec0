import { describe, expect, it } from 'vitest';
import { serviceReadiness } from '../../../src/observe/readiness.js';

const log = (underPressure: boolean) => ({ backlog: () => 42, maxBuffered: 50, underPressure });

describe('serviceReadiness', () => {
  it('is ready only when every part is', () => {
    expect(serviceReadiness({ processor: { status: () => ({ joined: true }) }, engineLoaded: true, log: log(false), draining: false, startup: {} })).toEqual({
      ready: true,
      checks: { consumer: true, engine: true, decisionLog: true },
    });
  });

  it('says what is missing', () => {
    const r = serviceReadiness({ processor: undefined, engineLoaded: false, log: undefined, draining: true, startup: { postgres: 'waiting for Postgres' } });
    expect(r.ready).toBe(false);
    expect(r.checks).toEqual({ consumer: 'not started', engine: 'model not loaded', decisionLog: 'not started', draining: 'draining', postgres: 'waiting for Postgres' });
    const full = serviceReadiness({ processor: { status: () => ({ joined: false }) }, engineLoaded: true, log: log(true), draining: false, startup: undefined });
    expect(full.checks.consumer).toBe('not (yet) a member of the consumer group');
    expect(full.checks.decisionLog).toBe('full: backlog 42 of at most 50 rows');
  });
});
