// The FastGRNN cell of docs/contracts.md §3 for routing (T = 1, h_0 = 0), as WebAssembly SIMD compiled per
// model, over a whole batch in one call.
//
// WHY this shape. With T = 1 the recurrent term vanishes (U·h_0 = 0, z ⊙ h_0 = 0): the cell over
// a batch is the product (n × D)·(D × H) followed by element-wise gates, per hidden unit i
//   a = W_i · x;  z = σ(a + b_z,i);  c = tanh(a + b_h,i);  h_i = (σ(ζ)(1 − z) + σ(ν)) · c
//   score = σ(fc_b + Σ_i fc_w,i · h_i)
// — a fixed, branch-free dataflow for a given model. So the module is generated per model:
// - The f32x4 lanes run over HIDDEN UNITS (four per vector), every weight a v128 constant baked
//   into the code (zero columns skipped, so pruned models get cheaper). The ⌈H/4⌉ unit groups of
//   a candidate are independent dependency chains the CPU overlaps, a single candidate costs a
//   quarter of what lanes across candidates would, and rows are read as they are (no transpose,
//   no padding of n).
// - Dead units are removed first: a unit with fc_w,i = 0 cannot change the score, and a unit
//   whose W row is zero has a = 0 for every input, so its fc_w,i·h_i is a constant folded into
//   fc_b (computed once in float64). Pruned, quantised models have many of both.
// - The activations are the vector σ of activations.ts, with its −log2 e factor and the biases
//   folded into the weights: t_z = −log2e·a − log2e·b_z, t_c = 2·(−log2e·a) − 2·log2e·b_h, then
//   z = 1/(1 + 2^t_z), c = 2/(1 + 2^t_c) − 1, and fc_w,i·h_i = (α_i − β_i·z)(2σ_c − 1) with
//   α = fc_w·(σ(ζ) + σ(ν)), β = fc_w·σ(ζ) per lane.
// - The loop over the batch is inside the module (one call per batch, no per-candidate call
//   overhead); each candidate ends with one horizontal sum, and the final σ of the logits runs
//   afterwards over four candidates per vector.
// Compiling costs about a millisecond and happens once per model (cached per cell object), on
// the thread that scores.
//
// Precision: the pre-activations W·x + b in float64 (two units per f64x2), narrowed to f32x4
// for the activations; σ/tanh within a few float32 ulps of exact (activations.ts). Scores agree
// with the float64 cell (fastgrnn.ts, which `model score` keeps using) to ~1e-7.
//
// Models too large to unroll sensibly (H·D > MAX_UNROLLED_WEIGHTS) are not compiled; the caller
// keeps the scalar float64 kernel for them (as it does on hosts without WebAssembly SIMD).
import type { FastGrnnCell } from '../fastgrnn.js';
import { LOG2E, emitSigmoidOfT } from './activations.js';
import { ensureMemory, instantiate, type WasmMemory } from './runtime.js';
import { Code, I32, V128, encodeModule, type ValType } from './wasm-encoder.js';

/** Weights baked into one module at most (code grows with H·D: one multiply-add per 4 of them). */
export const MAX_UNROLLED_WEIGHTS = 8192;

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

/** The one-step cell reduced to its live units, with the constants the kernel bakes in. */
interface T1Plan {
  D: number;
  /** Live units, each: −log2e·W row, −log2e·b_z, −2·log2e·b_h, α, β. */
  units: { w: number[]; tz: number; tc: number; alpha: number; beta: number }[];
  /** fc_b plus the constant contributions of units whose W row is zero. */
  fcB: number;
}

function planT1(cell: FastGrnnCell): T1Plan {
  const { hiddenDim: H, inputDim: D, zetaS: zs, nuS: ns } = cell;
  const W = denseW(cell);
  const units: T1Plan['units'] = [];
  let fcB = cell.fcB;
  for (let i = 0; i < H; i++) {
    const f = cell.fcW[i]!;
    if (f === 0) continue;
    const row = Array.from(W.subarray(i * D, (i + 1) * D));
    if (row.every((v) => v === 0)) {
      const z = 1 / (1 + Math.exp(-cell.bz[i]!));
      fcB += f * ((zs * (1 - z) + ns) * Math.tanh(cell.bh[i]!));
      continue;
    }
    units.push({
      w: row.map((v) => -LOG2E * v),
      tz: -LOG2E * cell.bz[i]!,
      tc: -2 * LOG2E * cell.bh[i]!,
      alpha: f * (zs + ns),
      beta: f * zs,
    });
  }
  return { D, units, fcB };
}

/** The module for one cell: score_rows(pFeat, pOut, n). */
export function buildCellModule(cell: FastGrnnCell): Uint8Array {
  const plan = planT1(cell);
  const used = usedColumns(plan);
  return encodeModule(
    [{ name: 'score_rows', params: [I32, I32, I32], results: [], locals: rowsLocals(used.length), body: rowsBody(plan, used) }],
    1,
  );
}

function usedColumns(plan: T1Plan): number[] {
  const cols: number[] = [];
  for (let j = 0; j < plan.D; j++) if (plan.units.some((u) => u.w[j] !== 0)) cols.push(j);
  return cols;
}

