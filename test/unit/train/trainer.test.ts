import { describe, expect, it } from 'vitest';
import { parseModel } from '../../../src/engine/model.js';
import { Router } from '../../../src/engine/router.js';
import { DatasetBuilder, parseDatasetText, type Dataset } from '../../../src/train/data.js';
import { coverageStats, simulateRouting } from '../../../src/train/calibrate.js';
import { trainingReport } from '../../../src/train/evaluate.js';
import { fitLogistic, predictLogistic } from '../../../src/train/logistic.js';
import { auc } from '../../../src/train/metrics.js';
import { generateFeatureSet, generateTraffic } from '../../../src/train/synthetic.js';
import { engineScores, trainModel } from '../../../src/train/trainer.js';
import { fitNormalisation, makePart } from '../../../src/train/data.js';

function featureSet(kind: 'interactions' | 'rings' | 'sequence', n: number, seed: number, map?: (s: Record<string, unknown>) => Record<string, unknown>): Dataset {
  const lines: string[] = [];
  for (const s of generateFeatureSet(kind, n, seed)) lines.push(JSON.stringify(map ? map(s as unknown as Record<string, unknown>) : s));
  return parseDatasetText(lines.join('\n'));
}

const all = (ds: Dataset) => Int32Array.from({ length: ds.n }, (_, i) => i);

