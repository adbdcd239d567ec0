// The FastGRNN cell of docs/contracts.md §3 for TRAINING: float64 forward pass that keeps what the backward
// pass needs, and backpropagation through time with analytic gradients.
//
//   a_t = W x_t + U h_{t-1};  z_t = σ(a_t + b_z);  c_t = tanh(a_t + b_h)
//   h_t = (σ(ζ)(1 − z_t) + σ(ν)) ⊙ c_t + z_t ⊙ h_{t-1};   logit = fc_w · h_T + fc_b
//
// WHY separate from src/engine/fastgrnn.ts: serving wants an allocation-free kernel with
// normalisation folded in and approximate exp; training wants exact float64 math, the per-step
// activations kept for BPTT, and the parameters in the form they are learnt (ζ and ν as raw
// scalars, W and U possibly low-rank). The parameters here are named exactly like the tensors of
// the model file so writing one is a rename-free copy. Inputs given to this module are already
// normalised ((x − mean) / std); the stored norm_mean / norm_std undo nothing at serving time,
// they simply repeat the same transform.
//
// Low-rank W = W1·W2 and U = U1·U2 are trained in factored form (as in the paper): the forward
// pass materialises the products once per mini-batch (H×D and H×H are tiny), gradients are
// accumulated for the products and pulled back to the factors at the end of the batch:
// dW1 = dW·W2ᵀ, dW2 = W1ᵀ·dW.
import type { Rng } from './rng.js';

export interface GrnnShape {
  inputDim: number;
  hiddenDim: number;
  /** 0 = full W; otherwise the rank of W = W1·W2. */
  rankW: number;
  /** 0 = full U; otherwise the rank of U = U1·U2. */
  rankU: number;
}

export type ParamName = 'W' | 'W1' | 'W2' | 'U' | 'U1' | 'U2' | 'b_z' | 'b_h' | 'zeta' | 'nu' | 'fc_w' | 'fc_b';
export const PARAM_ORDER: readonly ParamName[] = ['W', 'W1', 'W2', 'U', 'U1', 'U2', 'b_z', 'b_h', 'zeta', 'nu', 'fc_w', 'fc_b'];
/** The weight matrices IHT sparsifies (the paper's W and U, or their factors). */
export const SPARSE_NAMES: readonly ParamName[] = ['W', 'W1', 'W2', 'U', 'U1', 'U2'];

export interface GrnnParams {
  shape: GrnnShape;
  W: Float64Array | null;
  W1: Float64Array | null;
  W2: Float64Array | null;
  U: Float64Array | null;
  U1: Float64Array | null;
  U2: Float64Array | null;
  b_z: Float64Array;
  b_h: Float64Array;
  /** [1], raw: the cell uses σ(zeta). */
  zeta: Float64Array;
  /** [1], raw: the cell uses σ(nu). */
  nu: Float64Array;
  fc_w: Float64Array;
  /** [1] */
  fc_b: Float64Array;
}

/** The present tensors in a fixed order (the order Adam, IHT and hashing walk them). */
export function paramEntries(p: GrnnParams): [ParamName, Float64Array][] {
  const out: [ParamName, Float64Array][] = [];
  for (const name of PARAM_ORDER) {
    const t = p[name];
    if (t) out.push([name, t]);
  }
  return out;
}

