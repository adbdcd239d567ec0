// A deliberately tiny WebAssembly binary encoder: just enough of the format (module header,
// type/function/memory/export/code sections, LEB128 integers and the handful of opcodes our
// kernels use) to build a module at load time from TypeScript.
//
// Why hand-assemble: the machine that builds tiny-dancer has no wasm toolchain (no emscripten, no
// wasm32 Rust target), and a checked-in opaque .wasm blob would be unreviewable. The few kernels
// we need fit in ~100 instructions, so emitting them from readable TypeScript keeps the source
// of truth in the repository and the bytes reproducible. Reference: the WebAssembly core spec,
// "Binary Format" chapter, and the fixed-width SIMD proposal (now part of the standard).

/** Value types (binary encoding). */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof F64 | typeof V128;

/** Block type "no result". */
const EMPTY_BLOCK = 0x40;

export function uleb(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`uleb: ${value}`);
  const out: number[] = [];
  let v = value;
  do {
    let byte = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

export function sleb(value: number): number[] {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) throw new RangeError(`sleb: ${value}`);
  const out: number[] = [];
  let v = value;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7; // arithmetic shift keeps the sign, as signed LEB128 requires
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

function utf8Name(name: string): number[] {
  const bytes = [...new TextEncoder().encode(name)];
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

/**
 * Instruction emitter for one function body. Methods append bytes and return `this` so kernels
 * read top to bottom like the text format. Only the opcodes we use are here, each named as in
 * the text format (local.get → localGet, f32x4.add → f32x4Add).
 */
export class Code {
  readonly bytes: number[] = [];

  private op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }

  private simd(opcode: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(opcode), ...imm);
  }

  // control
  block(): this { return this.op(0x02, EMPTY_BLOCK); }
  loop(): this { return this.op(0x03, EMPTY_BLOCK); }
  if_(): this { return this.op(0x04, EMPTY_BLOCK); }
  else_(): this { return this.op(0x05); }
  end(): this { return this.op(0x0b); }
  br(depth: number): this { return this.op(0x0c, ...uleb(depth)); }
  brIf(depth: number): this { return this.op(0x0d, ...uleb(depth)); }
  return_(): this { return this.op(0x0f); }

  // locals
  localGet(i: number): this { return this.op(0x20, ...uleb(i)); }
  localSet(i: number): this { return this.op(0x21, ...uleb(i)); }
  localTee(i: number): this { return this.op(0x22, ...uleb(i)); }

  // constants
  i32Const(v: number): this { return this.op(0x41, ...sleb(v)); }
  f32Const(v: number): this {
    const b = new Uint8Array(new Float32Array([v]).buffer);
    return this.op(0x43, ...b);
  }
  f64Const(v: number): this {
    const b = new Uint8Array(new Float64Array([v]).buffer);
    return this.op(0x44, ...b);
  }

  // memory: memarg = alignment exponent (a hint) and a constant byte offset
  i32Load(offset = 0): this { return this.op(0x28, 2, ...uleb(offset)); }
  i32Store(offset = 0): this { return this.op(0x36, 2, ...uleb(offset)); }
  f32Load(offset = 0): this { return this.op(0x2a, 2, ...uleb(offset)); }
  f32Store(offset = 0): this { return this.op(0x38, 2, ...uleb(offset)); }

  // i32
  i32Eqz(): this { return this.op(0x45); }
  i32LeS(): this { return this.op(0x4c); }
  i32GeU(): this { return this.op(0x4f); }
  i32Add(): this { return this.op(0x6a); }
  i32Sub(): this { return this.op(0x6b); }
  i32Mul(): this { return this.op(0x6c); }
  i32And(): this { return this.op(0x71); }
  i32Shl(): this { return this.op(0x74); }

  // f32
  f32Eq(): this { return this.op(0x5b); }
  f32Ge(): this { return this.op(0x60); }
  f32Le(): this { return this.op(0x5f); }
  f32Add(): this { return this.op(0x92); }
  f32Sub(): this { return this.op(0x93); }
  f32Mul(): this { return this.op(0x94); }
  f32Min(): this { return this.op(0x96); }
  f32Max(): this { return this.op(0x97); }
  f32DemoteF64(): this { return this.op(0xb6); }

  // f64
  f64Sqrt(): this { return this.op(0x9f); }
  f64Mul(): this { return this.op(0xa2); }
  f64Div(): this { return this.op(0xa3); }
  f64PromoteF32(): this { return this.op(0xbb); }

  // v128 / f32x4 (prefix 0xfd, LEB128 sub-opcode)
  v128Load(offset = 0): this { return this.simd(0x00, 4, ...uleb(offset)); }
  /** One f32 (as 32 bits) from memory into all four lanes. */
  v128Load32Splat(offset = 0): this { return this.simd(0x09, 2, ...uleb(offset)); }
  v128Store(offset = 0): this { return this.simd(0x0b, 4, ...uleb(offset)); }
  v128Const0(): this { return this.simd(0x0c, ...new Array<number>(16).fill(0)); }
  /** v128.const with the same f32 in all four lanes. */
  f32x4Const(v: number): this {
    const lane = [...new Uint8Array(new Float32Array([v]).buffer)];
    return this.simd(0x0c, ...lane, ...lane, ...lane, ...lane);
  }
  /** v128.const with four f32 lanes. */
  f32x4Const4(a: number, b: number, c: number, d: number): this {
    return this.simd(0x0c, ...new Uint8Array(new Float32Array([a, b, c, d]).buffer));
  }
  f32x4Splat(): this { return this.simd(0x13); }
  /** v128.const with the same i32 in all four lanes. */
  i32x4Const(v: number): this {
    const lane = [...new Uint8Array(new Int32Array([v]).buffer)];
    return this.simd(0x0c, ...lane, ...lane, ...lane, ...lane);
  }
  f32x4Nearest(): this { return this.simd(0x6a); }
  i32x4Shl(): this { return this.simd(0xab); }
  i32x4Add(): this { return this.simd(0xae); }
  i32x4Sub(): this { return this.simd(0xb1); }
  /** Lane-wise signed a < b: all ones where true, zero where false. */
  i32x4LtS(): this { return this.simd(0x39); }
  i32x4ExtractLane(lane: 0 | 1 | 2 | 3): this { return this.simd(0x1b, lane); }
  f32x4Div(): this { return this.simd(0xe7); }
  f32x4Min(): this { return this.simd(0xe8); }
  f32x4Max(): this { return this.simd(0xe9); }
  /** Pseudo-min b < a ? b : a — one minps on x64, unlike f32x4.min's NaN-exact sequence. */
  f32x4Pmin(): this { return this.simd(0xea); }
  f32x4Pmax(): this { return this.simd(0xeb); }
  i32x4TruncSatF32x4S(): this { return this.simd(0xf8); }
  f32x4ExtractLane(lane: 0 | 1 | 2 | 3): this { return this.simd(0x1f, lane); }
  f32x4Add(): this { return this.simd(0xe4); }
  /** v128.const with two f64 lanes. */
  f64x2Const2(a: number, b: number): this {
    return this.simd(0x0c, ...new Uint8Array(new Float64Array([a, b]).buffer));
  }
  f64x2Add(): this { return this.simd(0xf0); }
  f64x2Mul(): this { return this.simd(0xf2); }
  /** The low two f32 lanes widened to f64x2. */
  f64x2PromoteLowF32x4(): this { return this.simd(0x5f); }
  /** f64x2 narrowed into the low two f32 lanes, the high two zero. */
  f32x4DemoteF64x2Zero(): this { return this.simd(0x5e); }
  /** Lanes of two vectors picked by 16 byte indices (0–15 the first, 16–31 the second). */
  i8x16Shuffle(lanes: number[]): this { return this.op(0xfd, 0x0d, ...lanes); }
  f32x4Sub(): this { return this.simd(0xe5); }
  f32x4Mul(): this { return this.simd(0xe6); }
}

