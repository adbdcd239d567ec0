import { describe, expect, it } from 'vitest';
import { FEATURE_COUNT, FEATURE_NAMES } from '../../../src/engine/features.js';
import { encodeModel, parseModel } from '../../../src/engine/model.js';
import { evaluateModel, scoreRows } from '../../../src/feedback/evaluate.js';

describe('evaluateModel', () => {
  // A one-unit FastGRNN whose score rises with the sum of the features.
  const params = {
    inputDim: FEATURE_COUNT, hiddenDim: 1, features: [...FEATURE_NAMES], version: 'unit-monotone',
    W: [1, 1, 1, 1, 1], U: [0], bz: [-8], bh: [-2.5], zeta: 2, nu: -4, fcW: [6], fcB: 0,
  };
  const x = Float32Array.from([0.95, 0.9, 0.9, 0.95, 1, 0.05, 0.1, 0.1, 0.2, 0, 0.9, 0.8, 0.8, 0.9, 1, 0.1, 0.05, 0, 0.1, 0]);
  const y = Uint8Array.from([1, 0, 1, 0]);

  it('scores rows with the engine and reports NaN coverage for an uncalibrated model', () => {
    const model = parseModel(encodeModel(params));
    const s = scoreRows(model, x, 4);
    expect(s[0]!).toBeGreaterThan(s[1]!);
    const e = evaluateModel(model, x, y, 0.02);
    expect(e).toMatchObject({ version: 'unit-monotone', n: 4, positives: 2, auc: 1, alpha: null, qhat: null, lightweightShare: 0.5 });
    expect(e.coverage).toBeNaN();
  });

  it('measures coverage with the model\'s own q̂', () => {
    const model = parseModel(encodeModel({ ...params, calibration: { alpha: 0.2, qhat: 0.5, n: 100 } }));
    const s = scoreRows(model, x, 4);
    // q̂ = 0.5: every label is in its set exactly when the score is on its side of 0.5.
    const expected = [0, 1, 2, 3].filter((i) => (y[i] === 1 ? s[i]! >= 0.5 : s[i]! <= 0.5)).length / 4;
    expect(evaluateModel(model, x, y, 0.02)).toMatchObject({ alpha: 0.2, qhat: 0.5, coverage: expected });
  });
});
