// The FastGRNN cell of SPEC §3 for routing (T = 1, h_0 = 0), as WebAssembly SIMD compiled per
// model: four hidden units per f32x4 vector, every weight baked into the code as a constant.
//
// WHY a module per model: with T = 1 the recurrent term vanishes (U·h_0 = 0, z ⊙ h_0 = 0) and
// the cell is, per hidden unit i,
//   a = W_i · x;  z = σ(a + b_z,i);  c = tanh(a + b_h,i);  h_i = (σ(ζ)(1 − z) + σ(ν)) · c
//   score = σ(fc_b + Σ_i fc_w,i · h_i)
// — a fixed, branch-free dataflow for a given model. Emitting it straight-line, with weights as
// v128 constants (zeros skipped, so pruned models get cheaper), removes every load and loop of
// the generic kernel. Compiling costs about a millisecond and happens once per model (cached
// per cell object), on the thread that scores.
//
// Measured on the trained default model (H = 32, W 90 % pruned): ~0.2 µs for one candidate,
// ~110 ns per candidate in a batch of 100, against ~0.3-0.6 µs per candidate for the float64
// kernel.
//
// Precision: float32 with exp(x) = 2^k · 2^f (k = nearest(x·log2 e), |f| ≤ ½, degree-7 Taylor
// polynomial for 2^f, relative error ~1e-7). Scores agree with the float64 cell (fastgrnn.ts,
// which `model score` keeps using) to ~1e-6; the router's confidences were float32 already.
// Arguments are clamped to |x·log2 e| ≤ 60 (|x| ≤ 41.6), where σ is within 1e-18 of 0 or 1.
//
// Models too large to unroll sensibly (H·D > MAX_UNROLLED_WEIGHTS) are not compiled; the caller
// keeps the scalar float64 kernel for them.
import type { FastGrnnCell } from '../fastgrnn.js';
import { ensureMemory, instantiate, type WasmMemory } from './runtime.js';
import { Code, I32, V128, encodeModule, type ValType } from './wasm-encoder.js';

/** Weights baked into one module at most (code grows with H·D: one multiply-add per 4 of them). */
export const MAX_UNROLLED_WEIGHTS = 8192;

const LOG2E = Math.LOG2E;
const LN2 = Math.LN2;
/** Taylor coefficients of 2^f = e^(f ln 2): (ln 2)^k / k!. */
const POW2_COEF = Array.from({ length: 8 }, (_, k) => {
  let fact = 1;
  for (let m = 2; m <= k; m++) fact *= m;
  return LN2 ** k / fact;
});


/** 1.5·2^23: adding it to |t| < 2^22 rounds t to an integer held in the low mantissa bits. */
const MAGIC = 12582912;

/**
 * Splatted float32 constants, emitted inline as `v128.const`. (Measured: V8 keeps these in a
 * constant pool and loads them in one instruction; a table in linear memory was ~1.8× slower.)
 */
class Consts {
  emit(c: Code, v: number): Code {
    return c.f32x4Const(v);
  }
}

/**
 * Leaves σ(local y) on the stack: 1 / (1 + exp(−y)), exp as described above. Clobbers K, F.
 * Rounding uses the "magic number" trick instead of f32x4.nearest + i32x4.trunc_sat (which x64
 * lowers to ~8 instructions): s = t + 1.5·2^23 is t rounded, as a float whose bits are
 * bits(1.5·2^23) + k; so k = s − 1.5·2^23 exactly, and (bits(s) + 127) << 23 = (k + 127) << 23
 * (mod 2^32 the magic's own bits shift out) — the bits of 2^k.
 */
