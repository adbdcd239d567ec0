import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import { feedbackAdminCommand } from '../../../src/cli/commands/admin-models.js';
import { actor, parseDuration } from '../../../src/cli/common.js';
import { splitByRecency, type FeedbackExample } from '../../../src/feedback/dataset.js';
import { createFeedbackMetrics, recordDrift } from '../../../src/feedback/metrics.js';
import { CalibrationMonitor } from '../../../src/feedback/monitor.js';
import { feedbackSettingsFromEnv } from '../../../src/feedback/service.js';
import { feedbackStatsMsg } from '../../../src/feedback/stats.js';
import { ConfigError, UsageError } from '../../../src/errors.js';

function light(version: string, confidence: number, label: 0 | 1) {
  return { outcome: { ok: label === 1, served_by: 'lightweight' as const }, decision: { model_version: version, confidence, use_lightweight: true } };
}

describe('feedback metrics', () => {
  it('exports the monitor per version at scrape time, and forgets versions the monitor forgot', async () => {
    const registry = new client.Registry();
    const monitor = new CalibrationMonitor({ window: 10, minSamples: 2, maxVersions: 1 });
    const m = createFeedbackMetrics(registry, monitor, { pendingJoins: () => 7 });
    monitor.setCalibration('a', { alpha: 0.2, qhat: 0.5 });
    monitor.observe(light('a', 0.9, 1));
    const r = monitor.observe(light('a', 0.9, 0)); // coverage 0.5 < 0.8 − 0.05: drift
    expect(r.drift?.drifting).toBe(true);
    recordDrift(m, r.drift!);
    let text = await registry.metrics();
    expect(text).toContain('td_conformal_coverage{version="a"} 0.5');
    expect(text).toContain('td_conformal_coverage_target{version="a"} 0.8');
    expect(text).toContain('td_lightweight_success_rate{version="a"} 0.5');
    expect(Number(/td_calibration_error\{version="a"\} (\S+)/.exec(text)![1])).toBeCloseTo(0.4, 6); // float32 0.9
    expect(text).toContain('td_feedback_window_samples{version="a"} 2');
    expect(text).toContain('td_calibration_drift{version="a"} 1');
    expect(text).toContain('td_calibration_drift_events_total{version="a"} 1');
    expect(text).toContain('td_outcomes_pending_join 7');
    monitor.observe(light('b', 0.9, 1)); // maxVersions 1: a is forgotten
    text = await registry.metrics();
    expect(text).not.toContain('td_conformal_coverage{version="a"}');
    expect(text).toContain('td_feedback_window_samples{version="b"} 1');
    expect(text).not.toContain('td_conformal_coverage{version="b"}'); // no calibration: no coverage
  });
});

describe('feedbackSettingsFromEnv', () => {
  it('has defaults and reads the TD_* variables', () => {
    expect(feedbackSettingsFromEnv({})).toMatchObject({ enabled: true, groupSuffix: '-outcomes', monitor: { window: 2000, epsilon: 0.05, minSamples: 200, label: { qualityThreshold: 0.5 } } });
    expect(
      feedbackSettingsFromEnv({ TD_FEEDBACK: 'off', TD_FEEDBACK_WINDOW: '100', TD_DRIFT_EPSILON: '0.02', TD_DRIFT_MIN_SAMPLES: '50', TD_LABEL_QUALITY_THRESHOLD: '0.7' }),
    ).toMatchObject({ enabled: false, monitor: { window: 100, epsilon: 0.02, minSamples: 50, label: { qualityThreshold: 0.7 } } });
    expect(feedbackSettingsFromEnv({ TD_FEEDBACK_WINDOW: '100' }).monitor.minSamples).toBe(100);
  });

  it('refuses bad values with the variable named', () => {
    expect(() => feedbackSettingsFromEnv({ TD_FEEDBACK_WINDOW: '0' })).toThrow(ConfigError);
    expect(() => feedbackSettingsFromEnv({ TD_FEEDBACK_WINDOW: '1.5' })).toThrow(/TD_FEEDBACK_WINDOW="1.5" is invalid/);
    expect(() => feedbackSettingsFromEnv({ TD_DRIFT_MIN_SAMPLES: '5000', TD_FEEDBACK_WINDOW: '100' })).toThrow(/TD_DRIFT_MIN_SAMPLES/);
    expect(() => feedbackSettingsFromEnv({ TD_DRIFT_EPSILON: 'x' })).toThrow(/TD_DRIFT_EPSILON/);
    expect(() => feedbackSettingsFromEnv({ TD_FEEDBACK: 'maybe' })).toThrow(/TD_FEEDBACK/);
  });
});