/** Shape of each tensor as in docs/contracts.md §3. */
export function tensorShape(shape: GrnnShape, name: ParamName): number[] {
  const { inputDim: D, hiddenDim: H, rankW: rw, rankU: ru } = shape;
  switch (name) {
    case 'W': return [H, D];
    case 'W1': return [H, rw];
    case 'W2': return [rw, D];
    case 'U': return [H, H];
    case 'U1': return [H, ru];
    case 'U2': return [ru, H];
    case 'b_z': case 'b_h': return [H];
    case 'fc_w': return [1, H];
    case 'zeta': case 'nu': case 'fc_b': return [1];
  }
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** All-zero parameters of a shape (also the gradient accumulator layout). */
export function zeroParams(shape: GrnnShape): GrnnParams {
  const t = (name: ParamName) => new Float64Array(size(tensorShape(shape, name)));
  const fullW = shape.rankW === 0;
  const fullU = shape.rankU === 0;
  return {
    shape: { ...shape },
    W: fullW ? t('W') : null,
    W1: fullW ? null : t('W1'),
    W2: fullW ? null : t('W2'),
    U: fullU ? t('U') : null,
    U1: fullU ? null : t('U1'),
    U2: fullU ? null : t('U2'),
    b_z: t('b_z'),
    b_h: t('b_h'),
    zeta: t('zeta'),
    nu: t('nu'),
    fc_w: t('fc_w'),
    fc_b: t('fc_b'),
  };
}

export function cloneParams(p: GrnnParams): GrnnParams {
  const c = zeroParams(p.shape);
  copyParams(p, c);
  return c;
}

export function copyParams(from: GrnnParams, to: GrnnParams): void {
  for (const [name, t] of paramEntries(from)) to[name]!.set(t);
}

export interface InitOptions {
  /**
   * False when every training sequence has one step: then h_0 = 0 makes U·h vanish, U gets no
   * gradient and can learn nothing, so it is left at zero rather than at meaningless noise.
   */
  recurrent: boolean;
  /** Initial fc_b, e.g. the logit of the training base rate (faster start). */
  outputBias?: number;
}

/**
 * Initialisation: W (or W1·W2) so that each pre-activation has about unit variance on normalised
 * inputs; U small (0.5/√H scale) for stable recurrences; ζ = 1, ν = −4 as in the FastGRNN
 * reference code; b_z = 1 (gates start leaning toward keeping h), b_h = 0; fc_w ~ N(0, 1/H).
 */
export function initParams(shape: GrnnShape, rng: Rng, opts: InitOptions): GrnnParams {
  const p = zeroParams(shape);
  const { inputDim: D, hiddenDim: H, rankW: rw, rankU: ru } = shape;
  const fill = (t: Float64Array, std: number) => {
    for (let i = 0; i < t.length; i++) t[i] = rng.normal() * std;
  };
  if (p.W) fill(p.W, 1 / Math.sqrt(D));
  else {
    fill(p.W1!, 1 / Math.sqrt(rw));
    fill(p.W2!, 1 / Math.sqrt(D));
  }
  if (opts.recurrent) {
    if (p.U) fill(p.U, 0.5 / Math.sqrt(H));
    else {
      fill(p.U1!, 1 / Math.sqrt(ru));
      fill(p.U2!, 0.5 / Math.sqrt(H));
    }
  }
  p.b_z.fill(1);
  p.zeta[0] = 1;
  p.nu[0] = -4;
  fill(p.fc_w, 1 / Math.sqrt(H));
  p.fc_b[0] = opts.outputBias ?? 0;
  return p;
}

/** σ(x) without overflow for large |x| (one exp either way). */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** Binary cross-entropy of σ(logit) against a (possibly soft) target, computed stably. */
export function bceWithLogit(logit: number, target: number): number {
  return Math.max(logit, 0) - logit * target + Math.log1p(Math.exp(-Math.abs(logit)));
}

/** out (m×p) = A (m×k) · B (k×p). */
function matmulInto(A: Float64Array, B: Float64Array, m: number, k: number, p: number, out: Float64Array): void {
  out.fill(0);
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < k; r++) {
      const a = A[i * k + r]!;
      if (a === 0) continue;
      const o = i * p, b = r * p;
      for (let j = 0; j < p; j++) out[o + j] = out[o + j]! + a * B[b + j]!;
    }
  }
}

/**
 * Sequences for the trainer: sample i is `steps[i]` consecutive input vectors of D values
 * starting at value offset `start[i]` in `x`.
 */
export interface SeqView {
  x: Float64Array;
  start: Int32Array;
  steps: Int32Array;
}

/**
 * Working memory for one parameter shape and a maximum sequence length: the materialised
 * products, per-step activations for BPTT and the product-space gradient accumulators.
 */
export class GrnnWork {
  readonly H: number;
  readonly D: number;
  readonly maxT: number;
  readonly We: Float64Array;
  readonly Ue: Float64Array;
  readonly dWe: Float64Array;
  readonly dUe: Float64Array;
  readonly Z: Float64Array;
  readonly C: Float64Array;
  /** h_0..h_T, h_0 = 0 (never written). */
  readonly Hs: Float64Array;
  private dh: Float64Array;
  private dhPrev: Float64Array;
  private readonly da: Float64Array;
  zs = 0;
  ns = 0;
  dzs = 0;
  dns = 0;

