import { describe, expect, it } from 'vitest';
import {
  GrnnWork, batchLossGrad, bceWithLogit, initParams, paramEntries, sigmoid, zeroParams,
  type GrnnShape, type SeqView,
} from '../../../src/train/grnn.js';
import { Rng } from '../../../src/train/rng.js';
import { toModelParams } from '../../../src/train/trainer.js';
import { encodeModel, forward, parseModel } from '../../../src/engine/model.js';

function randomData(rng: Rng, D: number, n: number, maxT: number): { view: SeqView; target: Float64Array } {
  const steps = new Int32Array(n);
  const start = new Int32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    steps[i] = 1 + rng.int(maxT);
    start[i] = total * D;
    total += steps[i]!;
  }
  const x = new Float64Array(total * D);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal();
  const target = new Float64Array(n);
  for (let i = 0; i < n; i++) target[i] = i % 3 === 0 ? rng.next() : rng.int(2); // hard and soft targets
  return { view: { x, start, steps }, target };
}

/** Relative error of analytic vs central finite-difference gradients over every parameter. */
function gradCheck(shape: GrnnShape, seed: number): { maxRel: number; checked: number } {
  const rng = new Rng(seed);
  const p = initParams(shape, rng, { recurrent: true, outputBias: 0.3 });
  // Perturb biases and scalars away from their symmetric init so every path is exercised.
  for (const [, t] of paramEntries(p)) for (let i = 0; i < t.length; i++) t[i] = t[i]! + 0.3 * rng.normal();
  const { view, target } = randomData(rng, shape.inputDim, 7, 4);
  const work = new GrnnWork(shape, 4);
  const g = zeroParams(shape);
  batchLossGrad(p, work, view, target, null, 0, 7, g);
  const h = 1e-6;
  let maxRel = 0;
  let checked = 0;
  for (const [name, t] of paramEntries(p)) {
    const gt = g[name]!;
    for (let i = 0; i < t.length; i++) {
      const old = t[i]!;
      t[i] = old + h;
      const lp = batchLossGrad(p, work, view, target, null, 0, 7, null);
      t[i] = old - h;
      const lm = batchLossGrad(p, work, view, target, null, 0, 7, null);
      t[i] = old;
      const num = (lp - lm) / (2 * h);
      const rel = Math.abs(num - gt[i]!) / Math.max(1e-6, Math.abs(num) + Math.abs(gt[i]!));
      maxRel = Math.max(maxRel, rel);
      checked++;
    }
  }
  return { maxRel, checked };
}

describe('FastGRNN training math', () => {
  it('analytic BPTT gradients match finite differences (full W and U)', () => {
    const r = gradCheck({ inputDim: 4, hiddenDim: 5, rankW: 0, rankU: 0 }, 1);
    expect(r.checked).toBe(4 * 5 + 5 * 5 + 5 + 5 + 1 + 1 + 5 + 1);
    expect(r.maxRel).toBeLessThan(1e-5);
  });

  it('analytic BPTT gradients match finite differences (low-rank W = W1·W2, U = U1·U2)', () => {
    const r = gradCheck({ inputDim: 6, hiddenDim: 5, rankW: 2, rankU: 3 }, 2);
    expect(r.checked).toBe(5 * 2 + 2 * 6 + 5 * 3 + 3 * 5 + 5 + 5 + 1 + 1 + 5 + 1);
    expect(r.maxRel).toBeLessThan(1e-5);
  });

  it('the forward pass is the docs/contracts.md §3 cell', () => {
    const shape = { inputDim: 2, hiddenDim: 2, rankW: 0, rankU: 0 };
    const p = zeroParams(shape);
    p.W!.set([0.5, -1, 2, 0.25]);
    p.U!.set([0.1, 0.2, -0.3, 0.4]);
    p.b_z.set([0.1, -0.2]);
    p.b_h.set([0.3, 0]);
    p.zeta[0] = 0.7;
    p.nu[0] = -1.5;
    p.fc_w.set([1.5, -2]);
    p.fc_b[0] = 0.2;
    const xs = [[1, 2], [-0.5, 0.25]];
    // Straightforward reference of the §3 equations.
    let h = [0, 0];
    for (const x of xs) {
      const a = [0, 1].map((i) => p.W![i * 2]! * x[0]! + p.W![i * 2 + 1]! * x[1]! + p.U![i * 2]! * h[0]! + p.U![i * 2 + 1]! * h[1]!);
      const z = a.map((ai, i) => sigmoid(ai + p.b_z[i]!));
      const c = a.map((ai, i) => Math.tanh(ai + p.b_h[i]!));
      h = [0, 1].map((i) => (sigmoid(0.7) * (1 - z[i]!) + sigmoid(-1.5)) * c[i]! + z[i]! * h[i]!);
    }
    const expected = 1.5 * h[0]! - 2 * h[1]! + 0.2;
    const work = new GrnnWork(shape, 2);
    work.prepare(p);
    const got = work.forward(p, Float64Array.from(xs.flat()), 0, 2);
    expect(got).toBeCloseTo(expected, 12);
  });

  it('agrees with the engine on the written file (normalisation folded in, full and low-rank, sequences)', () => {
    for (const shape of [{ inputDim: 4, hiddenDim: 6, rankW: 0, rankU: 0 }, { inputDim: 5, hiddenDim: 7, rankW: 2, rankU: 3 }]) {
      const rng = new Rng(shape.hiddenDim);
      const p = initParams(shape, rng, { recurrent: true, outputBias: -0.2 });
      for (const [, t] of paramEntries(p)) for (let i = 0; i < t.length; i++) t[i] = Math.fround(t[i]! + 0.2 * rng.normal());
      const mean = Float64Array.from({ length: shape.inputDim }, () => Math.fround(rng.normal()));
      const std = Float64Array.from({ length: shape.inputDim }, () => Math.fround(0.5 + rng.next()));
      const model = parseModel(encodeModel(toModelParams(p, { mean, std }, Array.from({ length: shape.inputDim }, (_, j) => `x${j}`), 't')));
      const work = new GrnnWork(shape, 3);
      work.prepare(p);
      for (let k = 0; k < 20; k++) {
        const T = 1 + (k % 3);
        const raw = Float64Array.from({ length: T * shape.inputDim }, () => Math.fround(3 * rng.normal()));
        const norm = raw.map((v, i) => (v - mean[i % shape.inputDim]!) / std[i % shape.inputDim]!);
        expect(forward(model, raw, T)).toBeCloseTo(sigmoid(work.forward(p, norm, 0, T)), 6);
      }
    }
  });

  it('BCE with logits is stable at extreme logits', () => {
    expect(bceWithLogit(800, 1)).toBe(0);
    expect(bceWithLogit(-800, 0)).toBe(0);
    expect(bceWithLogit(800, 0)).toBeCloseTo(800, 9);
    expect(bceWithLogit(0, 0.5)).toBeCloseTo(Math.LN2, 12);
  });
});
