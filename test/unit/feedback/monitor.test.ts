import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CalibrationMonitor, conformalCovers, expectedCalibrationError, type JoinedOutcome } from '../../../src/feedback/monitor.js';

/** A lightweight-served outcome whose label is `label`, decided with `confidence` by `version`. */
function light(version: string, confidence: number, label: 0 | 1): JoinedOutcome {
  return { outcome: { ok: label === 1, served_by: 'lightweight' }, decision: { model_version: version, confidence, use_lightweight: true, reason: 'model' } };
}

describe('conformalCovers', () => {
  it('puts y in the set when 1 − p̂(y|x) ≤ q̂', () => {
    expect(conformalCovers(0.8, 1, 0.3)).toBe(true); // 0.2 ≤ 0.3
    expect(conformalCovers(0.8, 0, 0.3)).toBe(false); // 0.8 > 0.3
    expect(conformalCovers(0.3, 0, 0.3)).toBe(true); // 0.3 ≤ 0.3, boundary included
    expect(conformalCovers(0.5, 0, 0.6)).toBe(true); // wide q̂: both labels in the set
    expect(conformalCovers(0.5, 1, 0.6)).toBe(true);
    expect(conformalCovers(0.5, 1, 0.4)).toBe(false); // narrow q̂: empty set
  });
});

describe('expectedCalibrationError', () => {
  it('is 0 for perfectly calibrated bins and |gap| for a constant miscalibration', () => {
    // bin [0.2, 0.3): p = 0.25 four times, one positive → mean y 0.25
    expect(expectedCalibrationError([0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0])).toBeCloseTo(0, 12);
    expect(expectedCalibrationError([0.9, 0.9], [0, 0])).toBeCloseTo(0.9, 6);
    expect(expectedCalibrationError([], [])).toBe(0);
  });
});