  constructor(shape: GrnnShape, maxT: number) {
    const H = (this.H = shape.hiddenDim);
    const D = (this.D = shape.inputDim);
    this.maxT = Math.max(1, maxT);
    this.We = new Float64Array(H * D);
    this.Ue = new Float64Array(H * H);
    this.dWe = new Float64Array(H * D);
    this.dUe = new Float64Array(H * H);
    this.Z = new Float64Array(this.maxT * H);
    this.C = new Float64Array(this.maxT * H);
    this.Hs = new Float64Array((this.maxT + 1) * H);
    this.dh = new Float64Array(H);
    this.dhPrev = new Float64Array(H);
    this.da = new Float64Array(H);
  }

  /** Materialises W, U and σ(ζ), σ(ν) from the parameters; call after every parameter change. */
  prepare(p: GrnnParams): void {
    const { H, D } = this;
    if (p.W) this.We.set(p.W);
    else matmulInto(p.W1!, p.W2!, H, p.shape.rankW, D, this.We);
    if (p.U) this.Ue.set(p.U);
    else matmulInto(p.U1!, p.U2!, H, p.shape.rankU, H, this.Ue);
    this.zs = sigmoid(p.zeta[0]!);
    this.ns = sigmoid(p.nu[0]!);
  }

  /** Returns the logit for the sequence of T steps at value offset `off`; keeps activations. */
  forward(p: GrnnParams, x: Float64Array, off: number, T: number): number {
    const { H, D, We, Ue, Z, C, Hs, zs, ns } = this;
    const bz = p.b_z, bh = p.b_h;
    for (let t = 0; t < T; t++) {
      const xo = off + t * D;
      const hp = t * H;
      const hn = hp + H;
      for (let i = 0; i < H; i++) {
        let a = 0;
        const wo = i * D;
        for (let j = 0; j < D; j++) a += We[wo + j]! * x[xo + j]!;
        if (t > 0) {
          const uo = i * H;
          for (let k = 0; k < H; k++) a += Ue[uo + k]! * Hs[hp + k]!;
        }
        const z = sigmoid(a + bz[i]!);
        const c = Math.tanh(a + bh[i]!);
        Z[hp + i] = z;
        C[hp + i] = c;
        Hs[hn + i] = (zs * (1 - z) + ns) * c + z * Hs[hp + i]!;
      }
    }
    const fw = p.fc_w;
    const hT = T * H;
    let logit = p.fc_b[0]!;
    for (let i = 0; i < H; i++) logit += fw[i]! * Hs[hT + i]!;
    return logit;
  }

  /** Clears the gradient accumulators (and `g`, the parameter-shaped gradient). */
  zeroGrad(g: GrnnParams): void {
    for (const [, t] of paramEntries(g)) t.fill(0);
    this.dWe.fill(0);
    this.dUe.fill(0);
    this.dzs = 0;
    this.dns = 0;
  }

  /**
   * BPTT for the sequence last passed to `forward`, with dL/dlogit = `gl`. Accumulates into the
   * product-space accumulators and into `g` (biases, fc); call `finishGrad` once per batch.
   */
  backward(p: GrnnParams, g: GrnnParams, x: Float64Array, off: number, T: number, gl: number): void {
    const { H, D, Ue, Z, C, Hs, zs, ns, dWe, dUe, da } = this;
    const fw = p.fc_w;
    const gfw = g.fc_w, gbz = g.b_z, gbh = g.b_h;
    g.fc_b[0] = g.fc_b[0]! + gl;
    const hT = T * H;
    let dh = this.dh, dhPrev = this.dhPrev;
    for (let i = 0; i < H; i++) {
      gfw[i] = gfw[i]! + gl * Hs[hT + i]!;
      dh[i] = gl * fw[i]!;
    }
    let dzs = 0, dns = 0;
    for (let t = T - 1; t >= 0; t--) {
      const hp = t * H;
      for (let i = 0; i < H; i++) {
        const z = Z[hp + i]!, c = C[hp + i]!, hprev = Hs[hp + i]!, d = dh[i]!;
        dzs += d * (1 - z) * c;
        dns += d * c;
        const dz = d * (hprev - zs * c);
        const dc = d * (zs * (1 - z) + ns);
        const dpz = dz * z * (1 - z);
        const dpc = dc * (1 - c * c);
        gbz[i] = gbz[i]! + dpz;
        gbh[i] = gbh[i]! + dpc;
        da[i] = dpz + dpc;
        dhPrev[i] = d * z;
      }
      const xo = off + t * D;
      for (let i = 0; i < H; i++) {
        const dai = da[i]!;
        if (dai === 0) continue;
        const wo = i * D;
        for (let j = 0; j < D; j++) dWe[wo + j] = dWe[wo + j]! + dai * x[xo + j]!;
      }
      if (t > 0) {
        for (let i = 0; i < H; i++) {
          const dai = da[i]!;
          if (dai === 0) continue;
          const uo = i * H;
          for (let k = 0; k < H; k++) {
            dUe[uo + k] = dUe[uo + k]! + dai * Hs[hp + k]!;
            dhPrev[k] = dhPrev[k]! + Ue[uo + k]! * dai;
          }
        }
      }
      const tmp = dh;
      dh = dhPrev;
      dhPrev = tmp;
    }
    this.dh = dh;
    this.dhPrev = dhPrev;
    this.dzs += dzs;
    this.dns += dns;
  }

