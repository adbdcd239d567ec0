import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelError } from '../../../src/errors.js';
import {
  DTYPE_SIZE, readSafetensors, toFloat64Array, writeSafetensors, type DType, type Tensor,
} from '../../../src/engine/safetensors.js';

const enc = new TextEncoder();

/** Builds a file from a raw header string and data bytes (no validation: for hostile input). */
function rawFile(header: string, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): Uint8Array {
  const h = enc.encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lenOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function expectModelError(bytes: Uint8Array, pattern?: RegExp): void {
  let thrown: unknown;
  try {
    readSafetensors(bytes);
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a ModelError').toBeInstanceOf(ModelError);
  if (pattern) expect((thrown as Error).message).toMatch(pattern);
}

/** Reading either succeeds or throws ModelError — nothing else, ever. */
function readOrModelError(bytes: Uint8Array): void {
  try {
    readSafetensors(bytes);
  } catch (e) {
    if (!(e instanceof ModelError)) throw new Error(`non-ModelError thrown: ${String(e)}`);
  }
}

const ARRAYS: Record<DType, (n: number) => Tensor['data']> = {
  F64: (n) => new Float64Array(n), F32: (n) => new Float32Array(n), F16: (n) => new Uint16Array(n),
  BF16: (n) => new Uint16Array(n), I64: (n) => new BigInt64Array(n), I32: (n) => new Int32Array(n),
  I16: (n) => new Int16Array(n), I8: (n) => new Int8Array(n), U64: (n) => new BigUint64Array(n),
  U32: (n) => new Uint32Array(n), U16: (n) => new Uint16Array(n), U8: (n) => new Uint8Array(n), BOOL: (n) => new Uint8Array(n),
};

const tensorArb: fc.Arbitrary<Tensor> = fc
  .record({
    dtype: fc.constantFrom(...(Object.keys(DTYPE_SIZE) as DType[])),
    shape: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 0, maxLength: 3 }),
    seed: fc.integer(),
  })
  .map(({ dtype, shape, seed }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = ARRAYS[dtype](n);
    const bytes = new Uint8Array(data.buffer);
    let s = seed >>> 0;
    for (let i = 0; i < bytes.length; i++) bytes[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    return { dtype, shape, data };
  });

function sameBytes(a: Tensor['data'], b: Tensor['data']): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

describe('safetensors round trip', () => {
  it('write → read gives back the same tensors and metadata (property)', () => {
    fc.assert(fc.property(
      fc.uniqueArray(fc.tuple(fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', '0', '12')).filter((s) => s !== '__metadata__'), tensorArb), { selector: ([name]) => name, maxLength: 8 }),
      fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constant('__proto__')), fc.string({ maxLength: 20 }), { maxKeys: 5 }),
      (entries, metadata) => {
        const bytes = writeSafetensors(new Map(entries), metadata);
        const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        expect(headerLen % 8).toBe(0);
        const back = readSafetensors(bytes);
        expect(back.metadata).toEqual(Object.keys(metadata).length ? { ...metadata } : {});
        // File (offset) order; zero-length tensors share an offset, so compare those as a set.
        const nonEmpty = (names: string[]) => names.filter((n) => back.tensors.get(n)!.data.byteLength > 0);
        expect(nonEmpty([...back.tensors.keys()])).toEqual(nonEmpty(entries.map(([n]) => n)));
        expect([...back.tensors.keys()].sort()).toEqual(entries.map(([n]) => n).sort());
        for (const [name, t] of entries) {
          const r = back.tensors.get(name)!;
          expect(r.dtype).toBe(t.dtype);
          expect(r.shape).toEqual(t.shape);
          expect(sameBytes(r.data, t.data)).toBe(true);
        }
      },
    ), { numRuns: 300 });
  });

  it('returned data never aliases the input buffer, also for pooled Node Buffers', () => {
    const bytes = writeSafetensors({ a: { dtype: 'F32', shape: [2], data: Float32Array.of(1.5, -2) } });
    // A small Buffer.from copy lives inside Node's shared 8 KiB pool at a non-zero offset.
    const pooled = Buffer.from(bytes);
    const r = readSafetensors(pooled);
    const data = r.tensors.get('a')!.data as Float32Array;
    expect(Array.from(data)).toEqual([1.5, -2]);
    expect(data.buffer.byteLength).toBe(8);
    pooled.fill(0);
    expect(Array.from(data)).toEqual([1.5, -2]);
  });

  it('decodes F16 and BF16 bit patterns', () => {
    const f16 = Uint16Array.of(0x3c00, 0xc000, 0x0001, 0x7c00, 0x3555);
    const bf16 = Uint16Array.of(0x3f80, 0xc040, 0x0000);
    const r = readSafetensors(writeSafetensors({ h: { dtype: 'F16', shape: [5], data: f16 }, b: { dtype: 'BF16', shape: [3], data: bf16 } }));
    const h = toFloat64Array(r.tensors.get('h')!);
    expect(Array.from(h.subarray(0, 4))).toEqual([1, -2, 2 ** -24, Infinity]);
    expect(h[4]).toBeCloseTo(0.33325, 5);
    expect(Array.from(toFloat64Array(r.tensors.get('b')!))).toEqual([1, -3, 0]);
  });

  it('accepts an unpadded header and tensors listed out of offset order', () => {
    const data = new Uint8Array(12);
    new DataView(data.buffer).setFloat32(0, 3, true);
    new DataView(data.buffer).setInt32(4, -7, true);
    new DataView(data.buffer).setInt32(8, 9, true);
    const header = JSON.stringify({ y: { dtype: 'I32', shape: [2], data_offsets: [4, 12] }, x: { dtype: 'F32', shape: [], data_offsets: [0, 4] } });
    const r = readSafetensors(rawFile(header, data));
    expect(Array.from(r.tensors.get('x')!.data as Float32Array)).toEqual([3]);
    expect(Array.from(r.tensors.get('y')!.data as Int32Array)).toEqual([-7, 9]);
  });

  it('writer refuses inconsistent tensors', () => {
    expect(() => writeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(ModelError);
    expect(() => writeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float64Array(2) } })).toThrow(/needs a Float32Array/);
    expect(() => writeSafetensors({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } })).toThrow(/reserved/);
    expect(() => writeSafetensors({}, { a: 1 as unknown as string })).toThrow(/must be a string/);
  });
});

