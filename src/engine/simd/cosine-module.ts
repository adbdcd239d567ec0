// The WebAssembly SIMD cosine kernel, assembled with ./wasm-encoder.ts.
//
// Exported function (wasm signature (i32 q, i32 e, i32 n, i32 dim, i32 out) -> i32):
//   q    byte address of the query, `dim` f32
//   e    byte address of n packed candidate embeddings, candidate i at e + i*dim*4
//   out  byte address of n f32 results
// For every candidate it accumulates dot(q, e_i) and ||e_i||² in f32x4 lanes and writes
//   cos_i = clamp(dot / (||q||·||e_i||), -1, 1)      (the division done in f64)
// Return value: the number of candidates it could NOT score precisely; those get NaN in `out`
// and the caller recomputes them in float64. Returns -1 when the query itself is out of range
// (then nothing is written). "Out of range" means ||x||² outside [1e-25, 1e30]: below, f32
// squares may have lost everything to underflow (and an all-zero vector lands here, whose cosine
// is defined as 0 by the float64 path); above, f32 sums may have overflowed. Real embeddings
// (unit-ish norms) never leave the range, so the fallback costs nothing in practice but keeps
// the kernel exact for any finite input docs/contracts.md §1 allows.
//
// Shape of the hot loop: 16 floats per iteration in four independent vector accumulators for
// the dot product and four for the squared norm (eight dependency chains hide the add latency),
// then a 4-float loop, then a scalar tail, so any dim ≥ 1 works. The embedding pointer simply
// keeps advancing across candidates because they are packed back to back.
import { Code, I32, F32, F64, V128, encodeModule, type ValType } from './wasm-encoder.js';

// locals (params first)
const Q = 0, E = 1, N = 2, DIM = 3, OUT = 4;
const PQ = 5, PE = 6, END16 = 7, END4 = 8, END_ALL = 9, LEN = 10, FLAGGED = 11, LEFT = 12;
const DOT = 13, EE = 14, X = 15;
const QNORM = 16;
const D = [17, 18, 19, 20] as const;
const S = [21, 22, 23, 24] as const;
const T = 25;

const LOCALS: ValType[] = [
  I32, I32, I32, I32, I32, I32, I32, I32, // PQ..LEFT
  F32, F32, F32, // DOT, EE, X
  F64, // QNORM
  V128, V128, V128, V128, V128, V128, V128, V128, V128, // D0-3, S0-3, T
];

const MIN_SQ_NORM = 1e-25;
const MAX_SQ_NORM = 1e30;

/** dot(q, e) → DOT and ||e||² → EE, reading from PQ (reset to Q) and PE (advanced past e). */
function emitSums(c: Code): void {
  for (const v of [...D, ...S]) c.v128Const0().localSet(v);
  c.localGet(Q).localSet(PQ);
  // 16 floats (64 bytes) per iteration
  c.block().loop();
  c.localGet(PQ).localGet(END16).i32GeU().brIf(1);
  for (const k of [0, 1, 2, 3] as const) {
    const off = 16 * k;
    c.localGet(D[k]).localGet(PQ).v128Load(off).localGet(PE).v128Load(off).localTee(T).f32x4Mul().f32x4Add().localSet(D[k]);
    c.localGet(S[k]).localGet(T).localGet(T).f32x4Mul().f32x4Add().localSet(S[k]);
  }
  c.localGet(PQ).i32Const(64).i32Add().localSet(PQ);
  c.localGet(PE).i32Const(64).i32Add().localSet(PE);
  c.br(0).end().end();
  // fold the four chains into one
  c.localGet(D[0]).localGet(D[1]).f32x4Add().localGet(D[2]).localGet(D[3]).f32x4Add().f32x4Add().localSet(D[0]);
  c.localGet(S[0]).localGet(S[1]).f32x4Add().localGet(S[2]).localGet(S[3]).f32x4Add().f32x4Add().localSet(S[0]);
  // 4 floats per iteration
  c.block().loop();
  c.localGet(PQ).localGet(END4).i32GeU().brIf(1);
  c.localGet(D[0]).localGet(PQ).v128Load().localGet(PE).v128Load().localTee(T).f32x4Mul().f32x4Add().localSet(D[0]);
  c.localGet(S[0]).localGet(T).localGet(T).f32x4Mul().f32x4Add().localSet(S[0]);
  c.localGet(PQ).i32Const(16).i32Add().localSet(PQ);
  c.localGet(PE).i32Const(16).i32Add().localSet(PE);
  c.br(0).end().end();
  // horizontal sums
  for (const [vec, scalar] of [[D[0], DOT], [S[0], EE]] as const) {
    c.localGet(vec).f32x4ExtractLane(0).localGet(vec).f32x4ExtractLane(1).f32Add();
    c.localGet(vec).f32x4ExtractLane(2).localGet(vec).f32x4ExtractLane(3).f32Add();
    c.f32Add().localSet(scalar);
  }
  // scalar tail (dim % 4 values)
  c.block().loop();
  c.localGet(PQ).localGet(END_ALL).i32GeU().brIf(1);
  c.localGet(PE).f32Load().localSet(X);
  c.localGet(DOT).localGet(PQ).f32Load().localGet(X).f32Mul().f32Add().localSet(DOT);
  c.localGet(EE).localGet(X).localGet(X).f32Mul().f32Add().localSet(EE);
  c.localGet(PQ).i32Const(4).i32Add().localSet(PQ);
  c.localGet(PE).i32Const(4).i32Add().localSet(PE);
  c.br(0).end().end();
}

