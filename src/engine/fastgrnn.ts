// The FastGRNN cell of docs/contracts.md §3 (Kusupati et al., NeurIPS 2018) as an allocation-free kernel:
//
//   a_t = W x_t + U h_{t-1};  z_t = σ(a_t + b_z);  c_t = tanh(a_t + b_h)
//   h_t = (σ(ζ)(1 − z_t) + σ(ν)) ⊙ c_t + z_t ⊙ h_{t-1};   score = σ(fc_w · h_T + fc_b)
//
// WHY it looks like this:
// - Weights live in Float64Arrays and all arithmetic is float64: a reference implementation in
//   numpy float64 must be reproduced within 2e-5, and float64 loads cost the same as float32
//   ones in V8 (every JS number is a double anyway).
// - Input normalisation is folded into W at load: W' = W·diag(1/std), and the constant −W'·mean
//   is folded into both biases (a appears in z and c alike), so scoring never touches mean/std.
// - Low-rank W = W1·W2 is kept factorised only when that is cheaper per step
//   (rw·(D + H) < H·D multiply-adds); otherwise it is materialised once at load (in float64).
//   Same for U (ru·2H vs H·H).
// - With T = 1 (one feature vector per candidate, the routing case) h_0 = 0, so U·h vanishes
//   and the hidden units are independent: the whole cell fuses into one loop over H with no
//   scratch at all. Sequences use two preallocated hidden buffers, swapped per step.
// - ONE exp per hidden unit instead of two: z and c share a, so with E = e^(−a),
//   e^(−(a+b_z)) = E·k_z and e^(−2(a+b_h)) = E²·k_h where k_z = e^(−b_z), k_h = e^(−2 b_h) are
//   per-unit constants computed at load; z = 1/(1 + E·k_z), c = tanh = 2/(1 + E²·k_h) − 1.
//   a is clamped to ±(40 + max|b|) first: beyond that both activations are within 5e-18 of
//   their limits whatever the clamp, and with max|b| ≤ 100 (else the cell falls back to two
//   exps per unit) nothing can overflow or underflow to a wrong limit.
// - exp itself is a table + short polynomial (2^(N/64) split, degree-4 Taylor on
//   r ∈ [0, ln2/64)): relative error ~1e-12, about twice as fast as Math.exp here.

/** The cell's weights in the layout the kernel uses (built by model.ts from a file). */
export interface FastGrnnCell {
  readonly inputDim: number;
  readonly hiddenDim: number;
  /** Full W' (normalisation folded in), H×D row-major, or null when kept low-rank. */
  readonly W: Float64Array | null;
  /** Low-rank factors: W1 H×rw, W2' rw×D (normalisation folded into W2'). */
  readonly W1: Float64Array | null;
  readonly W2: Float64Array | null;
  readonly rw: number;
  /** Full U, H×H, or null when kept low-rank. */
  readonly U: Float64Array | null;
  readonly U1: Float64Array | null;
  readonly U2: Float64Array | null;
  readonly ru: number;
  /** Biases with −W'·mean folded in. */
  readonly bz: Float64Array;
  readonly bh: Float64Array;
  /** e^(−b_z), e^(−2 b_h) per unit (the one-exp path). */
  readonly kz: Float64Array;
  readonly kh: Float64Array;
  /** |a| clamp for the one-exp path, or 0 when biases are too large for it (two exps then). */
  readonly aClamp: number;
  /** σ(ζ), σ(ν). */
  readonly zetaS: number;
  readonly nuS: number;
  readonly fcW: Float64Array;
  readonly fcB: number;
  /**
   * The one-step (h_0 = 0) cell with dead units removed, used when W is full: a unit whose W row
   * is all zeros has a = 0 whatever the input, so its output fc_w[i]·h_i(0) is a constant folded
   * into `t1FcB`; a unit with fc_w[i] = 0 contributes nothing at T = 1. Pruned, quantised models
   * have many such units (the trained default: 22 of 32), so this is the main speed lever there.
   */
  readonly t1Units: number;
  readonly t1W: Float64Array;
  readonly t1Kz: Float64Array;
  readonly t1Kh: Float64Array;
  readonly t1FcW: Float64Array;
  readonly t1FcB: number;
}