describe('safetensors hostile input', () => {
  const f32 = new Uint8Array(8);

  it.each([
    ['empty file', new Uint8Array(0), /too short/],
    ['7 bytes', new Uint8Array(7), /too short/],
    ['huge header length', rawFile('{}', undefined, 2n ** 63n), /exceeds the limit/],
    ['header length past the end', rawFile('{}', undefined, 100n), /runs past the end/],
    ['header length 0', rawFile('', undefined, 0n), /too small/],
    ['not JSON', rawFile('{nope}'), /not valid JSON/],
    ['JSON array', rawFile('[1, 2]'), /JSON object/],
    ['JSON with trailing garbage', rawFile('{} x'), /trailing/],
    ['BOM before the object', rawFile('\ufeff{}'), /JSON object/],
    ['invalid UTF-8', (() => { const b = rawFile('{"a":1}'); b[10] = 0xff; return b; })(), /UTF-8/],
    ['duplicate tensor names', rawFile('{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'), /duplicate key "a"/],
    ['metadata not an object', rawFile('{"__metadata__":"x"}'), /__metadata__ must be an object/],
    ['metadata non-string value', rawFile('{"__metadata__":{"k":1}}'), /__metadata__\["k"\] must be a string/],
    ['entry not an object', rawFile('{"a":5}'), /entry must be an object/],
    ['unknown dtype', rawFile('{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}', new Uint8Array(1)), /unsupported dtype "F8"/],
    ['lowercase dtype', rawFile('{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), /unsupported dtype/],
    ['negative shape', rawFile('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'), /non-negative integers/],
    ['fractional shape', rawFile('{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', new Uint8Array(1)), /non-negative integers/],
    ['shape not an array', rawFile('{"a":{"dtype":"U8","shape":3,"data_offsets":[0,3]}}', new Uint8Array(3)), /shape must be an array/],
    ['shape/span mismatch', rawFile('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', f32), /needs 12 bytes, data_offsets span 8/],
    ['absurd shape', rawFile('{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', f32), /too large|needs/],
    ['offsets reversed', rawFile('{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}'), /0 <= begin <= end/],
    ['offsets not numbers', rawFile('{"a":{"dtype":"U8","shape":[1],"data_offsets":["0","1"]}}', new Uint8Array(1)), /data_offsets must be integers/],
    ['offsets wrong arity', rawFile('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}', new Uint8Array(1)), /\[begin, end\]/],
    ['overlapping spans', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32), /overlap/],
    ['gap between spans', rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32), /gap/],
    ['unused trailing bytes', rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32), /unused bytes/],
    ['truncated data', rawFile('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', f32), /truncated/],
    ['unknown entry field', rawFile('{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"x":1}}'), /unknown field "x"/],
    ['deep nesting', rawFile(`{"__metadata__":${'['.repeat(500)}${']'.repeat(500)}}`), /too deep|__metadata__/],
  ])('%s → ModelError', (_name, bytes, pattern) => {
    expectModelError(bytes, pattern);
  });

  it('refuses files above maxBytes', () => {
    const bytes = writeSafetensors({ a: { dtype: 'U8', shape: [100], data: new Uint8Array(100) } });
    expect(() => readSafetensors(bytes, { maxBytes: 50 })).toThrow(/the limit is 50/);
  });

  it('random bytes never crash (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => readOrModelError(b)), { numRuns: 500 });
  });

  it('random header length + random JSON-ish header never crash (property)', () => {
    const header = fc.oneof(
      fc.json(),
      fc.string(),
      fc.dictionary(fc.string({ maxLength: 4 }), fc.record({
        dtype: fc.oneof(fc.constantFrom('F32', 'I8', 'U8', 'F64', 'BF16', 'X'), fc.string()),
        shape: fc.array(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double()), { maxLength: 3 }),
        data_offsets: fc.array(fc.integer({ min: -2, max: 40 }), { maxLength: 3 }),
      }, { requiredKeys: [] })).map((o) => JSON.stringify(o)),
    );
    fc.assert(fc.property(header, fc.uint8Array({ maxLength: 64 }), fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), (h, data, len) => {
      readOrModelError(rawFile(h, data, len ?? undefined));
    }), { numRuns: 1000 });
  });

  it('single-byte corruptions and truncations of a valid file never crash (property)', () => {
    const valid = writeSafetensors({
      W: { dtype: 'F32', shape: [3, 2], data: Float32Array.of(1, 2, 3, 4, 5, 6) },
      q: { dtype: 'I8', shape: [4], data: Int8Array.of(-1, 0, 1, 2) },
    }, { format: 'x' });
    fc.assert(fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length), (pos, val, cut) => {
      const b = valid.slice();
      b[pos] = val;
      readOrModelError(b);
      readOrModelError(valid.slice(0, cut));
    }), { numRuns: 1000 });
  });
});
