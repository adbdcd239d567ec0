// The WebAssembly SIMD kernel that ranks a small request's candidates by counting.
//
// Exported function rank_count(pKeys, n, pOrder, pCounts), all byte addresses:
//   pKeys    n i32 keys, then padding up to a multiple of 16 with 0x7fffffff (larger than any key)
//   pOrder   n i32 written: the candidate indices, keys ascending, ties by index ascending
//   pCounts  n i32 of scratch
// Candidate i's place is the number of keys below its own, r_i = #{j : k_j < k_i}, plus the
// number of earlier candidates with the same key. The first term is counted four keys per
// i32x4 comparison (a lane that compares true is −1, subtracted from the count); the second is
// a counter per place, since candidates with equal keys share r_i and are visited in index
// order: the first takes r_i, the next r_i + 1, and so on.
//
// WHY counting and not a sort: n² comparisons, but branch-free and four per instruction, where
// a comparison sort's n·log n branches mispredict about half the time on scores in random
// order. Up to a few hundred candidates the count wins; beyond, the comparison sort in rank.ts
// (the two cross near 700 candidates).
import { Code, I32, V128, encodeModule, type ValType } from './wasm-encoder.js';

const P_KEYS = 0, P_N = 1, P_ORDER = 2, P_COUNTS = 3;
const I = 4, PK = 5, PJ = 6, END = 7, R = 8, C = 9;
const KI = 10, A0 = 11, A1 = 12;
const LOCALS: ValType[] = [I32, I32, I32, I32, I32, I32, V128, V128, V128];

function rankBody(): Code {
  const c = new Code();
  // counters to zero
  c.localGet(P_COUNTS).localSet(PJ);
  c.localGet(P_COUNTS).localGet(P_N).i32Const(2).i32Shl().i32Add().localSet(END);
  c.block().loop();
  c.localGet(PJ).localGet(END).i32GeU().brIf(1);
  c.localGet(PJ).i32Const(0).i32Store();
  c.localGet(PJ).i32Const(4).i32Add().localSet(PJ);
  c.br(0).end().end();
  // END: past the padded keys
  c.localGet(P_KEYS).localGet(P_N).i32Const(15).i32Add().i32Const(-16).i32And().i32Const(2).i32Shl().i32Add().localSet(END);
  c.localGet(P_KEYS).localSet(PK);
  c.i32Const(0).localSet(I);
  c.block().loop();
  c.localGet(I).localGet(P_N).i32GeU().brIf(1);
  c.localGet(PK).v128Load32Splat().localSet(KI);
  c.v128Const0().localSet(A0);
  c.v128Const0().localSet(A1);
  c.localGet(P_KEYS).localSet(PJ);
  // sixteen keys per iteration, two accumulators
  c.block().loop();
  c.localGet(PJ).localGet(END).i32GeU().brIf(1);
  for (const [acc, off] of [[A0, 0], [A1, 16], [A0, 32], [A1, 48]] as const) {
    c.localGet(acc).localGet(PJ).v128Load(off).localGet(KI).i32x4LtS().i32x4Sub().localSet(acc);
  }
  c.localGet(PJ).i32Const(64).i32Add().localSet(PJ);
  c.br(0).end().end();
  c.localGet(A0).localGet(A1).i32x4Add().localSet(A0);
  c.localGet(A0).i32x4ExtractLane(0).localGet(A0).i32x4ExtractLane(1).i32Add();
  c.localGet(A0).i32x4ExtractLane(2).localGet(A0).i32x4ExtractLane(3).i32Add().i32Add();
  c.i32Const(2).i32Shl().localSet(R); // as a byte offset
  // C = counts[r]; counts[r] = C + 1; order[r + C] = i
  c.localGet(P_COUNTS).localGet(R).i32Add().i32Load().localSet(C);
  c.localGet(P_COUNTS).localGet(R).i32Add().localGet(C).i32Const(1).i32Add().i32Store();
  c.localGet(P_ORDER).localGet(R).i32Add().localGet(C).i32Const(2).i32Shl().i32Add().localGet(I).i32Store();
  c.localGet(I).i32Const(1).i32Add().localSet(I);
  c.localGet(PK).i32Const(4).i32Add().localSet(PK);
  c.br(0).end().end();
  return c;
}

/** The module bytes: memory "memory" (one page) and "rank_count". */
export function buildRankModule(): Uint8Array {
  return encodeModule([{ name: 'rank_count', params: [I32, I32, I32, I32], results: [], locals: LOCALS, body: rankBody() }], 1);
}