/** Everything of a cell except what `makeCell` derives. */
export type FastGrnnParts = Omit<FastGrnnCell, 'kz' | 'kh' | 'aClamp' | 't1Units' | 't1W' | 't1Kz' | 't1Kh' | 't1FcW' | 't1FcB'>;

/** Per-thread working memory for `forwardCell`; one per cell, reused across calls. */
export interface FastGrnnScratch {
  /** W x (+ U h) for the current step, length H. */
  a: Float64Array;
  /** Low-rank intermediate, length max(rw, ru, 1). */
  t: Float64Array;
  h: Float64Array;
  hNext: Float64Array;
}

export function createScratch(cell: FastGrnnCell): FastGrnnScratch {
  const H = cell.hiddenDim;
  return {
    a: new Float64Array(H),
    t: new Float64Array(Math.max(cell.rw, cell.ru, 1)),
    h: new Float64Array(H),
    hNext: new Float64Array(H),
  };
}

// ---------------------------------------------------------------------------------------------
// exp: e^y = 2^k · 2^(m/64) · e^r with N = floor(y·64/ln2) = 64k + m, r = y − N·ln2/64 ∈ [0, ln2/64).

const EXP_LIMIT = 700; // e^±700 is finite and normal; σ there is 0/1 to 1e-304
const INV_LN2_64 = 64 / Math.LN2;
const LN2_64 = Math.LN2 / 64;
const POW2_BIAS = 1024;
const POW2_INT = new Float64Array(2048); // 2^k for k in [-1024, 1023]
for (let k = -1024; k <= 1023; k++) POW2_INT[k + POW2_BIAS] = 2 ** k;
const POW2_FRAC = new Float64Array(64); // 2^(m/64)
for (let m = 0; m < 64; m++) POW2_FRAC[m] = 2 ** (m / 64);

/** e^y for y clamped to [-700, 700]; relative error ~1e-12. NaN in, NaN out. */
export function fastExp(y: number): number {
  if (y > EXP_LIMIT) y = EXP_LIMIT;
  else if (y < -EXP_LIMIT) y = -EXP_LIMIT;
  else if (y !== y) return NaN;
  const N = Math.floor(y * INV_LN2_64);
  const r = y - N * LN2_64;
  const p = 1 + r * (1 + r * (0.5 + r * (0.16666666666666666 + r * 0.041666666666666664)));
  return POW2_INT[(N >> 6) + POW2_BIAS]! * POW2_FRAC[N & 63]! * p;
}

export function fastSigmoid(y: number): number {
  return 1 / (1 + fastExp(-y));
}

export function fastTanh(y: number): number {
  return 2 / (1 + fastExp(-2 * y)) - 1;
}

/** Largest |bias| for which the one-exp path is used (see the file comment). */
const ONE_EXP_MAX_BIAS = 100;

/** Per-unit constants of the one-exp path; aClamp 0 means "use two exps". */
export function activationConstants(bz: Float64Array, bh: Float64Array): { kz: Float64Array; kh: Float64Array; aClamp: number } {
  let maxB = 0;
  for (let i = 0; i < bz.length; i++) maxB = Math.max(maxB, Math.abs(bz[i]!), Math.abs(bh[i]!));
  const kz = new Float64Array(bz.length);
  const kh = new Float64Array(bh.length);
  for (let i = 0; i < bz.length; i++) {
    kz[i] = Math.exp(-bz[i]!);
    kh[i] = Math.exp(-2 * bh[i]!);
  }
  return { kz, kh, aClamp: maxB <= ONE_EXP_MAX_BIAS ? 40 + maxB : 0 };
}