export interface FuncDef {
  name: string;
  params: ValType[];
  results: ValType[];
  /** Extra locals, numbered after the params in this order. */
  locals: ValType[];
  body: Code;
}

/**
 * One module: its own memory (exported as "memory", `minPages` 64 KiB pages, growable from JS)
 * and the given functions, each exported under its name.
 */
export function encodeModule(funcs: FuncDef[], minPages: number): Uint8Array {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))]);
  const typeSec = section(1, vec(types));
  const funcSec = section(3, vec(funcs.map((_, i) => uleb(i))));
  const memSec = section(5, vec([[0x00, ...uleb(minPages)]]));
  const exports = [[...utf8Name('memory'), 0x02, 0x00], ...funcs.map((f, i) => [...utf8Name(f.name), 0x00, ...uleb(i)])];
  const exportSec = section(7, vec(exports));
  const bodies = funcs.map((f) => {
    // Locals are run-length encoded: (count, type) for each run of equal types.
    const runs: number[][] = [];
    let k = 0;
    while (k < f.locals.length) {
      const t = f.locals[k]!;
      let m = k;
      while (m < f.locals.length && f.locals[m] === t) m++;
      runs.push([...uleb(m - k), t]);
      k = m;
    }
    const body = [...vec(runs), ...f.body.bytes, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const codeSec = section(10, vec(bodies));
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  return new Uint8Array([...header, ...typeSec, ...funcSec, ...memSec, ...exportSec, ...codeSec]);
}