function emitSigmoid(c: Code, K: Consts, y: number, k: number, f: number): void {
  // t = clamp(−y · log2 e, ±60) → F;  s = t + MAGIC → K
  c.localGet(y);
  K.emit(c, -LOG2E).f32x4Mul();
  K.emit(c, -60).f32x4Pmax(); // pseudo-min/max: one instruction each; inputs are never NaN
  K.emit(c, 60).f32x4Pmin().localTee(f);
  K.emit(c, MAGIC).f32x4Add().localSet(k);
  // f = t − (s − MAGIC), in [−½, ½]
  c.localGet(f).localGet(k);
  K.emit(c, MAGIC).f32x4Sub().f32x4Sub().localSet(f);
  // p = Σ c_j f^j by Horner
  K.emit(c, POW2_COEF[7]!);
  for (let j = 6; j >= 0; j--) {
    c.localGet(f).f32x4Mul();
    K.emit(c, POW2_COEF[j]!).f32x4Add();
  }
  // 2^k = bits (s + 127) << 23   (127 as an i32 lane: its own constant, not a float)
  c.localGet(k).i32x4Const(127).i32x4Add().i32Const(23).i32x4Shl();
  c.f32x4Mul();
  // 1 / (1 + e)
  K.emit(c, 1).f32x4Add().localSet(f);
  K.emit(c, 1).localGet(f).f32x4Div();
}

/** Dense W (H×D) of the cell in float64, materialising a low-rank W1·W2. */
function denseW(cell: FastGrnnCell): Float64Array {
  if (cell.W) return cell.W;
  const { hiddenDim: H, inputDim: D, rw } = cell;
  const W1 = cell.W1!, W2 = cell.W2!;
  const out = new Float64Array(H * D);
  for (let i = 0; i < H; i++) {
    for (let r = 0; r < rw; r++) {
      const a = W1[i * rw + r]!;
      if (a === 0) continue;
      for (let j = 0; j < D; j++) out[i * D + j] = out[i * D + j]! + a * W2[r * D + j]!;
    }
  }
  return out;
}

/** The module for one cell: score_rows(pFeat, pOut, n). */
export function buildCellModule(cell: FastGrnnCell): Uint8Array {
  return encodeModule(
    [{ name: 'score_rows', params: [I32, I32, I32], results: [], locals: rowsLocals(cell), body: rowsBody(cell, denseW(cell)) }],
    1,
  );
}

// score_rows(pFeat, pOut, n): rows read as they are (row-major, D f32 each), one f32 out per row,
// the f32x4 lanes across HIDDEN UNITS of one candidate (units 4g..4g+3 in group g). Measured
// against lanes across four candidates (the other obvious layout): the same throughput for
// batches — the ⌈H/4⌉ unit groups are independent chains the CPU overlaps — and 4× faster for a
// single candidate, with no transposition and no padding of n.
const R_FEAT = 0, R_OUT = 1, R_N = 2;
function rowsLocals(cell: FastGrnnCell): ValType[] {
  // X_0..X_{D-1} (splatted inputs), A, Y, K, F, Z, C, ACC
  return new Array<ValType>(cell.inputDim + 7).fill(V128);
}