describe('feedbackStatsMsg', () => {
  it('maps the snapshot to FeedbackStats, leaving unmeasured values absent', () => {
    const monitor = new CalibrationMonitor({ window: 10, minSamples: 1 });
    monitor.setCalibration('a', { alpha: 0.1, qhat: 0.5 });
    monitor.observe(light('a', 0.9, 1));
    monitor.observe({ outcome: { ok: true }, decision: { model_version: 'b', confidence: 0.2, use_lightweight: false } });
    const msg = feedbackStatsMsg({ ...monitor.snapshot(), consumer: null });
    expect(msg).toMatchObject({ window: 10, epsilon: 0.05, min_samples: 1, outcomes_stored: 0, consumer_joined: false });
    const [b, a] = msg.versions as Record<string, unknown>[];
    expect(a).toMatchObject({ version: 'a', calibrated: true, alpha: 0.1, coverage: 1, lightweight_success_rate: 1, drifting: false, outcomes: 1, labeled: 1 });
    expect(b).toMatchObject({ version: 'b', calibrated: false, alpha: 0, outcomes: 1, labeled: 0 });
    expect('coverage' in b! || 'calibration_error' in b! || 'lightweight_success_rate' in b!).toBe(false);
  });
});

describe('CLI helpers', () => {
  it('parses durations', () => {
    expect(parseDuration('window', '7d')).toBe(7 * 86_400_000);
    expect(parseDuration('window', '90s')).toBe(90_000);
    expect(parseDuration('window', '1.5h')).toBe(5_400_000);
    expect(() => parseDuration('window', '7')).toThrow(UsageError);
    expect(() => parseDuration('window', '0d')).toThrow(/longer than 0/);
    expect(() => parseDuration('window', '-1d')).toThrow(/duration like 7d/);
  });

  it('finds admin models/rollback among options with values', () => {
    expect(feedbackAdminCommand(['models'])).toBe('models');
    expect(feedbackAdminCommand(['--json', 'models', '--schema', 'x'])).toBe('models');
    expect(feedbackAdminCommand(['--addr', 'models:1', 'stats'], { addr: { type: 'string' } })).toBeUndefined();
    expect(feedbackAdminCommand(['--', 'models'])).toBeUndefined();
    expect(feedbackAdminCommand(['--addr', 'h:1', 'rollback', 'v1'])).toBe('rollback');
    expect(feedbackAdminCommand(['stats', 'models'])).toBeUndefined();
    expect(feedbackAdminCommand([])).toBeUndefined();
  });

  it('says who acts: option, then environment, then the user name', () => {
    expect(actor('carol', { TD_PROMOTED_BY: 'dave' })).toBe('carol');
    expect(actor(undefined, { TD_PROMOTED_BY: 'dave' })).toBe('dave');
    expect(actor(undefined, {}).length).toBeGreaterThan(0);
    expect(() => actor('a\nb', {})).toThrow(UsageError);
  });
});

describe('splitByRecency', () => {
  const ex = (rid: string, cid: string, t: number): FeedbackExample => ({
    request_id: rid, candidate_id: cid, features: new Float32Array(5), label: 1, confidence: 0.5, model_version: 'v', received_at: new Date(t),
  });

  it('holds out the most recent requests, whole', () => {
    const all = [ex('r1', 'a', 1), ex('r2', 'a', 2), ex('r1', 'b', 9), ex('r3', 'a', 3), ex('r4', 'a', 4), ex('r4', 'b', 5)];
    // Requests by latest outcome: r2 (2), r3 (3), r4 (5), r1 (9). 40 % of 4 → 2 held out: r4, r1.
    const s = splitByRecency(all, 0.4);
    expect(s.holdout.map((e) => `${e.request_id}/${e.candidate_id}`).sort()).toEqual(['r1/a', 'r1/b', 'r4/a', 'r4/b']);
    expect(s.train.map((e) => e.request_id).sort()).toEqual(['r2', 'r3']);
  });

  it('refuses splits that leave nothing to train on', () => {
    expect(() => splitByRecency([ex('r1', 'a', 1)], 0.5)).toThrow(/too few requests/);
    expect(() => splitByRecency([], 1)).toThrow(/holdout must be in/);
  });
});