  /** Pulls the accumulated product-space gradients back to the parameters in `g`. */
  finishGrad(p: GrnnParams, g: GrnnParams): void {
    const { H, D, dWe, dUe } = this;
    g.zeta[0] = g.zeta[0]! + this.dzs * this.zs * (1 - this.zs);
    g.nu[0] = g.nu[0]! + this.dns * this.ns * (1 - this.ns);
    if (p.W) addInto(g.W!, dWe);
    else pullBack(p.W1!, p.W2!, dWe, H, p.shape.rankW, D, g.W1!, g.W2!);
    if (p.U) addInto(g.U!, dUe);
    else pullBack(p.U1!, p.U2!, dUe, H, p.shape.rankU, H, g.U1!, g.U2!);
  }
}

function addInto(dst: Float64Array, src: Float64Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = dst[i]! + src[i]!;
}

/** For M = A (m×k) · B (k×p): dA += dM·Bᵀ, dB += Aᵀ·dM. */
function pullBack(A: Float64Array, B: Float64Array, dM: Float64Array, m: number, k: number, p: number, dA: Float64Array, dB: Float64Array): void {
  for (let i = 0; i < m; i++) {
    for (let r = 0; r < k; r++) {
      let s = 0;
      for (let j = 0; j < p; j++) s += dM[i * p + j]! * B[r * p + j]!;
      dA[i * k + r] = dA[i * k + r]! + s;
    }
  }
  for (let r = 0; r < k; r++) {
    for (let j = 0; j < p; j++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += A[i * k + r]! * dM[i * p + j]!;
      dB[r * p + j] = dB[r * p + j]! + s;
    }
  }
}

/**
 * Mean BCE over the samples idx[from..to) and, when `g` is given, its gradient in `g`.
 * `target[i]` is the training target of sample i (hard label, or the distillation mix).
 */
export function batchLossGrad(
  p: GrnnParams,
  work: GrnnWork,
  data: SeqView,
  target: Float64Array,
  idx: Int32Array | null,
  from: number,
  to: number,
  g: GrnnParams | null,
  weight?: Float64Array,
): number {
  work.prepare(p);
  if (g) work.zeroGrad(g);
  const n = to - from;
  let loss = 0;
  for (let b = from; b < to; b++) {
    const i = idx ? idx[b]! : b;
    const off = data.start[i]!;
    const T = data.steps[i]!;
    const logit = work.forward(p, data.x, off, T);
    const y = target[i]!;
    const w = weight ? weight[i]! : 1;
    loss += w * bceWithLogit(logit, y);
    if (g) work.backward(p, g, data.x, off, T, (w * (sigmoid(logit) - y)) / n);
  }
  if (g) work.finishGrad(p, g);
  return loss / n;
}

/** Probabilities σ(logit) for every sample into `out`. */
export function predict(p: GrnnParams, work: GrnnWork, data: SeqView, out: Float64Array): void {
  work.prepare(p);
  const n = data.start.length;
  for (let i = 0; i < n; i++) out[i] = sigmoid(work.forward(p, data.x, data.start[i]!, data.steps[i]!));
}

/** Total and non-zero counts of the weight matrices (for summaries). */
export function countWeights(p: GrnnParams, names: readonly ParamName[] = SPARSE_NAMES): { params: number; nonZeros: number } {
  let params = 0, nonZeros = 0;
  for (const name of names) {
    const t = p[name];
    if (!t) continue;
    params += t.length;
    for (let i = 0; i < t.length; i++) if (t[i] !== 0) nonZeros++;
  }
  return { params, nonZeros };
}
