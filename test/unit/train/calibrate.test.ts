import { describe, expect, it } from 'vitest';
import { chooseThreshold, coverageStats, maxBadCount, routingOutcome, simulateRouting } from '../../../src/train/calibrate.js';
import { predictionSet, SET_LIGHT } from '../../../src/engine/conformal.js';
import { Rng } from '../../../src/train/rng.js';

function binomCdf(k: number, n: number, p: number): number {
  let s = 0;
  let c = 1; // C(n, j)
  for (let j = 0; j <= k; j++) {
    s += c * p ** j * (1 - p) ** (n - j);
    c = (c * (n - j)) / (j + 1);
  }
  return s;
}

function sample(n: number, seed: number): { s: Float64Array; y: Float64Array } {
  const rng = new Rng(seed);
  const s = new Float64Array(n), y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const p = rng.beta(4, 1.2); // mostly confident-lightweight scores, like a router
    s[i] = Math.fround(p);
    y[i] = rng.next() < p ? 1 : 0;
  }
  return { s, y };
}

describe('quality-loss bound', () => {
  it('maxBadCount is the largest k with P(Bin(n, eps) <= k) <= delta', () => {
    for (const [n, eps, delta] of [[50, 0.1, 0.1], [200, 0.02, 0.05], [30, 0.3, 0.5], [10, 0.01, 0.1]] as const) {
      const k = maxBadCount(n, eps, delta);
      if (k >= 0) expect(binomCdf(k, n, eps)).toBeLessThanOrEqual(delta + 1e-12);
      expect(binomCdf(k + 1, n, eps)).toBeGreaterThan(delta);
    }
    expect(maxBadCount(10, 0.01, 0.1)).toBe(-1); // 10 points cannot vouch for a 1 % loss
    // Large n stays finite (log-space): about n·eps minus a margin.
    const k = maxBadCount(100_000, 0.02, 0.1);
    expect(k).toBeGreaterThan(1900);
    expect(k).toBeLessThan(2000);
  });
});

describe('threshold calibration against the exact serving rule', () => {
  const { s, y } = sample(5000, 1);
  const qhat = 0.3;

  it('max quality loss: the lowest eligible threshold whose bad count passes the bound', () => {
    const c = chooseThreshold(s, y, qhat, { maxQualityLoss: 0.05, delta: 0.1 });
    expect(c.infeasible).toBe(false);
    expect(c.maxUncertainty).toBe(1);
    const routed = simulateRouting(s, qhat, c.confidence, c.maxUncertainty);
    let light = 0, bad = 0;
    for (let i = 0; i < s.length; i++) if (routed[i]) {
      light++;
      if (y[i] === 0) bad++;
    }
    expect(light / s.length).toBeCloseTo(c.calibrationShare, 12);
    expect(bad / s.length).toBeCloseTo(c.calibrationLoss, 12);
    expect(bad).toBeLessThanOrEqual(c.maxBad!);
    // The next lower score the rule would route lightweight breaks the bound.
    const lower = Array.from(s).filter((p) => p < c.confidence && predictionSet(p, qhat) === SET_LIGHT).sort((a, b) => b - a)[0]!;
    const out = routingOutcome(s, y, qhat, lower, 1);
    expect(Math.round(out.loss * s.length)).toBeGreaterThan(c.maxBad!);
    // Everything routed has the conformal set {lightweight}.
    for (let i = 0; i < s.length; i++) if (routed[i]) expect(predictionSet(s[i]!, qhat)).toBe(SET_LIGHT);
  });

  it('target share: the highest threshold that routes at least the share', () => {
    const c = chooseThreshold(s, y, qhat, { targetShare: 0.4 });
    expect(c.calibrationShare).toBeGreaterThanOrEqual(0.4);
    const fewer = routingOutcome(s, y, qhat, Math.fround(c.confidence + 1e-6), 1);
    expect(fewer.share).toBeLessThan(0.4);
  });

  it('a fixed max_uncertainty is honoured in the simulation', () => {
    const c = chooseThreshold(s, y, qhat, { maxQualityLoss: 0.2 }, 0.1);
    expect(c.maxUncertainty).toBe(0.1);
    // uncertainty of a {lightweight} set is (1 − p)/(1 − q̂) ≤ 0.1 ⇔ p ≥ 1 − 0.1·0.7 = 0.93.
    const routed = simulateRouting(s, qhat, c.confidence, 0.1);
    for (let i = 0; i < s.length; i++) if (routed[i]) expect(s[i]).toBeGreaterThanOrEqual(0.93 - 1e-6);
  });

  it('says so when no threshold meets the budget', () => {
    const c = chooseThreshold(Float64Array.of(0.99, 0.98), Float64Array.of(0, 0), 0.3, { maxQualityLoss: 0.01 });
    expect(c.infeasible).toBe(true);
    expect(c.confidence).toBe(1);
  });

  it('coverage counts labels inside the conformal set', () => {
    const cov = coverageStats(Float64Array.of(0.95, 0.95, 0.1, 0.5), Float64Array.of(1, 0, 0, 1), 0.2);
    // sets: {light}, {light}, {heavy}, empty → covered: yes, no, yes, no
    expect(cov.coverage).toBe(0.5);
    expect(cov.sets).toEqual({ lightweight: 0.5, heavyweight: 0.25, both: 0, empty: 0.25 });
  });
});
