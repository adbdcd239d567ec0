// σ and tanh over f32x4 lanes, emitted as WebAssembly SIMD instructions (see wasm-encoder.ts),
// for the kernels that inline them (fastgrnn-simd.ts).
//
// WHY this formulation: V8 has no vector exp, and calling Math.exp per lane costs more than the
// whole rest of the cell. Everything is expressed through 2^t:
//   σ(y) = 1 / (1 + 2^t) with t = −y·log2 e,      tanh(y) = 2σ(2y) − 1,
// so a kernel can fold the −log2 e factor (and a bias) into constants it already multiplies by,
// and hand in t directly. 2^t is range-reduced as 2^k · 2^f with k = nearest(t) and
// f = t − k ∈ [−½, ½]:
// - k by the "magic number" rounding: s = t + 1.5·2^23 holds t rounded to an integer in its low
//   mantissa bits (bits(s) = bits(1.5·2^23) + k), so k = s − 1.5·2^23 exactly, and
//   (bits(s) + 127) << 23 is the bit pattern of 2^k (the magic's own bits shift out). That is
//   three instructions where f32x4.nearest + i32x4.trunc_sat lower to about eight on x64.
// - 2^f by a degree-6 polynomial: the interpolant of 2^f at the 7 Chebyshev nodes of [−½, ½],
//   converted to monomial form once at load. Its relative error is below 1e-8, under float32's
//   own rounding (6e-8), so the result is as good as float32 arithmetic allows.
// t is clamped to ±EXP2_CLAMP first: σ is then within 2^−60 ≈ 9e-19 of 0 or 1, 2^k stays a
// normal float (no denormal slow paths), and huge or infinite inputs cannot overflow.
//
// Error (checked against Math.exp over the whole float32 range in the unit tests): |σ − σ_exact|
// < 1e-7 and |tanh − tanh_exact| < 2e-7, i.e. a few float32 ulps of 1.
import { Code, I32, V128, encodeModule, type ValType } from './wasm-encoder.js';

/** |t| limit of 2^t: σ within 2^−60 of its limits beyond it. */
export const EXP2_CLAMP = 60;
export const LOG2E = Math.LOG2E;
/** 1.5·2^23: adding it to |t| < 2^22 rounds t to an integer held in the low mantissa bits. */
const MAGIC = 12582912;

/**
 * Monomial coefficients c_0..c_deg of the polynomial interpolating g on [lo, hi] at the
 * Chebyshev nodes (near-minimax, and no fitting step that could fail to converge).
 */
export function chebyshevInterpolant(g: (x: number) => number, lo: number, hi: number, deg: number): number[] {
  const m = deg + 1;
  const xs = Array.from({ length: m }, (_, i) => (lo + hi) / 2 + ((hi - lo) / 2) * Math.cos(((2 * i + 1) * Math.PI) / (2 * m)));
  // Newton divided differences, then expand the Newton form into monomials (float64 throughout).
  const dd = xs.map(g);
  for (let j = 1; j < m; j++) for (let i = m - 1; i >= j; i--) dd[i] = (dd[i]! - dd[i - 1]!) / (xs[i]! - xs[i - j]!);
  let poly = [dd[m - 1]!];
  for (let i = m - 2; i >= 0; i--) {
    // poly ← poly·(x − xs[i]) + dd[i]
    const next = new Array<number>(poly.length + 1).fill(0);
    for (let k = 0; k < poly.length; k++) {
      next[k + 1]! += poly[k]!;
      next[k]! -= poly[k]! * xs[i]!;
    }
    next[0]! += dd[i]!;
    poly = next;
  }
  return poly;
}

/** 2^f on [−½, ½], degree 6 (see the file comment). */
export const POW2_POLY: readonly number[] = Object.freeze(chebyshevInterpolant((x) => 2 ** x, -0.5, 0.5, 6));

/**
 * Pushes 2^t for the f32x4 in local `t`, t clamped to ±EXP2_CLAMP. Clobbers `t` and `k`
 * (two v128 locals). NaN lanes are not expected (inputs are validated finite); pmin/pmax keep
 * the clamp to one instruction each.
 */
export function emitExp2(c: Code, t: number, k: number): void {
  // t = clamp(t) → t;  s = t + MAGIC → k
  c.localGet(t).f32x4Const(-EXP2_CLAMP).f32x4Pmax();
  c.f32x4Const(EXP2_CLAMP).f32x4Pmin().localTee(t);
  c.f32x4Const(MAGIC).f32x4Add().localSet(k);
  // f = t − (s − MAGIC) ∈ [−½, ½] → t
  c.localGet(t).localGet(k).f32x4Const(MAGIC).f32x4Sub().f32x4Sub().localSet(t);
  // p(f) by Horner
  const p = POW2_POLY;
  c.f32x4Const(p[p.length - 1]!);
  for (let j = p.length - 2; j >= 0; j--) c.localGet(t).f32x4Mul().f32x4Const(p[j]!).f32x4Add();
  // · 2^k, built from the bits of s
  c.localGet(k).i32x4Const(127).i32x4Add().i32Const(23).i32x4Shl();
  c.f32x4Mul();
}

/** Pushes σ(y) = 1/(1 + 2^t) for local `t` holding t = −y·log2 e. Clobbers `t` and `k`. */
export function emitSigmoidOfT(c: Code, t: number, k: number): void {
  c.f32x4Const(1);
  emitExp2(c, t, k);
  c.f32x4Const(1).f32x4Add().f32x4Div();
}

/** Pushes σ(y) for local `y` (kept). Clobbers `t`, `k`. */
export function emitSigmoid(c: Code, y: number, t: number, k: number): void {
  c.localGet(y).f32x4Const(-LOG2E).f32x4Mul().localSet(t);
  emitSigmoidOfT(c, t, k);
}

/** Pushes tanh(y) = 2σ(2y) − 1 for local `y` (kept). Clobbers `t`, `k`. */
export function emitTanh(c: Code, y: number, t: number, k: number): void {
  c.localGet(y).f32x4Const(-2 * LOG2E).f32x4Mul().localSet(t);
  emitSigmoidOfT(c, t, k);
  c.f32x4Const(2).f32x4Mul().f32x4Const(1).f32x4Sub();
}

/**
 * A module applying σ or tanh in place to `count` f32 at byte address p (count a multiple of 4):
 * exports "sigmoid" and "tanh" (p, count), and its memory. Used by the tests (to check the
 * emitted code against Math.exp on the whole input range); the kernels inline the emitters.
 */
export function buildActivationModule(): Uint8Array {
  const P = 0, N = 1, Y = 2, T = 3, K = 4;
  const body = (emit: (c: Code) => void): Code => {
    const c = new Code();
    c.block().loop();
    c.localGet(N).i32Eqz().brIf(1);
    c.localGet(P).localGet(P).v128Load().localSet(Y);
    emit(c);
    c.v128Store();
    c.localGet(P).i32Const(16).i32Add().localSet(P);
    c.localGet(N).i32Const(4).i32Sub().localSet(N);
    c.br(0).end().end();
    return c;
  };
  const locals: ValType[] = [V128, V128, V128];
  return encodeModule(
    [
      { name: 'sigmoid', params: [I32, I32], results: [], locals, body: body((c) => emitSigmoid(c, Y, T, K)) },
      { name: 'tanh', params: [I32, I32], results: [], locals, body: body((c) => emitTanh(c, Y, T, K)) },
    ],
    1,
  );
}
