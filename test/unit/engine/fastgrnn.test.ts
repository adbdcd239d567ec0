import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelError } from '../../../src/errors.js';
import { fastExp, fastSigmoid, fastTanh } from '../../../src/engine/fastgrnn.js';
import { FEATURE_NAMES } from '../../../src/engine/features.js';
import {
  defaultModelPath, encodeModel, forward, loadModelFile, parseModel, quantizeI8, scoreBatch, type ModelParams,
} from '../../../src/engine/model.js';
import { readSafetensors, writeSafetensors, type Tensor } from '../../../src/engine/safetensors.js';

// ---------------------------------------------------------------------------------------------
// A plain, straightforward float64 FastGRNN straight from docs/contracts.md §3, reading the file itself.

type Mat = number[][];

function refForward(bytes: Uint8Array, xs: number[][]): number {
  const { tensors } = readSafetensors(bytes);
  const get = (name: string): number[] => {
    const t = tensors.get(name)!;
    const scale = t.dtype === 'I8' ? (tensors.get(`${name}.scale`)!.data as Float32Array)[0]! : 1;
    return Array.from(t.data as Float32Array | Int8Array, (v) => v * scale);
  };
  const mat = (name: string): Mat => {
    const t = tensors.get(name)!;
    const [r, c] = t.shape as [number, number];
    const v = get(name);
    return Array.from({ length: r }, (_, i) => v.slice(i * c, (i + 1) * c));
  };
  const mul = (A: Mat, B: Mat): Mat => A.map((row) => B[0]!.map((_, j) => row.reduce((s, a, k) => s + a * B[k]![j]!, 0)));
  const mv = (A: Mat, x: number[]) => A.map((row) => row.reduce((s, a, j) => s + a * x[j]!, 0));
  const W = tensors.has('W') ? mat('W') : mul(mat('W1'), mat('W2'));
  const U = tensors.has('U') ? mat('U') : mul(mat('U1'), mat('U2'));
  const bz = get('b_z'), bh = get('b_h'), fcw = get('fc_w');
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const zeta = sig(get('zeta')[0]!), nu = sig(get('nu')[0]!);
  let h = new Array<number>(bz.length).fill(0);
  for (let x of xs) {
    if (tensors.has('norm_mean')) {
      const m = get('norm_mean'), s = get('norm_std');
      x = x.map((v, j) => (v - m[j]!) / s[j]!);
    }
    const wx = mv(W, x), uh = mv(U, h);
    const a = wx.map((v, i) => v + uh[i]!);
    const z = a.map((v, i) => sig(v + bz[i]!));
    const c = a.map((v, i) => Math.tanh(v + bh[i]!));
    h = h.map((hp, i) => (zeta * (1 - z[i]!) + nu) * c[i]! + z[i]! * hp);
  }
  return sig(h.reduce((s, v, i) => s + v * fcw[i]!, 0) + get('fc_b')[0]!);
}

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s / 2 ** 32) * 2 - 1;
  };
}

interface Shape { D: number; H: number; rw?: number; ru?: number; norm?: boolean; quant?: ModelParams['quantize']; scale?: number; biasScale?: number }

function randomParams(seed: number, sh: Shape): ModelParams {
  const r = rng(seed);
  const k = sh.scale ?? 1;
  const v = (n: number, m = k) => Array.from({ length: n }, () => r() * m);
  const { D, H } = sh;
  const p: ModelParams = {
    inputDim: D, hiddenDim: H, version: `rand-${seed}`,
    features: Array.from({ length: D }, (_, i) => `f${i}`),
    bz: v(H, sh.biasScale ?? k), bh: v(H, sh.biasScale ?? k), zeta: r() * 3, nu: r() * 3 - 2, fcW: v(H), fcB: r(),
    quantize: sh.quant ?? [],
  };
  if (sh.rw) { p.W1 = v(H * sh.rw); p.W2 = v(sh.rw * D); p.rankW = sh.rw; } else p.W = v(H * D);
  if (sh.ru) { p.U1 = v(H * sh.ru, k * 0.5); p.U2 = v(sh.ru * H, k * 0.5); p.rankU = sh.ru; } else p.U = v(H * H, k * 0.5);
  if (sh.norm) { p.normMean = v(D, 3); p.normStd = v(D).map((x) => 0.2 + Math.abs(x) * 3); }
  return p;
}

function randomInputs(seed: number, D: number, T: number, mag = 2): number[][] {
  const r = rng(seed ^ 0x9e3779b9);
  return Array.from({ length: T }, () => Array.from({ length: D }, () => r() * mag));
}