/** Derives the activation constants and the compacted one-step cell (see FastGrnnCell). */
export function makeCell(p: FastGrnnParts): FastGrnnCell {
  const { kz, kh, aClamp } = activationConstants(p.bz, p.bh);
  const H = p.hiddenDim, D = p.inputDim;
  const live: number[] = [];
  let t1FcB = p.fcB;
  if (p.W !== null) {
    for (let i = 0; i < H; i++) {
      const f = p.fcW[i]!;
      if (f === 0) continue;
      let zeroRow = true;
      for (let j = 0; j < D; j++) if (p.W[i * D + j] !== 0) { zeroRow = false; break; }
      if (zeroRow) {
        // h_i with a = 0, in plain float64 (computed once, so exactness over speed)
        const z = 1 / (1 + Math.exp(-p.bz[i]!));
        t1FcB += f * ((p.zetaS * (1 - z) + p.nuS) * Math.tanh(p.bh[i]!));
      } else live.push(i);
    }
  }
  const n = live.length;
  const t1W = new Float64Array(n * D);
  const t1Kz = new Float64Array(n), t1Kh = new Float64Array(n), t1FcW = new Float64Array(n);
  live.forEach((i, k) => {
    t1W.set(p.W!.subarray(i * D, (i + 1) * D), k * D);
    t1Kz[k] = kz[i]!;
    t1Kh[k] = kh[i]!;
    t1FcW[k] = p.fcW[i]!;
  });
  return { ...p, kz, kh, aClamp, t1Units: n, t1W, t1Kz, t1Kh, t1FcW, t1FcB };
}

// ---------------------------------------------------------------------------------------------

/** h for unit i given its pre-activation a (h_prev = 0): (σ(ζ)(1 − z) + σ(ν))·c. Slow path. */
function unit0(cell: FastGrnnCell, i: number, a: number): number {
  let z: number, c: number;
  const L = cell.aClamp;
  if (L > 0) {
    const E = fastExp(-(a > L ? L : a < -L ? -L : a));
    z = 1 / (1 + E * cell.kz[i]!);
    c = 2 / (1 + E * E * cell.kh[i]!) - 1;
  } else {
    z = 1 / (1 + fastExp(-(a + cell.bz[i]!)));
    c = 2 / (1 + fastExp(-2 * (a + cell.bh[i]!))) - 1;
  }
  return (cell.zetaS * (1 - z) + cell.nuS) * c;
}

/**
 * The routing case — full W (live units only), one-exp activations — with every constant in a local and the
 * activations written inline: V8 runs this faster than a per-unit helper call, and faster than
 * the D = 5 dot product unrolled by hand.
 */
function step1Full(cell: FastGrnnCell, x: ArrayLike<number>, off: number): number {
  const W = cell.t1W, kz = cell.t1Kz, kh = cell.t1Kh, fcW = cell.t1FcW;
  const H = cell.t1Units, D = cell.inputDim, L = cell.aClamp, zs = cell.zetaS, ns = cell.nuS;
  let logit = cell.t1FcB;
  for (let i = 0; i < H; i++) {
    const o = i * D;
    let a = 0;
    for (let j = 0; j < D; j++) a += W[o + j]! * x[off + j]!;
    const E = fastExp(-(a > L ? L : a < -L ? -L : a));
    const z = 1 / (1 + E * kz[i]!);
    const c = 2 / (1 + E * E * kh[i]!) - 1;
    logit += fcW[i]! * ((zs * (1 - z) + ns) * c);
  }
  return 1 / (1 + fastExp(-logit));
}

/**
 * One step with h_0 = 0 for the input at x[off .. off+D): the fused, scratch-free path.
 * `t` is only used for low-rank W.
 */
function step1(cell: FastGrnnCell, x: ArrayLike<number>, off: number, t: Float64Array): number {
  const D = cell.inputDim;
  const W = cell.W;
  if (W !== null && cell.aClamp > 0) return step1Full(cell, x, off);
  const H = cell.hiddenDim;
  const fcW = cell.fcW;
  let logit = cell.fcB;
  if (W !== null) {
    for (let i = 0; i < H; i++) {
      const o = i * D;
      let a = 0;
      for (let j = 0; j < D; j++) a += W[o + j]! * x[off + j]!;
      logit += fcW[i]! * unit0(cell, i, a);
    }
  } else {
    const W1 = cell.W1!, W2 = cell.W2!, rw = cell.rw;
    for (let r = 0; r < rw; r++) {
      const o = r * D;
      let s = 0;
      for (let j = 0; j < D; j++) s += W2[o + j]! * x[off + j]!;
      t[r] = s;
    }
    for (let i = 0; i < H; i++) {
      const o = i * rw;
      let a = 0;
      for (let r = 0; r < rw; r++) a += W1[o + r]! * t[r]!;
      logit += fcW[i]! * unit0(cell, i, a);
    }
  }
  return 1 / (1 + fastExp(-logit));
}

