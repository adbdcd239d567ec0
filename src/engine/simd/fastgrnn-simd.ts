// The FastGRNN cell of SPEC §3 for routing (T = 1, h_0 = 0), as WebAssembly SIMD compiled per
// model: four candidates per f32x4 vector, every weight baked into the code as a constant.
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

/** Weights baked into one module at most (H·D multiply-adds of code per 4 candidates). */
export const MAX_UNROLLED_WEIGHTS = 8192;

const LOG2E = Math.LOG2E;
const LN2 = Math.LN2;
/** Taylor coefficients of 2^f = e^(f ln 2): (ln 2)^k / k!. */
const POW2_COEF = Array.from({ length: 8 }, (_, k) => {
  let fact = 1;
  for (let m = 2; m <= k; m++) fact *= m;
  return LN2 ** k / fact;
});

// params
const P_FEAT = 0, P_OUT = 1, P_GROUPS = 2;
// v128 locals after the params: X_0..X_{D-1} first, then these (offsets from 3 + D)
const L_A = 0, L_Y = 1, L_K = 2, L_F = 3, L_Z = 4, L_C = 5, L_LOGIT = 6;
const EXTRA_LOCALS = 7;

/**
 * Leaves σ(local y) on the stack: 1 / (1 + exp(−y)), exp as described above. Clobbers K, F.
 */
function emitSigmoid(c: Code, y: number, k: number, f: number): void {
  // t = clamp(−y · log2 e, ±60); k = nearest(t); f = t − k
  c.localGet(y).f32x4Const(-LOG2E).f32x4Mul().f32x4Const(-60).f32x4Max().f32x4Const(60).f32x4Min().localTee(f);
  c.f32x4Nearest().localSet(k);
  c.localGet(f).localGet(k).f32x4Sub().localSet(f);
  // p = Σ c_j f^j by Horner
  c.f32x4Const(POW2_COEF[7]!);
  for (let j = 6; j >= 0; j--) c.localGet(f).f32x4Mul().f32x4Const(POW2_COEF[j]!).f32x4Add();
  // 2^k from the exponent bits: (k + 127) << 23
  c.localGet(k).i32x4TruncSatF32x4S().i32x4Const(127).i32x4Add().i32Const(23).i32x4Shl();
  c.f32x4Mul();
  // 1 / (1 + e)
  c.f32x4Const(1).f32x4Add().localSet(f);
  c.f32x4Const(1).localGet(f).f32x4Div();
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

/** The module for one cell: score(pFeat, pOut, groups), features transposed in groups of 4. */
export function buildCellModule(cell: FastGrnnCell): Uint8Array {
  const { hiddenDim: H, inputDim: D } = cell;
  const W = denseW(cell);
  const base = 3 + D;
  const A = base + L_A, Y = base + L_Y, K = base + L_K, F = base + L_F, Z = base + L_Z, C = base + L_C, LOGIT = base + L_LOGIT;
  const locals: ValType[] = new Array<ValType>(D + EXTRA_LOCALS).fill(V128);
  const c = new Code();
  c.block().loop();
  c.localGet(P_GROUPS).i32Eqz().brIf(1);
  for (let j = 0; j < D; j++) c.localGet(P_FEAT).v128Load(16 * j).localSet(3 + j);
  c.f32x4Const(cell.fcB).localSet(LOGIT);
  const zs = cell.zetaS, ns = cell.nuS;
  for (let i = 0; i < H; i++) {
    const fcw = cell.fcW[i]!;
    if (fcw === 0) continue; // this unit cannot change the score
    // a = W_i · x
    let first = true;
    for (let j = 0; j < D; j++) {
      const w = W[i * D + j]!;
      if (w === 0) continue;
      c.f32x4Const(w).localGet(3 + j).f32x4Mul();
      if (!first) c.f32x4Add();
      first = false;
    }
    if (first) c.v128Const0();
    c.localSet(A);
    // z = σ(a + b_z)
    c.localGet(A).f32x4Const(cell.bz[i]!).f32x4Add().localSet(Y);
    emitSigmoid(c, Y, K, F);
    c.localSet(Z);
    // c = tanh(a + b_h) = 2σ(2(a + b_h)) − 1
    c.localGet(A).f32x4Const(cell.bh[i]!).f32x4Add().f32x4Const(2).f32x4Mul().localSet(Y);
    emitSigmoid(c, Y, K, F);
    c.f32x4Const(2).f32x4Mul().f32x4Const(-1).f32x4Add().localSet(C);
    // logit += fc_w,i · (σ(ζ)(1 − z) + σ(ν)) · c   with σ(ζ)(1 − z) + σ(ν) = (σ(ζ) + σ(ν)) − σ(ζ)·z
    c.localGet(LOGIT);
    c.f32x4Const(zs + ns).localGet(Z).f32x4Const(zs).f32x4Mul().f32x4Sub();
    c.localGet(C).f32x4Mul().f32x4Const(fcw).f32x4Mul();
    c.f32x4Add().localSet(LOGIT);
  }
  // out = σ(logit)
  c.localGet(P_OUT);
  emitSigmoid(c, LOGIT, K, F);
  c.v128Store();
  c.localGet(P_FEAT).i32Const(16 * D).i32Add().localSet(P_FEAT);
  c.localGet(P_OUT).i32Const(16).i32Add().localSet(P_OUT);
  c.localGet(P_GROUPS).i32Const(1).i32Sub().localSet(P_GROUPS);
  c.br(0).end().end();
  return encodeModule([{ name: 'score', params: [I32, I32, I32], results: [], locals, body: c }], 1);
}

interface CellKernel {
  memory: WasmMemory;
  score: (pFeat: number, pOut: number, groups: number) => void;
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
      k = { memory, score: inst.exports.score as CellKernel['score'], f32: new Float32Array(memory.buffer), D: cell.inputDim };
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
  const groups = (n + 3) >> 2;
  const featBytes = groups * D * 16;
  if (ensureMemory(k.memory, featBytes + groups * 16)) k.f32 = new Float32Array(k.memory.buffer);
  const f32 = k.f32;
  // transpose rows into [group][feature][lane]; pad the last group's missing lanes with 0
  for (let i = 0; i < n; i++) {
    const dst = (i >> 2) * D * 4 + (i & 3);
    const src = i * D;
    for (let j = 0; j < D; j++) f32[dst + j * 4] = features[src + j]!;
  }
  for (let i = n; i < groups * 4; i++) {
    const dst = (i >> 2) * D * 4 + (i & 3);
    for (let j = 0; j < D; j++) f32[dst + j * 4] = 0;
  }
  k.score(0, featBytes, groups);
  const o = featBytes >> 2;
  for (let i = 0; i < n; i++) out[i] = f32[o + i]!;
  return true;
}