const TOL = 2e-5;

describe('activations', () => {
  it('fastExp is within 1e-11 relative of Math.exp on [-700, 700]', () => {
    fc.assert(fc.property(fc.double({ min: -700, max: 700, noNaN: true }), (y) => {
      const e = Math.exp(y);
      expect(Math.abs(fastExp(y) - e) / e).toBeLessThan(1e-11);
    }), { numRuns: 5000 });
    expect(Number.isNaN(fastExp(NaN))).toBe(true);
    expect(Number.isFinite(fastExp(1e9))).toBe(true);
    expect(fastExp(-1e9)).toBeGreaterThanOrEqual(0);
  });

  it('fastSigmoid / fastTanh match the float64 functions within 1e-12 absolute', () => {
    fc.assert(fc.property(fc.double({ min: -60, max: 60, noNaN: true }), (y) => {
      expect(Math.abs(fastSigmoid(y) - 1 / (1 + Math.exp(-y)))).toBeLessThan(1e-12);
      expect(Math.abs(fastTanh(y) - Math.tanh(y))).toBeLessThan(1e-12);
    }), { numRuns: 5000 });
  });
});

describe('FastGRNN cell against a plain float64 implementation', () => {
  const shapes: [string, Shape, number[]][] = [
    ['full D=5 H=8', { D: 5, H: 8 }, [1]],
    ['full D=5 H=16, sequences', { D: 5, H: 16 }, [1, 2, 7]],
    ['low-rank kept factorised (D=16 H=16 r=2)', { D: 16, H: 16, rw: 2, ru: 3 }, [1, 4]],
    ['low-rank materialised (D=5 H=6 r=4)', { D: 5, H: 6, rw: 4, ru: 4 }, [1, 3]],
    ['normalised', { D: 5, H: 10, norm: true }, [1, 3]],
    ['normalised low-rank', { D: 9, H: 12, rw: 2, ru: 2, norm: true }, [1, 5]],
    ['I8 everywhere', { D: 5, H: 8, quant: ['W', 'U', 'fc_w'] }, [1, 4]],
    ['I8 low-rank', { D: 7, H: 12, rw: 3, ru: 2, quant: ['W1', 'W2', 'U1', 'U2', 'fc_w'] }, [1, 3]],
    ['saturating weights', { D: 5, H: 8, scale: 25 }, [1, 3]],
    ['huge biases (two-exp path)', { D: 5, H: 8, biasScale: 400 }, [1, 3]],
  ];

  it.each(shapes)('%s', (_name, shape, lengths) => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(...lengths), fc.constantFrom(0.5, 2, 20), (seed, T, mag) => {
      const bytes = encodeModel(randomParams(seed, shape));
      const model = parseModel(bytes);
      const xs = randomInputs(seed, shape.D, T, mag);
      const x = Float32Array.from(xs.flat());
      const ref = refForward(bytes, xs.map((row) => row.map(Math.fround)));
      const got = forward(model, x, T);
      expect(Math.abs(got - ref)).toBeLessThan(TOL);
      expect(got).toBeGreaterThanOrEqual(0);
      expect(got).toBeLessThanOrEqual(1);
    }), { numRuns: 40 });
  });

  it('pruned models (zero W rows, zero fc_w entries): dead units folded away, same scores', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.boolean(), fc.boolean(), (seed, norm, i8) => {
      const H = 12, D = 5;
      const p = randomParams(seed, { D, H, norm, quant: i8 ? ['W', 'U', 'fc_w'] : [] });
      const W = Array.from(p.W!);
      const fcW = Array.from(p.fcW);
      for (let i = 0; i < H; i++) {
        if (i % 3 === 0) for (let j = 0; j < D; j++) W[i * D + j] = 0; // dead input row
        if (i % 4 === 1) fcW[i] = 0; // dead output
      }
      const bytes = encodeModel({ ...p, W, fcW });
      const model = parseModel(bytes);
      // rows 0,3,6,9 dead; fc 1,5 dead (9 is both) — plus any weight that I8 rounding zeroed
      let live = 0;
      for (let i = 0; i < H; i++) {
        const rowLive = Array.from(model.cell.W!.subarray(i * D, (i + 1) * D)).some((v) => v !== 0);
        if (rowLive && model.cell.fcW[i] !== 0) live++;
      }
      expect(live).toBeLessThanOrEqual(H - 6);
      expect(model.cell.t1Units).toBe(live);
      for (const T of [1, 3]) {
        const xs = randomInputs(seed + T, D, T, 3);
        expect(Math.abs(forward(model, Float64Array.from(xs.flat()), T) - refForward(bytes, xs))).toBeLessThan(1e-9);
      }
    }), { numRuns: 60 });
  });

  it('typical case is far inside the tolerance (~1e-12, not merely < 2e-5)', () => {
    const bytes = encodeModel(randomParams(7, { D: 5, H: 16 }));
    const model = parseModel(bytes);
    let worst = 0;
    for (let s = 0; s < 200; s++) {
      const xs = randomInputs(s, 5, 1 + (s % 4));
      worst = Math.max(worst, Math.abs(forward(model, Float64Array.from(xs.flat()), xs.length) - refForward(bytes, xs)));
    }
    expect(worst).toBeLessThan(1e-10);
  });

  it('scoreBatch equals forward row by row and leaves other rows alone', () => {
    const model = parseModel(encodeModel(randomParams(3, { D: 5, H: 8, rw: 2, ru: 2 })));
    const n = 33;
    const feats = Float32Array.from(randomInputs(11, 5, n).flat());
    const out = new Float32Array(n + 1).fill(-1);
    scoreBatch(model, feats, n, out);
    for (let i = 0; i < n; i++) expect(out[i]).toBeCloseTo(forward(model, feats.subarray(i * 5, i * 5 + 5), 1), 6);
    expect(out[n]).toBe(-1);
  });

  it('low-rank W/U equals the materialised full-rank model', () => {
    const p = randomParams(99, { D: 12, H: 10, rw: 2, ru: 2 });
    const W = Array.from({ length: 10 * 12 }, (_, k) => {
      const i = Math.floor(k / 12), j = k % 12;
      let s = 0;
      for (let r = 0; r < 2; r++) s += Math.fround(p.W1![i * 2 + r]!) * Math.fround(p.W2![r * 12 + j]!);
      return s;
    });
    const U = Array.from({ length: 100 }, (_, k) => {
      const i = Math.floor(k / 10), j = k % 10;
      let s = 0;
      for (let r = 0; r < 2; r++) s += Math.fround(p.U1![i * 2 + r]!) * Math.fround(p.U2![r * 10 + j]!);
      return s;
    });
    const low = parseModel(encodeModel(p));
    const full = parseModel(encodeModel({ ...p, W, U, W1: undefined, W2: undefined, U1: undefined, U2: undefined }));
    expect(low.wKind).toBe('low-rank');
    expect(full.wKind).toBe('full');
    expect(low.cell.W).toBeNull(); // kept factorised: 2·(12+10) < 10·12
    for (let s = 0; s < 50; s++) {
      const xs = randomInputs(s, 12, 1 + (s % 5));
      const x = Float32Array.from(xs.flat());
      expect(Math.abs(forward(low, x, xs.length) - forward(full, x, xs.length))).toBeLessThan(1e-6);
    }
  });

  it('I8 weights are int8 × scale (dequantised exactly) and quantisation error ≤ scale/2', () => {
    const values = [0.5, -1.27, 0.013, 0, 1.0, -0.3];
    const { q, scale } = quantizeI8(values);
    expect(scale).toBe(Math.fround(1.27 / 127));
    values.forEach((v, i) => expect(Math.abs(q[i]! * scale - v)).toBeLessThanOrEqual(scale / 2 + 1e-12));
    // A hand-written I8 file: W = q·s must be what the cell uses.
    const H = 2, D = 2;
    const bytes = writeSafetensors(new Map<string, Tensor>([
      ['W', { dtype: 'I8', shape: [H, D], data: Int8Array.of(127, -127, 64, 0) }],
      ['W.scale', { dtype: 'F32', shape: [1], data: Float32Array.of(0.01) }],
      ['U', { dtype: 'F32', shape: [H, H], data: new Float32Array(4) }],
      ['b_z', { dtype: 'F32', shape: [H], data: new Float32Array(H) }],
      ['b_h', { dtype: 'F32', shape: [H], data: new Float32Array(H) }],
      ['zeta', { dtype: 'F32', shape: [1], data: Float32Array.of(0) }],
      ['nu', { dtype: 'F32', shape: [1], data: Float32Array.of(0) }],
      ['fc_w', { dtype: 'F32', shape: [1, H], data: Float32Array.of(1, 1) }],
      ['fc_b', { dtype: 'F32', shape: [1], data: Float32Array.of(0) }],
    ]), { format: 'tiny-dancer/fastgrnn', version: 'i8', input_dim: '2', hidden_dim: '2', features: '["a","b"]' });
    const m = parseModel(bytes);
    const s = Math.fround(0.01);
    expect(Array.from(m.cell.W!)).toEqual([127 * s, -127 * s, 64 * s, 0]);
    expect(m.tensors.find((t) => t.name === 'W')).toMatchObject({ dtype: 'I8', bytes: 4, nonZeros: 3, sparsity: 0.25, scale: s });
    expect(Math.abs(forward(m, Float32Array.of(1, 2), 1) - refForward(bytes, [[1, 2]]))).toBeLessThan(1e-12);
  });

  it('gives finite scores in [0, 1] for extreme inputs', () => {
    const model = parseModel(encodeModel(randomParams(5, { D: 5, H: 8, scale: 10 })));
    for (const v of [1e30, -1e30, 3e38, -3e38, 0]) {
      const p = forward(model, new Float32Array(15).fill(v), 3);
      expect(Number.isFinite(p)).toBe(true);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThanOrEqual(1);
    }
  });

  it('forward rejects a bad step count or a short input', () => {
    const model = parseModel(encodeModel(randomParams(5, { D: 5, H: 8 })));
    expect(() => forward(model, new Float32Array(5), 0)).toThrow(RangeError);
    expect(() => forward(model, new Float32Array(9), 2)).toThrow(RangeError);
  });
});