/** a ← W' x[off..off+D) */
function inputProjection(cell: FastGrnnCell, x: ArrayLike<number>, off: number, a: Float64Array, t: Float64Array): void {
  const D = cell.inputDim, H = cell.hiddenDim;
  const W = cell.W;
  if (W !== null) {
    for (let i = 0; i < H; i++) {
      const o = i * D;
      let s = 0;
      for (let j = 0; j < D; j++) s += W[o + j]! * x[off + j]!;
      a[i] = s;
    }
    return;
  }
  const W1 = cell.W1!, W2 = cell.W2!, rw = cell.rw;
  for (let r = 0; r < rw; r++) {
    const o = r * D;
    let s = 0;
    for (let j = 0; j < D; j++) s += W2[o + j]! * x[off + j]!;
    t[r] = s;
  }
  for (let i = 0; i < H; i++) {
    const o = i * rw;
    let s = 0;
    for (let r = 0; r < rw; r++) s += W1[o + r]! * t[r]!;
    a[i] = s;
  }
}

/** a += U h */
function addRecurrent(cell: FastGrnnCell, h: Float64Array, a: Float64Array, t: Float64Array): void {
  const H = cell.hiddenDim;
  const U = cell.U;
  if (U !== null) {
    for (let i = 0; i < H; i++) {
      const o = i * H;
      let s = 0;
      for (let j = 0; j < H; j++) s += U[o + j]! * h[j]!;
      a[i] = a[i]! + s;
    }
    return;
  }
  const U1 = cell.U1!, U2 = cell.U2!, ru = cell.ru;
  for (let r = 0; r < ru; r++) {
    const o = r * H;
    let s = 0;
    for (let j = 0; j < H; j++) s += U2[o + j]! * h[j]!;
    t[r] = s;
  }
  for (let i = 0; i < H; i++) {
    const o = i * ru;
    let s = 0;
    for (let r = 0; r < ru; r++) s += U1[o + r]! * t[r]!;
    a[i] = a[i]! + s;
  }
}

/**
 * Runs the cell over `steps` inputs packed in x (step t at [t*D, (t+1)*D)) starting at
 * `offset`, h_0 = 0, and returns the score σ(fc_w·h_T + fc_b). Allocation-free.
 */
export function forwardCell(cell: FastGrnnCell, x: ArrayLike<number>, steps: number, scratch: FastGrnnScratch, offset = 0): number {
  if (steps === 1) return step1(cell, x, offset, scratch.t);
  const D = cell.inputDim, H = cell.hiddenDim;
  const bz = cell.bz, bh = cell.bh, kz = cell.kz, kh = cell.kh, zs = cell.zetaS, ns = cell.nuS, L = cell.aClamp;
  const a = scratch.a, t = scratch.t;
  let h = scratch.h, hNext = scratch.hNext;
  for (let k = 0; k < steps; k++) {
    inputProjection(cell, x, offset + k * D, a, t);
    if (k > 0) addRecurrent(cell, h, a, t);
    for (let i = 0; i < H; i++) {
      const ai = a[i]!;
      let z: number, c: number;
      if (L > 0) {
        const E = fastExp(-(ai > L ? L : ai < -L ? -L : ai));
        z = 1 / (1 + E * kz[i]!);
        c = 2 / (1 + E * E * kh[i]!) - 1;
      } else {
        z = 1 / (1 + fastExp(-(ai + bz[i]!)));
        c = 2 / (1 + fastExp(-2 * (ai + bh[i]!))) - 1;
      }
      const hp = k > 0 ? h[i]! : 0;
      hNext[i] = (zs * (1 - z) + ns) * c + z * hp;
    }
    const tmp = h; h = hNext; hNext = tmp;
  }
  const fcW = cell.fcW;
  let logit = cell.fcB;
  for (let i = 0; i < H; i++) logit += fcW[i]! * h[i]!;
  return 1 / (1 + fastExp(-logit));
}

/** n independent one-step inputs, row i at features[i*D, (i+1)*D), scores into out[0..n). */
export function scoreRows(cell: FastGrnnCell, features: ArrayLike<number>, n: number, out: Float32Array | Float64Array, scratch: FastGrnnScratch): void {
  const D = cell.inputDim;
  const t = scratch.t;
  for (let i = 0; i < n; i++) out[i] = step1(cell, features, i * D, t);
}