describe('trainModel', () => {
  // One training run on a non-linear set it has no special knowledge of, checked several ways.
  const train = featureSet('interactions', 4000, 101);
  const fresh = featureSet('interactions', 20000, 202);
  const res = trainModel(train, { seed: 7, calFraction: 0.4, valFraction: 0.15, testFraction: 0 });
  const scores = engineScores(res.model, fresh, all(fresh));

  it('with defaults, clearly beats logistic regression on fresh data', () => {
    const norm = fitNormalisation(train, all(train));
    const tp = makePart(train, all(train), norm);
    const fp = makePart(fresh, all(fresh), norm);
    const lr = fitLogistic(tp.normRows, tp.label, tp.n, train.D);
    const lrScores = new Float64Array(fp.n);
    predictLogistic(lr, fp.normRows, fp.n, fresh.D, lrScores);
    const a = auc(scores, fresh.label);
    const b = auc(lrScores, fresh.label);
    expect(a).toBeGreaterThan(0.88);
    expect(a - b).toBeGreaterThan(0.15);
  });

  it('its conformal calibration holds out of sample (coverage near 1 − α on 20 000 fresh points)', () => {
    expect(res.calibration.n).toBe(1600);
    const cov = coverageStats(scores, fresh.label, res.calibration.qhat).coverage;
    // Split conformal: E[coverage] ∈ [0.9, 0.9 + 1/(n+1)]; the calibration draw moves it by ~0.0075 (1 sd).
    expect(cov).toBeGreaterThan(0.875);
    expect(cov).toBeLessThan(0.925);
  });

  it('writes a file the engine parses, with calibration and thresholds in the metadata', () => {
    const m = parseModel(res.bytes);
    expect(m.calibration).toEqual({ alpha: 0.1, qhat: res.calibration.qhat, n: 1600 });
    expect(m.thresholds).toEqual({ confidence: res.threshold.confidence, maxUncertainty: 1 });
    expect(m.metadata.format).toBe('tiny-dancer/fastgrnn');
    expect(m.features).toEqual(['f0', 'f1', 'f2', 'f3', 'f4', 'f5']);
    expect(m.version).toMatch(/^fastgrnn-h16-[0-9a-f]{12}$/);
    expect(m.normalised).toBe(true);
  });

  it('is reproducible: the same seed gives the same bytes, another seed other bytes', () => {
    const small = featureSet('rings', 600, 3);
    const opts = { epochs: 4, hidden: 8, seed: 11 };
    const a = trainModel(small, opts).bytes;
    const b = trainModel(small, opts).bytes;
    const c = trainModel(small, { ...opts, seed: 12 }).bytes;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });

  it('compresses: IHT to the exact sparsity, low rank, INT8, and reports each step', () => {
    const small = featureSet('interactions', 1500, 5);
    const r = trainModel(small, { hidden: 16, rankW: 3, sparsity: 0.75, quantize: true, epochs: 6, ihtEpochs: 3, seed: 1 });
    expect(r.variants.map((v) => v.name)).toEqual(['float dense', 'float 75% sparse', 'int8 75% sparse']);
    expect(r.phases.map((p) => p.phase)).toEqual(['dense', 'iht', 'retrain']);
    const w1 = r.model.tensors.find((t) => t.name === 'W1')!;
    const w2 = r.model.tensors.find((t) => t.name === 'W2')!;
    expect(w1).toMatchObject({ dtype: 'I8', shape: [16, 3] });
    expect(w2).toMatchObject({ dtype: 'I8', shape: [3, 6] });
    expect(w1.nonZeros).toBeLessThanOrEqual(48 - Math.ceil(0.75 * 48));
    expect(w2.nonZeros).toBeLessThanOrEqual(18 - Math.ceil(0.75 * 18));
    expect(r.model.tensors.find((t) => t.name === 'fc_w')!.dtype).toBe('I8');
    const rep = trainingReport(r);
    expect(rep.compression.map((c) => c.name)).toEqual(r.variants.map((v) => v.name));
    expect(rep.compression[2]!.dtypes).toBe('I8');
    expect(rep.compression[1]!.aucDropPoints).not.toBeNull();
    // INT8 costs almost nothing on top of the sparse float model.
    expect(Math.abs(rep.compression[2]!.auc! - rep.compression[1]!.auc!)).toBeLessThan(0.01);
  });

  it('trains sequences through U (BPTT) and beats a linear model on the step mean', () => {
    const seq = featureSet('sequence', 3000, 8);
    const r = trainModel(seq, { seed: 3, epochs: 25 });
    expect(r.model.tensors.find((t) => t.name === 'U')!.nonZeros).toBeGreaterThan(0);
    const rep = trainingReport(r);
    const model = rep.scorers.find((s) => s.name === 'float dense')!;
    const lr = rep.scorers.find((s) => s.name === 'logistic regression')!;
    expect(model.auc! - lr.auc!).toBeGreaterThan(0.05);
  });

  it('distils: with soft labels carrying the signal and noisy hard labels, the soft target is what it learns', () => {
    // Hard labels are coin flips; the teacher's probability is the truth.
    let k = 0;
    const noisy = (s: Record<string, unknown>) => ({ ...s, label: (k++ * 7919) % 2, soft_label: s.p_true });
    const ds = featureSet('interactions', 3000, 21, noisy);
    const test = featureSet('interactions', 5000, 22);
    const withTeacher = trainModel(ds, { seed: 2, distillWeight: 1, epochs: 20 });
    const without = trainModel(ds, { seed: 2, distillWeight: 0, epochs: 20 });
    expect(withTeacher.notes.some((n) => n.startsWith('distillation: 1650 of 1650'))).toBe(true);
    const a = auc(engineScores(withTeacher.model, test, all(test)), test.label);
    const b = auc(engineScores(without.model, test, all(test)), test.label);
    expect(a).toBeGreaterThan(0.85);
    expect(b).toBeLessThan(0.65);
  });

  it('the Router serves exactly the decisions the calibration simulated', () => {
    const b = new DatasetBuilder();
    const reqs = [...generateTraffic({ requests: 400, seed: 31, dim: 24 })];
    reqs.forEach((r, i) => b.add(r, i + 1));
    const ds = b.build();
    const r = trainModel(ds, { seed: 5, epochs: 15, hidden: 12 });
    const model = parseModel(r.bytes);
    let clock = 0;
    const router = new Router({ model, now: () => clock });
    const th = router.thresholds;
    expect(th).toEqual({ confidence: r.threshold.confidence, maxUncertainty: r.threshold.maxUncertainty });
    let checked = 0, light = 0;
    for (const req of reqs.slice(0, 80)) {
      clock = req.now;
      const resp = router.route(req);
      const p = Float64Array.from(resp.decisions, (d) => d.confidence);
      const sim = simulateRouting(p, model.calibration!.qhat, th.confidence, th.maxUncertainty);
      resp.decisions.forEach((d, i) => {
        expect(d.use_lightweight).toBe(sim[i] === 1);
        checked++;
        if (d.use_lightweight) light++;
      });
    }
    expect(checked).toBeGreaterThan(500);
    expect(light).toBeGreaterThan(checked * 0.3);
  });

  it('refuses data it cannot learn from', () => {
    const one = parseDatasetText(Array.from({ length: 50 }, () => '{"features":[1,2],"label":1}').join('\n'));
    expect(() => trainModel(one)).toThrow(/only label 1/);
    expect(() => trainModel(featureSet('rings', 8, 1))).toThrow(/too little data/);
    expect(() => trainModel(featureSet('rings', 100, 1), { sparsity: 1 })).toThrow(/--sparsity/);
  });
});
