import { describe, expect, it } from 'vitest';
import { InvalidInputError, ModelError } from '../../../src/errors.js';
import { FEATURE_NAMES } from '../../../src/engine/features.js';
import { encodeModel, parseModel, type ModelParams } from '../../../src/engine/model.js';
import { Router } from '../../../src/engine/router.js';
import { validateRequest } from '../../../src/engine/validate.js';

/**
 * A model whose score is σ(k·(similarity − 0.5)) to within a tiny error: one hidden unit
 * with z ≈ 0 (b_z = −30) and c = tanh(a) ≈ a for small a, scaled up by fc_w.
 * Concretely h ≈ (σ(ζ)+σ(ν))·tanh(0.01·sim), score = σ(fc·h + b).
 */
function simModel(extra: Partial<ModelParams> = {}): ModelParams {
  const H = 1;
  const gain = 0.01;
  const hScale = 1 / (1 + Math.exp(-2)) + 1 / (1 + Math.exp(4)); // σ(2) + σ(−4)
  const k = 10;
  return {
    inputDim: 5, hiddenDim: H, features: FEATURE_NAMES, version: 'sim-1',
    W: [gain, 0, 0, 0, 0], U: [0], bz: [-30], bh: [0], zeta: 2, nu: -4,
    fcW: [k / (gain * hScale)], fcB: -k * 0.5, ...extra,
  };
}

const routerFor = (p: Partial<ModelParams> = {}, opts = {}) => new Router({ model: parseModel(encodeModel(simModel(p))), now: () => 1_700_000_000, ...opts });

function request(sims: number[], extra: Record<string, unknown>[] = []) {
  return {
    request_id: 'req-1',
    query_embedding: [1, 0],
    candidates: sims.map((s, i) => ({ id: `c${i}`, embedding: [s, Math.sqrt(Math.max(0, 1 - s * s))], metadata: { i: String(i) }, ...(extra[i] ?? {}) })),
  };
}