/** Pushes 1 when local `sq` (f32) lies in [MIN_SQ_NORM, MAX_SQ_NORM], else 0 (also for NaN). */
function emitInRange(c: Code, sq: number): void {
  c.localGet(sq).f32Const(MIN_SQ_NORM).f32Ge().localGet(sq).f32Const(MAX_SQ_NORM).f32Le().i32And();
}

function cosineBody(): Code {
  const c = new Code();
  c.localGet(DIM).i32Const(2).i32Shl().localSet(LEN);
  c.localGet(Q).localGet(LEN).i32Const(-64).i32And().i32Add().localSet(END16);
  c.localGet(Q).localGet(LEN).i32Const(-16).i32And().i32Add().localSet(END4);
  c.localGet(Q).localGet(LEN).i32Add().localSet(END_ALL);
  // ||q||² through the same loop (q against itself)
  c.localGet(Q).localSet(PE);
  emitSums(c);
  emitInRange(c, DOT);
  c.i32Eqz().if_().i32Const(-1).return_().end();
  c.localGet(DOT).f64PromoteF32().f64Sqrt().localSet(QNORM);
  // candidates
  c.localGet(E).localSet(PE);
  c.localGet(N).localSet(LEFT);
  c.i32Const(0).localSet(FLAGGED);
  c.block().loop();
  c.localGet(LEFT).i32Eqz().brIf(1);
  emitSums(c);
  emitInRange(c, EE);
  c.if_();
  c.localGet(OUT);
  c.localGet(DOT).f64PromoteF32();
  c.localGet(QNORM).localGet(EE).f64PromoteF32().f64Sqrt().f64Mul();
  c.f64Div().f32DemoteF64().f32Const(1).f32Min().f32Const(-1).f32Max();
  c.f32Store();
  c.else_();
  c.localGet(OUT).f32Const(Number.NaN).f32Store();
  c.localGet(FLAGGED).i32Const(1).i32Add().localSet(FLAGGED);
  c.end();
  c.localGet(OUT).i32Const(4).i32Add().localSet(OUT);
  c.localGet(LEFT).i32Const(1).i32Sub().localSet(LEFT);
  c.br(0).end().end();
  c.localGet(FLAGGED);
  return c;
}

// all_finite(p, count) -> i32: 1 when all `count` f32 at byte address p are finite, else 0.
// x − x is 0 for every finite x and NaN for ±Infinity and NaN, and NaN survives any sum, so
// four vector accumulators of (x − x) plus a scalar one for the tail decide it in one pass with
// no branch per value (bad input is rare; the caller finds the exact index in plain JS then).
const FP = 0, FCOUNT = 1;
const FEND16 = 2, FEND4 = 3, FEND = 4;
const FS = 5;
const FA = [6, 7, 8, 9] as const;
const FT = 10;
const FINITE_LOCALS: ValType[] = [I32, I32, I32, F32, V128, V128, V128, V128, V128];

function allFiniteBody(): Code {
  const c = new Code();
  c.localGet(FP).localGet(FCOUNT).i32Const(2).i32Shl().i32Const(-64).i32And().i32Add().localSet(FEND16);
  c.localGet(FP).localGet(FCOUNT).i32Const(2).i32Shl().i32Const(-16).i32And().i32Add().localSet(FEND4);
  c.localGet(FP).localGet(FCOUNT).i32Const(2).i32Shl().i32Add().localSet(FEND);
  for (const a of FA) c.v128Const0().localSet(a);
  c.f32Const(0).localSet(FS);
  c.block().loop();
  c.localGet(FP).localGet(FEND16).i32GeU().brIf(1);
  for (const k of [0, 1, 2, 3] as const) {
    c.localGet(FA[k]).localGet(FP).v128Load(16 * k).localTee(FT).localGet(FT).f32x4Sub().f32x4Add().localSet(FA[k]);
  }
  c.localGet(FP).i32Const(64).i32Add().localSet(FP);
  c.br(0).end().end();
  c.localGet(FA[0]).localGet(FA[1]).f32x4Add().localGet(FA[2]).localGet(FA[3]).f32x4Add().f32x4Add().localSet(FA[0]);
  c.block().loop();
  c.localGet(FP).localGet(FEND4).i32GeU().brIf(1);
  c.localGet(FA[0]).localGet(FP).v128Load().localTee(FT).localGet(FT).f32x4Sub().f32x4Add().localSet(FA[0]);
  c.localGet(FP).i32Const(16).i32Add().localSet(FP);
  c.br(0).end().end();
  c.block().loop();
  c.localGet(FP).localGet(FEND).i32GeU().brIf(1);
  c.localGet(FS).localGet(FP).f32Load().localGet(FP).f32Load().f32Sub().f32Add().localSet(FS);
  c.localGet(FP).i32Const(4).i32Add().localSet(FP);
  c.br(0).end().end();
  for (const lane of [0, 1, 2, 3] as const) c.localGet(FS).localGet(FA[0]).f32x4ExtractLane(lane).f32Add().localSet(FS);
  c.localGet(FS).localGet(FS).f32Eq();
  return c;
}

/**
 * The module bytes: memory "memory" (1 page to start, grown by the host), "cosine_batch" and
 * "all_finite".
 */
export function buildCosineModule(): Uint8Array {
  return encodeModule(
    [
      { name: 'cosine_batch', params: [I32, I32, I32, I32, I32], results: [I32], locals: LOCALS, body: cosineBody() },
      { name: 'all_finite', params: [I32, I32], results: [I32], locals: FINITE_LOCALS, body: allFiniteBody() },
    ],
    1,
  );
}