function rowsBody(cell: FastGrnnCell, W: Float64Array): Code {
  const { hiddenDim: H, inputDim: D } = cell;
  const X = 3;
  const A = X + D, Y = A + 1, K = A + 2, F = A + 3, Z = A + 4, C = A + 5, ACC = A + 6;
  const K4 = new Consts();
  const lane4 = (f: (i: number) => number, g: number): [number, number, number, number] =>
    [0, 1, 2, 3].map((l) => (4 * g + l < H ? f(4 * g + l) : 0)) as [number, number, number, number];
  const c = new Code();
  c.block().loop();
  c.localGet(R_N).i32Eqz().brIf(1);
  for (let j = 0; j < D; j++) c.localGet(R_FEAT).f32Load(4 * j).f32x4Splat().localSet(X + j);
  c.v128Const0().localSet(ACC);
  const zs = cell.zetaS, ns = cell.nuS;
  for (let g = 0; g < Math.ceil(H / 4); g++) {
    const fcw = lane4((i) => cell.fcW[i]!, g);
    if (fcw.every((v) => v === 0)) continue; // these units cannot change the score
    let first = true;
    for (let j = 0; j < D; j++) {
      const w = lane4((i) => W[i * D + j]!, g);
      if (w.every((v) => v === 0)) continue;
      c.f32x4Const4(...w).localGet(X + j).f32x4Mul();
      if (!first) c.f32x4Add();
      first = false;
    }
    if (first) c.v128Const0();
    c.localSet(A);
    c.localGet(A).f32x4Const4(...lane4((i) => cell.bz[i]!, g)).f32x4Add().localSet(Y);
    emitSigmoid(c, K4, Y, K, F);
    c.localSet(Z);
    c.localGet(A).f32x4Const4(...lane4((i) => cell.bh[i]!, g)).f32x4Add();
    K4.emit(c, 2).f32x4Mul().localSet(Y);
    emitSigmoid(c, K4, Y, K, F);
    K4.emit(c, 2).f32x4Mul();
    K4.emit(c, -1).f32x4Add().localSet(C);
    c.localGet(ACC);
    K4.emit(c, zs + ns).localGet(Z);
    K4.emit(c, zs).f32x4Mul().f32x4Sub();
    c.localGet(C).f32x4Mul().f32x4Const4(...fcw).f32x4Mul();
    c.f32x4Add().localSet(ACC);
  }
  // logit = fc_b + Σ lanes; σ computed on a splat, lane 0 stored
  c.localGet(ACC).f32x4ExtractLane(0).localGet(ACC).f32x4ExtractLane(1).f32Add();
  c.localGet(ACC).f32x4ExtractLane(2).localGet(ACC).f32x4ExtractLane(3).f32Add().f32Add();
  c.f32Const(cell.fcB).f32Add().f32x4Splat().localSet(Y);
  c.localGet(R_OUT);
  emitSigmoid(c, K4, Y, K, F);
  c.f32x4ExtractLane(0).f32Store();
  c.localGet(R_FEAT).i32Const(4 * D).i32Add().localSet(R_FEAT);
  c.localGet(R_OUT).i32Const(4).i32Add().localSet(R_OUT);
  c.localGet(R_N).i32Const(1).i32Sub().localSet(R_N);
  c.br(0).end().end();
  return c;
}

interface CellKernel {
  memory: WasmMemory;
  scoreRows: (pFeat: number, pOut: number, n: number) => void;
  f32: Float32Array;
  D: number;
}

const kernels = new WeakMap<FastGrnnCell, CellKernel | null>();
let enabled = true;

/** Switch the SIMD cell off (or on) for this thread, e.g. to compare with the scalar kernel. */
export function setCellSimdEnabled(on: boolean): void {
  enabled = on;
}

function kernelFor(cell: FastGrnnCell): CellKernel | null {
  let k = kernels.get(cell);
  if (k !== undefined) return k;
  k = null;
  if (cell.hiddenDim * cell.inputDim <= MAX_UNROLLED_WEIGHTS) {
    const inst = instantiate(buildCellModule(cell));
    if (inst) {
      const memory = inst.exports.memory as WasmMemory;
      k = { memory, scoreRows: inst.exports.score_rows as CellKernel['scoreRows'], f32: new Float32Array(memory.buffer), D: cell.inputDim };
    }
  }
  kernels.set(cell, k);
  return k;
}

/** True when `scoreRowsSimd` will take the SIMD path for this cell. */
export function cellSimdAvailable(cell: FastGrnnCell): boolean {
  return enabled && kernelFor(cell) !== null;
}

/**
 * out[i] = score of the one-step input features[i*D, (i+1)*D) for i < n, like the scalar
 * `scoreRows`. Returns false (and writes nothing) when this cell has no SIMD kernel here; the
 * caller then uses the scalar kernel.
 */
export function scoreRowsSimd(cell: FastGrnnCell, features: ArrayLike<number>, n: number, out: Float32Array | Float64Array): boolean {
  if (!enabled) return false;
  const k = kernelFor(cell);
  if (!k) return false;
  const D = k.D;
  const featBytes = (n * D * 4 + 15) & ~15;
  if (ensureMemory(k.memory, featBytes + n * 4)) k.f32 = new Float32Array(k.memory.buffer);
  const f32 = k.f32;
  if (features instanceof Float32Array) f32.set(features.subarray(0, n * D), 0);
  else for (let i = 0; i < n * D; i++) f32[i] = features[i]!;
  k.scoreRows(0, featBytes, n);
  const o = featBytes >> 2;
  for (let i = 0; i < n; i++) out[i] = f32[o + i]!;
  return true;
}