describe('Router', () => {
  it('loads the default model when given nothing', () => {
    // models/default.safetensors is replaced by the training job: assert only what must hold.
    const r = new Router();
    expect(r.modelVersion).toBe(r.model.version);
    expect(r.thresholds).toEqual({
      confidence: r.model.thresholds?.confidence ?? 0.85,
      maxUncertainty: r.model.thresholds?.maxUncertainty ?? 0.15,
    });
    const res = r.route(request([1, 0.2]));
    expect(res.decisions).toHaveLength(2);
    expect(res.decisions.map((d) => d.model_version)).toEqual([r.modelVersion, r.modelVersion]);
  });

  it('orders decisions by confidence descending, ties by input order, and ranks them', () => {
    const r = routerFor();
    const res = r.route(request([0.1, 0.9, 0.5, 0.9, -0.3, 0.5]));
    expect(res.decisions.map((d) => d.candidate_id)).toEqual(['c1', 'c3', 'c2', 'c5', 'c0', 'c4']);
    expect(res.decisions.map((d) => d.rank)).toEqual([0, 1, 2, 3, 4, 5]);
    for (let i = 1; i < res.decisions.length; i++) expect(res.decisions[i - 1]!.confidence).toBeGreaterThanOrEqual(res.decisions[i]!.confidence);
    expect(res.candidates_processed).toBe(6);
    expect(res.decisions[0]!.confidence).toBeCloseTo(1 / (1 + Math.exp(-4)), 3);
  });

  it('ranks large requests like a comparator sort: confidence descending, ties by input order', () => {
    const r = routerFor();
    for (const n of [17, 64, 300, 1000]) {
      // few distinct similarities, so many ties, in a scrambled order
      const sims = Array.from({ length: n }, (_, i) => Math.round(Math.cos(i * 7.3) * 8) / 8);
      const res = r.route(request(sims));
      const conf = new Map(res.decisions.map((d) => [d.candidate_id, d.confidence]));
      const want = Array.from({ length: n }, (_, i) => i)
        .sort((a, b) => conf.get(`c${b}`)! - conf.get(`c${a}`)! || a - b)
        .map((i) => `c${i}`);
      expect(res.decisions.map((d) => d.candidate_id)).toEqual(want);
    }
  });

  it('gives every request its own decisions when requests of different sizes alternate (reused buffers)', () => {
    const r = routerFor();
    const sizes = [3, 7, 3, 1, 7, 12, 3];
    const responses = sizes.map((n, k) => {
      const req = request(Array.from({ length: n }, (_, i) => Math.cos(i + k)));
      req.request_id = `req-${k}`;
      for (const c of req.candidates) c.id = `${c.id}-of-${k}`;
      return { n, k, res: r.route(req) };
    });
    for (const { n, k, res } of responses) {
      const fresh = routerFor().route({ ...request(Array.from({ length: n }, (_, i) => Math.cos(i + k))), request_id: `req-${k}` });
      expect(res.decisions).toHaveLength(n);
      expect(res.decisions.map((d) => d.candidate_id)).toEqual(fresh.decisions.map((d) => `${d.candidate_id}-of-${k}`));
      expect(res.decisions.map((d) => d.confidence)).toEqual(fresh.decisions.map((d) => d.confidence));
      expect(res.decisions.every((d) => d.request_id === `req-${k}`)).toBe(true);
    }
  });

  it('fills every decision field and carries candidate metadata through untouched', () => {
    const r = routerFor();
    const res = r.route(request([0.9, 0.2], [{ metadata: { model: 'small', cost: '0.1' } }]));
    const d = res.decisions.find((x) => x.candidate_id === 'c0')!;
    expect(d).toMatchObject({ request_id: 'req-1', model_version: 'sim-1', metadata: { model: 'small', cost: '0.1' } });
    expect(typeof d.use_lightweight).toBe('boolean');
    expect(d.uncertainty).toBeGreaterThanOrEqual(0);
    expect(d.uncertainty).toBeLessThanOrEqual(1);
    expect(res.inference_time_us).toBeGreaterThan(0);
    expect(res.feature_time_us).toBeGreaterThanOrEqual(0);
    expect(res.feature_time_us).toBeLessThanOrEqual(res.inference_time_us);
    expect(d.inference_time_us).toBe(res.inference_time_us);
  });

  it('reasons without calibration (heuristic, q̂ = 0.5) at default thresholds', () => {
    // score = σ(10(s − 0.5)): s=1 → 0.993 (u 0.013), s=0.7 → 0.881 (u 0.24), s=0.6 → 0.73, s=0.2 → 0.047
    const res = routerFor().route(request([1, 0.7, 0.6, 0.2]));
    const by = Object.fromEntries(res.decisions.map((d) => [d.candidate_id, d]));
    expect(by.c0).toMatchObject({ use_lightweight: true, reason: 'model' });
    expect(by.c1).toMatchObject({ use_lightweight: false, reason: 'uncertain' });
    expect(by.c2).toMatchObject({ use_lightweight: false, reason: 'below_threshold' });
    expect(by.c3).toMatchObject({ use_lightweight: false, reason: 'model' });
    expect(by.c1!.uncertainty).toBeCloseTo(1 - Math.abs(2 * by.c1!.confidence - 1), 6);
  });

  it('uses the model\'s calibration q̂ for sets and uncertainty', () => {
    // q̂ = 0.3: {light} iff p ≥ 0.7; uncertainty (1 − p)/0.7
    const r = routerFor({ calibration: { alpha: 0.1, qhat: 0.3, n: 100 } });
    const res = r.route(request([1, 0.65]));
    const d0 = res.decisions[0]!;
    expect(d0.uncertainty).toBeCloseTo((1 - d0.confidence) / 0.7, 6);
    expect(d0).toMatchObject({ use_lightweight: true, reason: 'model' });
    // s = 0.65 → p ≈ 0.818 ≥ 0.7 → {light} but below 0.85 threshold
    expect(res.decisions[1]).toMatchObject({ use_lightweight: false, reason: 'below_threshold' });
  });

  it('thresholds: defaults ← model metadata ← constructor options ← setThresholds', () => {
    expect(routerFor().thresholds).toEqual({ confidence: 0.85, maxUncertainty: 0.15 });
    const fromModel = routerFor({ thresholds: { confidence: 0.6, maxUncertainty: 0.9 } });
    expect(fromModel.thresholds).toEqual({ confidence: 0.6, maxUncertainty: 0.9 });
    expect(fromModel.route(request([0.7])).decisions[0]).toMatchObject({ use_lightweight: true, reason: 'model' });
    const opt = routerFor({ thresholds: { confidence: 0.6, maxUncertainty: 0.9 } }, { confidenceThreshold: 0.99 });
    expect(opt.thresholds).toEqual({ confidence: 0.99, maxUncertainty: 0.9 });
    expect(opt.route(request([0.7])).decisions[0]).toMatchObject({ use_lightweight: false, reason: 'below_threshold' });
    opt.setThresholds({ maxUncertainty: 0.01 });
    expect(opt.thresholds).toEqual({ confidence: 0.99, maxUncertainty: 0.01 });
    expect(() => opt.setThresholds({ confidence: 2 })).toThrow(RangeError);
    expect(() => routerFor({}, { maxUncertainty: -1 })).toThrow(RangeError);
  });

  it('swapModel: new version and thresholds apply; an unroutable model is refused and the old one stays', () => {
    const r = routerFor();
    r.swapModel(parseModel(encodeModel(simModel({ version: 'sim-2', thresholds: { confidence: 0.5 } }))));
    expect(r.modelVersion).toBe('sim-2');
    expect(r.thresholds.confidence).toBe(0.5);
    expect(r.route(request([0.9])).decisions[0]!.model_version).toBe('sim-2');
    const other = parseModel(encodeModel({ ...simModel({ version: 'other' }), features: ['a', 'b', 'c', 'd', 'e'] }));
    expect(() => r.swapModel(other)).toThrow(ModelError);
    expect(r.modelVersion).toBe('sim-2');
    expect(() => new Router({ model: other })).toThrow(/model expects features \[a, b, c, d, e\]/);
  });

  it('route validates input; routeValidated takes a pre-validated request', () => {
    const r = routerFor();
    expect(() => r.route({ request_id: 'x', query_embedding: [1], candidates: [] })).toThrow(InvalidInputError);
    const v = validateRequest(request([0.9, 0.1]));
    expect(r.routeValidated(v).decisions.map((d) => d.candidate_id)).toEqual(['c0', 'c1']);
  });

  it('uses the clock and feature config (recency changes scores only through the model)', () => {
    // A model that only looks at recency: score = σ(10(recency − 0.5))
    const recencyOnly = simModel({ W: [0, 0.01, 0, 0, 0], version: 'rec' });
    const now = 1_700_000_000;
    const r = new Router({ model: parseModel(encodeModel(recencyOnly)), now: () => now, features: { recencyDecay: 0.01 } });
    const res = r.route(request([0.5, 0.5], [{ created_at: now }, { created_at: now - 1000 }]));
    expect(res.decisions[0]!.candidate_id).toBe('c0');
    expect(res.decisions[0]!.confidence).toBeGreaterThan(0.99);
    expect(res.decisions[1]!.confidence).toBeLessThan(0.01);
  });

  it('reuses scratch across requests of different sizes without mixing them up', () => {
    const r = routerFor();
    const big = r.route(request(Array.from({ length: 50 }, (_, i) => i / 50)));
    expect(big.decisions[0]!.candidate_id).toBe('c49');
    const small = r.route(request([0.1, 0.3]));
    expect(small.decisions.map((d) => d.candidate_id)).toEqual(['c1', 'c0']);
    expect(small.decisions).toHaveLength(2);
  });

  it('a missing model file is a ModelError', () => {
    expect(() => new Router({ modelPath: '/nope.safetensors' })).toThrow(ModelError);
  });
});