describe('parseModel validation', () => {
  const good = randomParams(1, { D: 5, H: 4 });
  good.features = FEATURE_NAMES;

  /** Re-serialises a good model after a mutation of its tensors/metadata. */
  function mutated(mut: (t: Map<string, Tensor>, m: Record<string, string>) => void): Uint8Array {
    const { tensors, metadata } = readSafetensors(encodeModel(good));
    mut(tensors, metadata);
    return writeSafetensors(tensors, metadata);
  }

  it('accepts the good model and reports its parts', () => {
    const m = parseModel(encodeModel({ ...good, calibration: { alpha: 0.1, qhat: 0.3, n: 200 }, thresholds: { confidence: 0.9, maxUncertainty: 0.2 } }));
    expect(m.version).toBe('rand-1');
    expect(m.features).toEqual(FEATURE_NAMES);
    expect(m.calibration).toEqual({ alpha: 0.1, qhat: 0.3, n: 200 });
    expect(m.thresholds).toEqual({ confidence: 0.9, maxUncertainty: 0.2 });
    expect(m.tensors.map((t) => t.name).sort()).toEqual(['U', 'W', 'b_h', 'b_z', 'fc_b', 'fc_w', 'nu', 'zeta']);
  });

  it.each<[string, (t: Map<string, Tensor>, m: Record<string, string>) => void, RegExp]>([
    ['wrong format', (_t, m) => { m.format = 'other'; }, /'format' must be 'tiny-dancer\/fastgrnn'/],
    ['no format', (_t, m) => { delete m.format; }, /got nothing/],
    ['no version', (_t, m) => { m.version = ' '; }, /'version' is missing/],
    ['input_dim not a number', (_t, m) => { m.input_dim = 'five'; }, /'input_dim' must be a positive integer/],
    ['input_dim disagrees with W', (_t, m) => { m.input_dim = '6'; m.features = JSON.stringify([...FEATURE_NAMES, 'x']); }, /'W' has shape \[4, 5\], expected \[4, 6\]/],
    ['hidden_dim disagrees', (_t, m) => { m.hidden_dim = '3'; }, /has shape/],
    ['features not JSON', (_t, m) => { m.features = 'sim,rec'; }, /'features' must be a JSON list/],
    ['features wrong length', (_t, m) => { m.features = '["a"]'; }, /lists 1 names, input_dim is 5/],
    ['missing b_z', (t) => { t.delete('b_z'); }, /'b_z' is missing/],
    ['missing W', (t) => { t.delete('W'); }, /'W' \(or 'W1' and 'W2'\) is missing/],
    ['W and W1 both', (t) => { t.set('W1', { dtype: 'F32', shape: [4, 1], data: new Float32Array(4) }); }, /both 'W' and low-rank/],
    ['only W1', (t) => { t.delete('W'); t.set('W1', { dtype: 'F32', shape: [4, 1], data: new Float32Array(4) }); }, /needs both 'W1' and 'W2'/],
    ['wrong shape', (t) => { t.set('b_h', { dtype: 'F32', shape: [1, 4], data: new Float32Array(4) }); }, /'b_h' has shape \[1, 4\], expected \[4\]/],
    ['F64 weights', (t) => { t.set('W', { dtype: 'F64', shape: [4, 5], data: new Float64Array(20) }); }, /dtype F64, must be F32 or I8/],
    ['I8 bias', (t) => { t.set('b_z', { dtype: 'I8', shape: [4], data: new Int8Array(4) }); t.set('b_z.scale', { dtype: 'F32', shape: [1], data: Float32Array.of(1) }); }, /unexpected tensor 'b_z.scale'|must be F32/],
    ['I8 without scale', (t) => { t.set('W', { dtype: 'I8', shape: [4, 5], data: new Int8Array(20) }); }, /needs an F32 tensor 'W.scale'/],
    ['scale of wrong shape', (t) => { t.set('W', { dtype: 'I8', shape: [4, 5], data: new Int8Array(20) }); t.set('W.scale', { dtype: 'F32', shape: [2], data: new Float32Array(2) }); }, /must be F32 of shape \[1\]/],
    ['NaN scale', (t) => { t.set('W', { dtype: 'I8', shape: [4, 5], data: new Int8Array(20) }); t.set('W.scale', { dtype: 'F32', shape: [1], data: Float32Array.of(NaN) }); }, /not finite/],
    ['scale for an F32 tensor', (t) => { t.set('W.scale', { dtype: 'F32', shape: [1], data: Float32Array.of(1) }); }, /'W' is not an I8 tensor/],
    ['NaN weight', (t) => { const w = t.get('W')!.data as Float32Array; w[3] = NaN; }, /'W' has a non-finite value at index 3/],
    ['Infinity weight', (t) => { const w = t.get('fc_b')!.data as Float32Array; w[0] = Infinity; }, /'fc_b' has a non-finite value/],
    ['unknown tensor', (t) => { t.set('w_extra', { dtype: 'F32', shape: [1], data: new Float32Array(1) }); }, /unexpected tensor 'w_extra'/],
    ['norm_mean alone', (t) => { t.set('norm_mean', { dtype: 'F32', shape: [5], data: new Float32Array(5) }); }, /must come together/],
    ['norm_std zero', (t) => { t.set('norm_mean', { dtype: 'F32', shape: [5], data: new Float32Array(5) }); t.set('norm_std', { dtype: 'F32', shape: [5], data: Float32Array.of(1, 1, 0, 1, 1) }); }, /'norm_std'\[2\] is 0/],
    ['partial calibration', (_t, m) => { m.conformal_alpha = '0.1'; }, /needs all of/],
    ['alpha out of range', (_t, m) => { m.conformal_alpha = '1'; m.conformal_qhat = '0.2'; m.calibration_n = '10'; }, /'conformal_alpha' must be a number in \(0, 1\)/],
    ['qhat not a number', (_t, m) => { m.conformal_alpha = '0.1'; m.conformal_qhat = 'x'; m.calibration_n = '10'; }, /'conformal_qhat'/],
    ['threshold out of range', (_t, m) => { m.confidence_threshold = '1.5'; }, /'confidence_threshold' must be a number in \[0, 1\]/],
  ])('%s → ModelError', (_name, mut, pattern) => {
    const bytes = mutated(mut);
    expect(() => parseModel(bytes, 'm.safetensors')).toThrow(ModelError);
    expect(() => parseModel(bytes, 'm.safetensors')).toThrow(pattern);
    expect(() => parseModel(bytes, 'm.safetensors')).toThrow(/^m\.safetensors: /);
  });

  it('wraps safetensors errors and refuses garbage', () => {
    expect(() => parseModel(new Uint8Array(3), 'x')).toThrow(/^x: invalid safetensors/);
  });

  it('fuzzed model files: parse or ModelError, never anything else (property)', () => {
    const bytes = encodeModel(good);
    fc.assert(fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 }), (pos, val) => {
      const b = bytes.slice();
      b[pos] = val;
      try {
        const m = parseModel(b);
        expect(Number.isFinite(forward(m, new Float32Array(5), 1))).toBe(true);
      } catch (e) {
        if (!(e instanceof ModelError)) throw e;
      }
    }), { numRuns: 1500 });
  });

  it('loadModelFile: missing file is a ModelError; the default model loads', () => {
    expect(() => loadModelFile('/nonexistent/model.safetensors')).toThrow(/cannot read model file \/nonexistent\/model.safetensors/);
    expect(() => loadModelFile('/tmp')).toThrow(ModelError);
    const m = loadModelFile(defaultModelPath());
    expect(m.features).toEqual(FEATURE_NAMES);
    expect(m.inputDim).toBe(5); // whatever the training job last wrote, it must be routable
  });
});
