import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  HEURISTIC_QHAT, SET_EMPTY, SET_FULL, SET_HEAVY, SET_LIGHT, calibrate, conformalUncertainty, predictionSet,
  setLabels, uncertaintyFromSet,
} from '../../../src/engine/conformal.js';
import { DEFAULT_THRESHOLDS, decide } from '../../../src/engine/decide.js';

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

/** Synthetic task: true P(light | x) = t; the "model" reports a noisy, miscalibrated score. */
function synth(r: () => number, n: number): { scores: number[]; labels: number[] } {
  const scores: number[] = [], labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = r();
    labels.push(r() < t ? 1 : 0);
    const logit = Math.log(t / (1 - t)) * 1.7 + (r() - 0.5) * 1.5;
    scores.push(1 / (1 + Math.exp(-logit)));
  }
  return { scores, labels };
}

describe('calibrate', () => {
  it('q̂ is the ⌈(n+1)(1−α)⌉-th smallest nonconformity', () => {
    // nonconformities: label 1 → 1 − p, label 0 → p
    const scores = [0.9, 0.8, 0.3, 0.6, 0.95, 0.1, 0.7, 0.2, 0.55];
    const labels = [1, 1, 0, 1, 1, 0, 0, 1, 0];
    const s = [0.1, 0.2, 0.3, 0.4, 0.05, 0.1, 0.7, 0.8, 0.55].sort((a, b) => a - b);
    // n = 9, α = 0.2 → k = ⌈10·0.8⌉ = 8
    expect(calibrate(scores, labels, 0.2)).toEqual({ alpha: 0.2, qhat: s[7], n: 9 });
    // α = 0.5 → k = 5
    expect(calibrate(scores, labels, 0.5).qhat).toBe(s[4]);
    // α = 0.05 → k = ⌈9.5⌉ = 10 > n → q̂ = 1 (every set full)
    expect(calibrate(scores, labels, 0.05).qhat).toBe(1);
    // booleans work as labels
    expect(calibrate(scores, labels.map(Boolean), 0.2).qhat).toBe(s[7]);
  });

  it('no floating-point off-by-one: n = 99, α = 0.1 → k = 90 exactly', () => {
    const scores = Array.from({ length: 99 }, (_, i) => (i + 1) / 100);
    const labels = new Array(99).fill(0); // nonconformity = p = (i+1)/100
    expect(calibrate(scores, labels, 0.1).qhat).toBeCloseTo(0.9, 12);
  });

  it('rejects bad input', () => {
    expect(() => calibrate([0.5], [1, 0], 0.1)).toThrow(RangeError);
    expect(() => calibrate([], [], 0.1)).toThrow(RangeError);
    expect(() => calibrate([0.5], [1], 0)).toThrow(RangeError);
    expect(() => calibrate([1.5], [1], 0.1)).toThrow(RangeError);
    expect(() => calibrate([0.5], [2], 0.1)).toThrow(RangeError);
  });

  it.each([0.05, 0.1, 0.2])('empirical coverage ≥ 1 − α on synthetic data (α = %s)', (alpha) => {
    const trials = 20, nCal = 1000, nTest = 4000;
    let totalCovered = 0;
    let worst = 1;
    for (let t = 0; t < trials; t++) {
      const r = rng(1000 + t * 7919 + Math.round(alpha * 1e4));
      const cal = synth(r, nCal);
      const { qhat } = calibrate(cal.scores, cal.labels, alpha);
      const test = synth(r, nTest);
      let covered = 0;
      for (let i = 0; i < nTest; i++) {
        const set = predictionSet(test.scores[i]!, qhat);
        if (set & (test.labels[i] === 1 ? SET_LIGHT : SET_HEAVY)) covered++;
      }
      totalCovered += covered;
      worst = Math.min(worst, covered / nTest);
    }
    const mean = totalCovered / (trials * nTest);
    // Marginal guarantee: E[coverage] ≥ 1 − α. The mean over 80 000 test points has sd ≈ 0.002;
    // a single trial's coverage varies with its calibration draw (sd ≈ 0.01).
    expect(mean).toBeGreaterThanOrEqual(1 - alpha - 0.006);
    expect(worst).toBeGreaterThanOrEqual(1 - alpha - 0.04);
    // and not trivially: sets are not always full
    expect(mean).toBeLessThan(1 - alpha + 0.03);
  });
});