describe('CalibrationMonitor', () => {
  it('rolling coverage, ECE and lightweight success equal a brute-force computation over the last N', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ p: fc.double({ min: 0, max: 1, noNaN: true }), y: fc.constantFrom<0 | 1>(0, 1) }), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 64 }),
        fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        (items, window, qhat) => {
          const m = new CalibrationMonitor({ window, minSamples: 1 });
          m.setCalibration('v', { alpha: 0.1, qhat });
          for (const it of items) m.observe(light('v', it.p, it.y));
          const last = items.slice(-window);
          const p32 = last.map((x) => Math.fround(x.p));
          const s = m.snapshotVersion('v')!;
          expect(s.labeled).toBe(last.length);
          expect(s.outcomes).toBe(items.length);
          const covered = last.filter((x, i) => conformalCovers(p32[i]!, x.y, qhat)).length;
          expect(s.coverage).toBeCloseTo(covered / last.length, 9);
          expect(s.ece).toBeCloseTo(expectedCalibrationError(p32, last.map((x) => x.y)), 9);
          expect(s.lightweightSuccessRate).toBeCloseTo(last.filter((x) => x.y === 1).length / last.length, 12);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('counts only labelled, model-scored outcomes for coverage; lightweight success from lightweight-served ones', () => {
    const m = new CalibrationMonitor({ window: 10, minSamples: 1 });
    m.setCalibration('v', { alpha: 0.1, qhat: 0.5 });
    // heavyweight without quality: no label
    expect(m.observe({ outcome: { ok: true, served_by: 'heavyweight' }, decision: { model_version: 'v', confidence: 0.1, use_lightweight: false } }).label).toBeUndefined();
    // breaker fallback: labelled, but no model score → not in the coverage window
    const r = m.observe({ outcome: { ok: false, served_by: 'heavyweight', quality: 0.9 }, decision: { model_version: 'v', confidence: 0, use_lightweight: false, reason: 'breaker_open' } });
    expect(r.label).toBe(1);
    expect(r.covered).toBeUndefined();
    // heavyweight with shadow quality: labelled (quality 0.2 < 0.5 → 0); confidence 0.3 → 1 − 0.7 = 0.3 ≤ 0.5 covered
    expect(m.observe({ outcome: { ok: true, served_by: 'heavyweight', quality: 0.2 }, decision: { model_version: 'v', confidence: 0.3, use_lightweight: false } }).covered).toBe(true);
    // lightweight, failed: label 0 at confidence 0.9 → 1 − 0.1 = 0.9 > 0.5 not covered
    expect(m.observe(light('v', 0.9, 0)).covered).toBe(false);
    const s = m.snapshotVersion('v')!;
    expect(s).toMatchObject({ outcomes: 4, labeled: 2, coverage: 0.5, lightweightSamples: 1, lightweightSuccessRate: 0 });
  });

  it('has no coverage without calibration, and re-scores the window when the calibration arrives', () => {
    const m = new CalibrationMonitor({ window: 10, minSamples: 1 });
    m.observe(light('v', 0.9, 1));
    m.observe(light('v', 0.9, 0));
    expect(m.snapshotVersion('v')).toMatchObject({ coverage: null, targetCoverage: null, labeled: 2 });
    m.setCalibration('v', { alpha: 0.2, qhat: 0.5 });
    expect(m.snapshotVersion('v')).toMatchObject({ coverage: 0.5, targetCoverage: 0.8, labeled: 2 });
  });

  it('fires drift once below 1 − α − ε after the minimum sample count, and recovers with hysteresis', () => {
    const m = new CalibrationMonitor({ window: 100, minSamples: 20, epsilon: 0.05 });
    m.setCalibration('v', { alpha: 0.1, qhat: 0.5 }); // target 0.9, drift below 0.85, recover at ≥ 0.875
    const hit = () => m.observe(light('v', 0.9, 1)); // covered
    const miss = () => m.observe(light('v', 0.9, 0)); // not covered
    // 10 misses first: coverage 0 but fewer than 20 samples → no verdict
    for (let i = 0; i < 10; i++) expect(miss().drift).toBeUndefined();
    const events = [];
    for (let i = 0; i < 10; i++) {
      const d = hit().drift;
      if (d) events.push(d);
    }
    // 20 samples, coverage 0.5 < 0.85: exactly one event, on the 20th sample
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ version: 'v', drifting: true, coverage: 0.5, target: 0.9, samples: 20 });
    expect(events[0]!.threshold).toBeCloseTo(0.85, 12);
    expect(m.snapshotVersion('v')).toMatchObject({ drifting: true, driftEvents: 1 });
    // Hits until recovery: 10 misses in the window of up to 100; coverage ≥ 0.875 needs n ≥ 80.
    let recoveredAt = -1;
    for (let i = 0; i < 200 && recoveredAt < 0; i++) {
      const d = hit().drift;
      if (d) {
        expect(d.drifting).toBe(false);
        recoveredAt = m.snapshotVersion('v')!.labeled;
        expect(d.coverage).toBeGreaterThanOrEqual(0.875);
      }
    }
    expect(recoveredAt).toBe(80); // 70/80 = 0.875 (0.86 at 50 samples is above 0.85 but below the hysteresis line)
    expect(m.snapshotVersion('v')).toMatchObject({ drifting: false, driftEvents: 1 });
    // A second episode counts again.
    let second = 0;
    for (let i = 0; i < 100; i++) if (miss().drift?.drifting) second++;
    expect(second).toBe(1);
    expect(m.snapshotVersion('v')!.driftEvents).toBe(2);
  });

  it('does not drift a version with healthy coverage', () => {
    const m = new CalibrationMonitor({ window: 50, minSamples: 10 });
    m.setCalibration('v', { alpha: 0.1, qhat: 0.5 });
    for (let i = 0; i < 200; i++) expect(m.observe(light('v', 0.9, i % 20 === 0 ? 0 : 1)).drift).toBeUndefined();
    expect(m.snapshotVersion('v')!.coverage).toBeCloseTo(0.96, 2);
  });

  it('keeps versions apart and forgets the least recently observed beyond maxVersions', () => {
    const m = new CalibrationMonitor({ window: 5, minSamples: 1, maxVersions: 2 });
    m.observe(light('a', 0.9, 1));
    m.observe(light('b', 0.9, 0));
    m.observe(light('a', 0.9, 1));
    m.observe(light('c', 0.9, 1)); // evicts b (a was observed more recently)
    expect(m.snapshot().versions.map((v) => v.version)).toEqual(['c', 'a']);
    expect(m.snapshotVersion('a')!.lightweightSuccessRate).toBe(1);
    expect(m.snapshotVersion('b')).toBeUndefined();
  });

  it('refuses nonsense options and calibrations', () => {
    expect(() => new CalibrationMonitor({ window: 0 })).toThrow(/window/);
    expect(() => new CalibrationMonitor({ window: 10, minSamples: 11 })).toThrow(/minSamples/);
    expect(() => new CalibrationMonitor({ epsilon: 1 })).toThrow(/epsilon/);
    expect(() => new CalibrationMonitor().setCalibration('v', { alpha: 0, qhat: 0.5 })).toThrow(/alpha/);
  });
});
