import { describe, expect, it } from 'vitest';
import { coverageTolerance, describeVerdict, evaluateGates, type EvalMetrics } from '../../../src/feedback/gate.js';

const serving: EvalMetrics = { n: 5000, auc: 0.8, coverage: 0.84, lightweightShare: 0.6 };

describe('promotion gate', () => {
  it('passes a candidate at least as good on every gate', () => {
    const v = evaluateGates({ n: 5000, auc: 0.85, coverage: 0.905, lightweightShare: 0.7 }, serving, 0.1);
    expect(v.passed).toBe(true);
    expect(v.failed).toEqual([]);
    expect(v.gates.map((g) => g.gate)).toEqual(['auc', 'coverage', 'lightweight_share']);
    expect(describeVerdict(v)).toMatch(/^all gates passed/);
  });

  it('equal is good enough (at least as good)', () => {
    expect(evaluateGates({ ...serving, coverage: 0.9 }, serving, 0.1).passed).toBe(true);
  });

  it('names each failing gate', () => {
    const v = evaluateGates({ n: 5000, auc: 0.79, coverage: 0.9, lightweightShare: 0.59 }, serving, 0.1);
    expect(v.passed).toBe(false);
    expect(v.failed).toEqual(['auc', 'lightweight_share']);
    const line = describeVerdict(v);
    expect(line).toContain('auc — AUC 0.7900 vs serving 0.8000');
    expect(line).toContain('lightweight_share');
    expect(line).not.toContain('coverage —');
  });

  it('coverage must be within tolerance of 1 − α on both sides', () => {
    const tol = coverageTolerance(0.1, 5000, 0.02);
    expect(tol).toBe(0.02); // 2·SE = 0.0085 < 0.02
    expect(evaluateGates({ ...serving, auc: 0.9, lightweightShare: 0.9, coverage: 0.879 }, serving, 0.1).failed).toEqual(['coverage']);
    expect(evaluateGates({ ...serving, auc: 0.9, lightweightShare: 0.9, coverage: 0.921 }, serving, 0.1).failed).toEqual(['coverage']);
    expect(evaluateGates({ ...serving, auc: 0.9, lightweightShare: 0.9, coverage: 0.881 }, serving, 0.1).passed).toBe(true);
    expect(evaluateGates({ ...serving, auc: 0.9, lightweightShare: 0.9, coverage: Number.NaN }, serving, 0.1).failed).toEqual(['coverage']);
  });

  it('widens the coverage tolerance to two standard errors on a small slice', () => {
    // n = 100, α = 0.1: SE = 0.03 → tolerance 0.06
    expect(coverageTolerance(0.1, 100, 0.02)).toBeCloseTo(0.06, 12);
    expect(evaluateGates({ n: 100, auc: 0.9, coverage: 0.85, lightweightShare: 0.9 }, serving, 0.1).passed).toBe(true);
    expect(evaluateGates({ n: 100, auc: 0.9, coverage: 0.83, lightweightShare: 0.9 }, serving, 0.1).failed).toEqual(['coverage']);
  });

  it('honours tolerances and works without a serving model', () => {
    expect(evaluateGates({ ...serving, auc: 0.795, coverage: 0.9 }, serving, 0.1, { aucTolerance: 0.01 }).passed).toBe(true);
    expect(evaluateGates({ n: 1000, auc: 0.7, coverage: 0.9, lightweightShare: 0.3 }, undefined, 0.1).passed).toBe(true);
    expect(evaluateGates({ n: 1000, auc: 0.5, coverage: 0.9, lightweightShare: 0.3 }, undefined, 0.1).failed).toEqual(['auc']);
    expect(() => evaluateGates(serving, serving, 1)).toThrow(/alpha/);
  });
});