// score_rows(pFeat, pOut, n): rows read as they are (row-major, D f32 each); out gets one f32 per
// row and must have room for n rounded up to a multiple of 4 (the final σ pass is vectorised).
const R_FEAT = 0, R_OUT = 1, R_N = 2;
// i32 locals: OUT0, LEFT; then v128: X_0..X_{u-1} (used inputs, f64x2 splats), A, TZ (2), TC (2),
// K, Z, ACC
const OUT0 = 3, LEFT = 4, X = 5;
function rowsLocals(usedCount: number): ValType[] {
  return [I32, I32, ...new Array<ValType>(usedCount + 8).fill(V128)];
}
/** i8x16.shuffle lanes: the low 8 bytes of the first vector, then the low 8 of the second. */
const LOW_HALVES = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];

function rowsBody(plan: T1Plan, used: number[]): Code {
  const D = plan.D;
  const A = X + used.length, TZ = A + 1, TC = A + 3, K = A + 5, Z = A + 6, ACC = A + 7;
  const groups = Math.ceil(plan.units.length / 4);
  const lane4 = (g: number, f: (u: T1Plan['units'][number]) => number): [number, number, number, number] =>
    [0, 1, 2, 3].map((l) => {
      const u = plan.units[4 * g + l];
      return u ? f(u) : 0; // padding lanes: all-zero weights, α = β = 0, so they add exactly 0
    }) as [number, number, number, number];
  const c = new Code();
  c.localGet(R_OUT).localSet(OUT0);
  c.localGet(R_N).localSet(LEFT);
  c.block().loop();
  c.localGet(LEFT).i32Eqz().brIf(1);
  c.localGet(R_OUT); // address for the logit's store below
  used.forEach((j, k) => c.localGet(R_FEAT).v128Load32Splat(4 * j).f64x2PromoteLowF32x4().localSet(X + k));
  for (let g = 0; g < groups; g++) {
    // t_z and t_c in float64, two units per f64x2, then narrowed into one f32x4 each
    for (let h = 0; h < 2; h++) {
      const pair = (f: (u: T1Plan['units'][number]) => number): [number, number] => {
        const l = lane4(g, f);
        return [l[2 * h]!, l[2 * h + 1]!];
      };
      let first = true;
      used.forEach((j, k) => {
        const w = pair((u) => u.w[j]!);
        if (w[0] === 0 && w[1] === 0) return;
        c.f64x2Const2(...w).localGet(X + k).f64x2Mul();
        if (!first) c.f64x2Add();
        first = false;
      });
      if (first) c.v128Const0();
      c.localTee(A).f64x2Const2(...pair((u) => u.tz)).f64x2Add().localSet(TZ + h);
      c.localGet(A).localGet(A).f64x2Add().f64x2Const2(...pair((u) => u.tc)).f64x2Add().localSet(TC + h);
    }
    for (const T of [TZ, TC]) {
      c.localGet(T).f32x4DemoteF64x2Zero().localGet(T + 1).f32x4DemoteF64x2Zero();
      c.i8x16Shuffle(LOW_HALVES).localSet(T);
    }
    emitSigmoidOfT(c, TZ, K);
    c.localSet(Z);
    // (α − β·z) · (2σ_c − 1)
    c.f32x4Const4(...lane4(g, (u) => u.alpha)).f32x4Const4(...lane4(g, (u) => u.beta)).localGet(Z).f32x4Mul().f32x4Sub();
    emitSigmoidOfT(c, TC, K);
    c.f32x4Const(2).f32x4Mul().f32x4Const(1).f32x4Sub().f32x4Mul();
    if (g > 0) c.localGet(ACC).f32x4Add();
    c.localSet(ACC);
  }
  // logit = fc_b + Σ lanes, stored; σ comes in the vector pass below
  if (groups === 0) c.f32Const(plan.fcB);
  else {
    c.localGet(ACC).f32x4ExtractLane(0).localGet(ACC).f32x4ExtractLane(1).f32Add();
    c.localGet(ACC).f32x4ExtractLane(2).localGet(ACC).f32x4ExtractLane(3).f32Add().f32Add();
    c.f32Const(plan.fcB).f32Add();
  }
  c.f32Store();
  c.localGet(R_FEAT).i32Const(4 * D).i32Add().localSet(R_FEAT);
  c.localGet(R_OUT).i32Const(4).i32Add().localSet(R_OUT);
  c.localGet(LEFT).i32Const(1).i32Sub().localSet(LEFT);
  c.br(0).end().end();
  // score = σ(logit), four candidates per vector: t = −log2e · logit
  c.block().loop();
  c.localGet(R_N).i32Const(0).i32LeS().brIf(1);
  c.localGet(OUT0);
  c.localGet(OUT0).v128Load().f32x4Const(-LOG2E).f32x4Mul().localSet(TZ);
  emitSigmoidOfT(c, TZ, K);
  c.v128Store();
  c.localGet(OUT0).i32Const(16).i32Add().localSet(OUT0);
  c.localGet(R_N).i32Const(4).i32Sub().localSet(R_N);
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
  // the kernel's last σ pass writes whole vectors: room for n rounded up to 4
  if (ensureMemory(k.memory, featBytes + ((n + 3) & ~3) * 4)) k.f32 = new Float32Array(k.memory.buffer);
  const f32 = k.f32;
  // One memcpy when the caller hands exactly the n rows as a Float32Array (the Router does);
  // otherwise an element loop rather than set(subarray), whose view object per call is garbage.
  if (features instanceof Float32Array && features.length === n * D) f32.set(features);
  else for (let i = 0; i < n * D; i++) f32[i] = features[i]!;
  k.scoreRows(0, featBytes, n);
  const o = featBytes >> 2;
  for (let i = 0; i < n; i++) out[i] = f32[o + i]!;
  return true;
}