describe('prediction sets and uncertainty', () => {
  it('set membership follows 1 − p̂(y|x) ≤ q̂', () => {
    expect(predictionSet(0.9, 0.2)).toBe(SET_LIGHT);
    expect(predictionSet(0.1, 0.2)).toBe(SET_HEAVY);
    expect(predictionSet(0.5, 0.2)).toBe(SET_EMPTY);
    expect(predictionSet(0.5, 0.7)).toBe(SET_FULL);
    expect(predictionSet(0.8, 0.2)).toBe(SET_LIGHT); // boundary: 1 − 0.8 ≤ 0.2 (inclusive)
    expect(setLabels(SET_FULL)).toEqual(['lightweight', 'heavyweight']);
    expect(setLabels(SET_EMPTY)).toEqual([]);
  });

  it('uncertainty: full/empty 1, singleton p̂(excluded)/(1 − q̂), always in [0, 1]', () => {
    expect(uncertaintyFromSet(0.5, 0.7, SET_FULL)).toBe(1);
    expect(uncertaintyFromSet(0.5, 0.2, SET_EMPTY)).toBe(1);
    expect(uncertaintyFromSet(0.9, 0.2, SET_LIGHT)).toBeCloseTo(0.1 / 0.8, 12);
    expect(uncertaintyFromSet(0.05, 0.2, SET_HEAVY)).toBeCloseTo(0.05 / 0.8, 12);
    expect(uncertaintyFromSet(1, 0.2, SET_LIGHT)).toBe(0);
    fc.assert(fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (p, q) => {
      const { set, uncertainty } = conformalUncertainty(p, q);
      expect(uncertainty).toBeGreaterThanOrEqual(0);
      expect(uncertainty).toBeLessThanOrEqual(1);
      if (set === SET_FULL || set === SET_EMPTY) expect(uncertainty).toBe(1);
    }), { numRuns: 2000 });
  });

  it('without calibration (q̂ = 0.5) it is exactly the heuristic 1 − |2p − 1|, set = {argmax}', () => {
    fc.assert(fc.property(fc.double({ min: 0, max: 1, noNaN: true }), (p) => {
      const { set, uncertainty } = conformalUncertainty(p, HEURISTIC_QHAT);
      expect(uncertainty).toBeCloseTo(1 - Math.abs(2 * p - 1), 12);
      expect(set).toBe(p > 0.5 ? SET_LIGHT : p < 0.5 ? SET_HEAVY : SET_FULL);
    }), { numRuns: 2000 });
  });
});

describe('decide (precedence: {heavy} → model, confidence → below_threshold, set/uncertainty → uncertain)', () => {
  const th = DEFAULT_THRESHOLDS;
  it('defaults are the seed\'s', () => expect(th).toEqual({ confidence: 0.85, maxUncertainty: 0.15 }));
  it.each([
    ['lightweight', 0.95, 0.05, SET_LIGHT, true, 'model'],
    ['exactly at both thresholds', 0.85, 0.15, SET_LIGHT, true, 'model'],
    ['set {heavy}', 0.1, 0.1, SET_HEAVY, false, 'model'],
    ['set {heavy} wins even over a tiny threshold', 0.3, 0.1, SET_HEAVY, false, 'model'],
    ['low confidence', 0.6, 0.8, SET_LIGHT, false, 'below_threshold'],
    ['low confidence and empty set', 0.6, 1, SET_EMPTY, false, 'below_threshold'],
    ['confident but too uncertain', 0.9, 0.2, SET_LIGHT, false, 'uncertain'],
    ['confident but full set', 0.9, 0.1, SET_FULL, false, 'uncertain'],
    ['confident but empty set', 0.9, 0.1, SET_EMPTY, false, 'uncertain'],
  ] as const)('%s', (_n, p, u, set, light, reason) => {
    const thresholds = _n.includes('tiny') ? { confidence: 0.1, maxUncertainty: 0.5 } : th;
    expect(decide(p, u, set, thresholds)).toEqual({ use_lightweight: light, reason });
  });
});
