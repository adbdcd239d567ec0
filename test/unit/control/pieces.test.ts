// Pure pieces of the control plane: token check, status mapping, latency window, env parsing,
// message conversion.
import { Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ConfigError, InvalidInputError, ModelError, TinyDancerError } from '../../../src/errors.js';
import { Secret } from '../../../src/config.js';
import { AdminAuth } from '../../../src/control/auth.js';
import { configMsg, ratesBetween, reloadMsg, statsMsg } from '../../../src/control/convert.js';
import { grpcStatusOf, statusName } from '../../../src/control/errors.js';
import { LatencyWindow } from '../../../src/control/latency.js';
import { ControlError } from '../../../src/control/target.js';
import { controlEnv, DEFAULT_MAX_MESSAGE_BYTES } from '../../../src/control/tls.js';

function md(...values: string[]): Metadata {
  const m = new Metadata();
  for (const v of values) m.add('authorization', v);
  return m;
}

describe('AdminAuth', () => {
  const auth = new AdminAuth('s3cret-token-value');

  it('accepts exactly the configured bearer token (scheme case-insensitive)', () => {
    expect(auth.check(md('Bearer s3cret-token-value'), 'X')).toEqual({ ok: true });
    expect(auth.check(md('bearer s3cret-token-value'), 'X')).toEqual({ ok: true });
    expect(new AdminAuth(new Secret('s3cret-token-value')).check(md('Bearer s3cret-token-value'), 'X').ok).toBe(true);
  });

  it('refuses missing, malformed, duplicated, longer, shorter and wrong tokens as UNAUTHENTICATED', () => {
    for (const m of [md(), md('s3cret-token-value'), md('Basic s3cret-token-value'), md('Bearer'), md('Bearer a b'),
      md('Bearer s3cret-token-value', 'Bearer s3cret-token-value'), md('Bearer s3cret-token-valuex'), md('Bearer s3cret-token-valu'),
      md('Bearer S3CRET-TOKEN-VALUE')]) {
      const d = auth.check(m, 'ReloadModel');
      expect(d.ok).toBe(false);
      if (!d.ok) {
        expect(d.code).toBe(status.UNAUTHENTICATED);
        expect(d.message).toContain('ReloadModel');
        expect(d.message).not.toContain('s3cret');
      }
    }
  });

  it('with no token configured refuses everything with PERMISSION_DENIED, even an empty bearer', () => {
    for (const a of [new AdminAuth(undefined), new AdminAuth('')]) {
      expect(a.configured).toBe(false);
      for (const m of [md(), md('Bearer '), md('Bearer anything')]) {
        const d = a.check(m, 'SetThresholds');
        expect(d.ok).toBe(false);
        if (!d.ok) expect(d.code).toBe(status.PERMISSION_DENIED);
      }
    }
  });
});

describe('grpcStatusOf', () => {
  it('maps kinds, fs errors, input errors and retriable errors precisely', () => {
    expect(grpcStatusOf(new ControlError('not_found', 'x'))).toBe(status.NOT_FOUND);
    expect(grpcStatusOf(new ControlError('failed_precondition', 'x'))).toBe(status.FAILED_PRECONDITION);
    expect(grpcStatusOf(new ControlError('aborted', 'x'))).toBe(status.ABORTED);
    expect(grpcStatusOf(new ModelError('bad'))).toBe(status.INVALID_ARGUMENT);
    expect(grpcStatusOf(new InvalidInputError('bad'))).toBe(status.INVALID_ARGUMENT);
    expect(grpcStatusOf(new ModelError('x', { cause: Object.assign(new Error(), { code: 'ENOENT' }) }))).toBe(status.NOT_FOUND);
    expect(grpcStatusOf(Object.assign(new Error(), { code: 'EISDIR' }))).toBe(status.INVALID_ARGUMENT);
    expect(grpcStatusOf(Object.assign(new Error(), { kind: 'resource_exhausted' }))).toBe(status.RESOURCE_EXHAUSTED);
    expect(grpcStatusOf(new TinyDancerError('pool closing', { retriable: true }))).toBe(status.UNAVAILABLE);
    expect(grpcStatusOf(new Error('boom'))).toBe(status.INTERNAL);
    expect(grpcStatusOf('a string')).toBe(status.INTERNAL);
    expect(statusName(status.UNAUTHENTICATED)).toBe('UNAUTHENTICATED');
  });
});

describe('LatencyWindow', () => {
  it('gives nearest-rank percentiles over the last `capacity` samples', () => {
    const w = new LatencyWindow(100);
    expect(w.summary()).toEqual({ count: 0, p50: 0, p90: 0, p99: 0, max: 0 });
    for (let i = 1; i <= 100; i++) w.record(i);
    expect(w.summary()).toEqual({ count: 100, p50: 50, p90: 90, p99: 99, max: 100 });
    // 100 more samples push the first 100 out: constant memory, recent data only.
    for (let i = 1001; i <= 1100; i++) w.record(i);
    expect(w.summary()).toMatchObject({ count: 100, p50: 1050, max: 1100 });
    w.record(Number.NaN);
    w.record(-1);
    expect(w.size).toBe(100);
  });
});

describe('controlEnv', () => {
  it('defaults: plaintext, 32 MiB', () => {
    expect(controlEnv({})).toEqual({ tls: undefined, maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES });
  });

  it('TLS and mutual TLS from files', () => {
    expect(controlEnv({ TD_GRPC_TLS_CERT: '/c.pem', TD_GRPC_TLS_KEY: '/k.pem' }).tls).toEqual({ certFile: '/c.pem', keyFile: '/k.pem' });
    expect(controlEnv({ TD_GRPC_TLS_CERT: '/c.pem', TD_GRPC_TLS_KEY: '/k.pem', TD_GRPC_TLS_CA: '/ca.pem' }).tls).toEqual({
      certFile: '/c.pem', keyFile: '/k.pem', caFile: '/ca.pem',
    });
    expect(controlEnv({ TD_GRPC_MAX_MESSAGE_BYTES: '1048576' }).maxMessageBytes).toBe(1048576);
  });

  it('refuses incomplete or invalid settings with a message naming the variable', () => {
    expect(() => controlEnv({ TD_GRPC_TLS_CERT: '/c.pem' })).toThrow(ConfigError);
    expect(() => controlEnv({ TD_GRPC_TLS_KEY: '/k.pem' })).toThrow(/TD_GRPC_TLS_CERT and TD_GRPC_TLS_KEY/);
    expect(() => controlEnv({ TD_GRPC_TLS_CA: '/ca.pem' })).toThrow(/TD_GRPC_TLS_CA needs/);
    expect(() => controlEnv({ TD_GRPC_MAX_MESSAGE_BYTES: '12x' })).toThrow(/TD_GRPC_MAX_MESSAGE_BYTES="12x"/);
    expect(() => controlEnv({ TD_GRPC_MAX_MESSAGE_BYTES: '10' })).toThrow(/\[1024, 1073741824\]/);
  });
});

describe('convert', () => {
  const totals = { requests: 100, decisions: 300, lightweight: 120, heavyweight: 180, failed: 0, rejected: 4, reasons: { model: 300 } };

  it('rates over an interval', () => {
    const r = ratesBetween({ ...totals, requests: 50, decisions: 150, lightweight: 30, rejected: 0 }, totals, 5);
    expect(r).toEqual({ windowSeconds: 5, requestsPerSecond: 10, decisionsPerSecond: 30, lightweightShare: 90 / 150, rejectedPerSecond: 0.8 });
    expect(ratesBetween(undefined, totals, 0).requestsPerSecond).toBe(0);
  });

  it('stats: absent sections stay absent, bad numbers become 0, lag only when known', () => {
    const msg = statsMsg(
      {
        startedAt: 1000,
        model: { version: 'v', loadedAt: 1000 },
        thresholds: { confidence: 0.8, maxUncertainty: 0.2 },
        totals,
        engineLatency: { count: 1, p50: Number.NaN, p90: 1, p99: 1, max: 1 },
        breaker: { state: 'half_open', trips: -3, fallbacks: 0 },
        stream: { connected: false, assignedPartitions: 0, consumed: 0, produced: 0, dlq: 0, inFlight: 0, pausedPartitions: 0 },
      },
      { mode: 'serve', serviceVersion: '1.0', health: 'SERVING', now: 11_000, rates: ratesBetween(undefined, totals, 10) },
    );
    expect(msg.uptime_seconds).toBe(10);
    expect(msg.lightweight_share).toBeCloseTo(0.4);
    expect((msg.engine_latency as Record<string, number>).p50_us).toBe(0);
    expect((msg.breaker as Record<string, unknown>).state).toBe('BREAKER_STATE_HALF_OPEN');
    expect((msg.breaker as Record<string, unknown>).trips).toBe(0);
    expect(msg).not.toHaveProperty('store');
    expect(msg).not.toHaveProperty('pool');
    expect(msg.stream).not.toHaveProperty('consumer_lag');
    expect((msg.rates as Record<string, number>).requests_per_second).toBe(10);
  });

  it('config: secret-looking keys and URL passwords are redacted', () => {
    const msg = configMsg(
      { thresholds: { confidence: 1, maxUncertainty: 0 }, settings: { apiKey: 'k', password: 'p', adminToken: null, url: 'postgres://u:pw@h/d', n: 3, nested: { a: 1 } } },
      { mode: 'serve', serviceVersion: '1', modelVersion: 'm' },
    );
    expect(msg.settings).toEqual({ apiKey: '[redacted]', password: '[redacted]', adminToken: '', url: 'postgres://u:***@h/d', n: '3', nested: '{"a":1}' });
  });

  it('reload: a calibrated model says so, an uncalibrated one gets a note', () => {
    const cal = reloadMsg({ model: { version: 'a', loadedAt: 1, calibration: { alpha: 0.1, qhat: 0.3, n: 500 } }, previousVersion: 'z' }, 2);
    expect(cal).toMatchObject({ calibrated: true, previous_version: 'z', notes: [] });
    expect((cal.model as Record<string, unknown>).calibration_n).toBe(500);
    const uncal = reloadMsg({ model: { version: 'a', loadedAt: 1 }, previousVersion: 'z' }, 2);
    expect(uncal.calibrated).toBe(false);
    expect((uncal.notes as string[])[0]).toMatch(/no conformal calibration/);
  });
});
