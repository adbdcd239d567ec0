// A strict safetensors reader and writer (https://github.com/huggingface/safetensors format):
// 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON header, then the raw
// little-endian tensor bytes, each tensor at data_offsets [begin, end) relative to the byte
// after the header.
//
// WHY our own and why strict: model files arrive from other tools and over the gRPC control
// plane, and a bad one must be refused with a clear reason while the old model keeps serving.
// So every rule is checked before anything is returned — header length bounds, UTF-8, JSON
// that is an object with no duplicate keys (JSON.parse silently keeps the last duplicate, so
// the header goes through a small strict parser), `__metadata__` string→string, known dtypes,
// shape × dtype size = byte span, spans sorted, contiguous, non-overlapping, starting at 0 and
// covering the data exactly — and any violation is a ModelError. Tensor data is copied into
// fresh, aligned typed arrays, so nothing returned aliases the caller's buffer.
import { ModelError } from '../errors.js';

export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/**
 * F16 and BF16 are returned as their raw 16-bit patterns (Uint16Array); use `toFloat64Array`
 * to decode. BOOL is a Uint8Array of 0/1.
 */
export type TensorData =
  | Float64Array | Float32Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

export interface ReadOptions {
  /** Largest file accepted, bytes. Default 256 MiB. */
  maxBytes?: number;
}

export const DTYPE_SIZE: Readonly<Record<DType, number>> = Object.freeze({
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
});

/** The reference implementation's own header cap. */
export const MAX_HEADER_BYTES = 100_000_000;
export const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
const MAX_TENSORS = 100_000;
const MAX_RANK = 16;
const MAX_JSON_DEPTH = 64;

function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

function bad(msg: string): never {
  throw new ModelError(`invalid safetensors: ${msg}`);
}

function q(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 79)}…` : s);
}

// ---------------------------------------------------------------------------------------------
// Strict JSON (RFC 8259) with duplicate-key detection and a depth limit.

class StrictJson {
  private i = 0;
  constructor(private readonly s: string) {}

  parse(): unknown {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i !== this.s.length) this.err('unexpected trailing characters');
    return v;
  }

  private err(msg: string): never {
    bad(`header is not valid JSON: ${msg} at character ${this.i}`);
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  private value(depth: number): unknown {
    if (depth > MAX_JSON_DEPTH) this.err('nesting too deep');
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === 't') return this.literal('true', true);
    if (c === 'f') return this.literal('false', false);
    if (c === 'n') return this.literal('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    return this.err(c === undefined ? 'unexpected end' : `unexpected character ${q(c)}`);
  }

  private literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.err('invalid literal');
  }

  private number(): number {
    const m = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (!r) this.err('invalid number');
    this.i += r[0].length;
    return Number(r[0]);
  }

  private string(): string {
    const start = this.i;
    const end = this.scanString();
    return JSON.parse(this.s.slice(start, end)) as string;
  }

  /** Validates a string literal starting at this.i (a quote) and returns the index after it. */
  private scanString(): number {
    const s = this.s;
    this.i++;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x22) return ++this.i;
      if (c < 0x20) this.err('control character in string');
      if (c === 0x5c) {
        const e = s[this.i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(s.slice(this.i + 2, this.i + 6))) this.err('invalid \\u escape');
          this.i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          this.i += 2;
        } else this.err('invalid escape');
      } else this.i++;
    }
    return this.err('unterminated string');
  }

  private array(depth: number): unknown[] {
    this.i++;
    const out: unknown[] = [];
    this.ws();
    if (this.s[this.i] === ']') { this.i++; return out; }
    for (;;) {
      this.ws();
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return out;
      if (c !== ',') this.err("expected ',' or ']'");
    }
  }

  private object(depth: number): Record<string, unknown> {
    this.i++;
    // Null prototype: keys such as "__proto__" or "constructor" are plain data here.
    const out = Object.create(null) as Record<string, unknown>;
    this.ws();
    if (this.s[this.i] === '}') { this.i++; return out; }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.err('expected a string key');
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) bad(`duplicate key ${q(key)} in header`);
      this.ws();
      if (this.s[this.i++] !== ':') this.err("expected ':'");
      this.ws();
      out[key] = this.value(depth + 1);
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return out;
      if (c !== ',') this.err("expected ',' or '}'");
    }
  }
}

/** obj[key] = value as an own data property, even for "__proto__" (no prototype setter). */
function setOwn(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Reading

function copyData(dtype: DType, bytes: Uint8Array, start: number, end: number): TensorData {
  // A copy into a fresh ArrayBuffer at offset 0, so every view below is aligned. (Not
  // bytes.slice(): on a Node Buffer that is a view into the shared pool, not a copy.)
  const buf = new ArrayBuffer(end - start);
  new Uint8Array(buf).set(bytes.subarray(start, end));
  switch (dtype) {
    case 'F64': return new Float64Array(buf);
    case 'F32': return new Float32Array(buf);
    case 'F16': case 'BF16': case 'U16': return new Uint16Array(buf);
    case 'I64': return new BigInt64Array(buf);
    case 'I32': return new Int32Array(buf);
    case 'I16': return new Int16Array(buf);
    case 'I8': return new Int8Array(buf);
    case 'U64': return new BigUint64Array(buf);
    case 'U32': return new Uint32Array(buf);
    case 'U8': case 'BOOL': return new Uint8Array(buf);
  }
}

interface Entry { name: string; dtype: DType; shape: number[]; begin: number; end: number }

/** Parses and fully validates a safetensors file. Throws ModelError on any violation. */
export function readSafetensors(bytes: Uint8Array, opts: ReadOptions = {}): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) bad('input must be bytes');
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (bytes.length > maxBytes) bad(`file is ${bytes.length} bytes, the limit is ${maxBytes}`);
  if (bytes.length < 8) bad(`file is ${bytes.length} bytes, too short for the 8-byte header length`);

  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) bad(`header length ${n64} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const headerLen = Number(n64);
  if (headerLen > bytes.length - 8) bad(`header length ${headerLen} runs past the end of the ${bytes.length}-byte file`);
  if (headerLen < 2) bad(`header length ${headerLen} is too small for a JSON object`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    bad('header is not valid UTF-8');
  }
  if (text.charCodeAt(0) !== 0x7b /* { */) bad('header must be a JSON object starting with "{"');
  const header = new StrictJson(text).parse();
  if (!isPlainObject(header)) bad('header must be a JSON object');

  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const name of Object.keys(header)) {
    const v = header[name];
    if (name === '__metadata__') {
      if (!isPlainObject(v)) bad('__metadata__ must be an object of string values');
      for (const k of Object.keys(v)) {
        if (typeof v[k] !== 'string') bad(`__metadata__[${q(k)}] must be a string`);
        setOwn(metadata, k, v[k]);
      }
      continue;
    }
    if (entries.length >= MAX_TENSORS) bad(`more than ${MAX_TENSORS} tensors`);
    if (name.length === 0) bad('empty tensor name');
    const t = `tensor ${q(name)}`;
    if (!isPlainObject(v)) bad(`${t}: entry must be an object with dtype, shape, data_offsets`);
    for (const k of Object.keys(v)) {
      if (k !== 'dtype' && k !== 'shape' && k !== 'data_offsets') bad(`${t}: unknown field ${q(k)}`);
    }
    const dtype = v.dtype;
    if (!isDType(dtype)) bad(`${t}: unsupported dtype ${typeof dtype === 'string' ? q(dtype) : String(dtype)}`);
    const shape = v.shape;
    if (!Array.isArray(shape)) bad(`${t}: shape must be an array`);
    if (shape.length > MAX_RANK) bad(`${t}: rank ${shape.length} exceeds ${MAX_RANK}`);
    let count = 1;
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) bad(`${t}: shape entries must be non-negative integers`);
      count *= d;
      if (count > Number.MAX_SAFE_INTEGER) bad(`${t}: shape is too large`);
    }
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2) bad(`${t}: data_offsets must be [begin, end]`);
    const [begin, end] = offs as unknown[];
    if (typeof begin !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < begin) {
      bad(`${t}: data_offsets must be integers with 0 <= begin <= end`);
    }
    const expected = count * DTYPE_SIZE[dtype];
    if (end - begin !== expected) {
      bad(`${t}: shape [${shape.join(', ')}] × ${dtype} (${DTYPE_SIZE[dtype]} bytes) needs ${expected} bytes, data_offsets span ${end - begin}`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // Spans: sorted by begin they must tile [0, dataLen) exactly — no gap, no overlap, no tail.
  const dataLen = bytes.length - 8 - headerLen;
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.begin < cursor) bad(`tensor ${q(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (ends at ${cursor})`);
    if (e.begin > cursor) bad(`tensor ${q(e.name)}: gap in the data before offset ${e.begin} (previous tensor ends at ${cursor})`);
    cursor = e.end;
  }
  if (cursor !== dataLen) {
    bad(cursor > dataLen
      ? `tensor data needs ${cursor} bytes but the file has ${dataLen} after the header (truncated?)`
      : `${dataLen - cursor} unused bytes after the last tensor`);
  }

  // The Map iterates in file (offset) order: JSON object key order is not reliable in JS
  // (integer-like names would come first).
  const base = 8 + headerLen;
  const tensors = new Map<string, Tensor>();
  for (const e of sorted) {
    tensors.set(e.name, { dtype: e.dtype, shape: [...e.shape], data: copyData(e.dtype, bytes, base + e.begin, base + e.end) });
  }
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Writing

function expectedArray(dtype: DType): string {
  switch (dtype) {
    case 'F64': return 'Float64Array';
    case 'F32': return 'Float32Array';
    case 'F16': case 'BF16': case 'U16': return 'Uint16Array';
    case 'I64': return 'BigInt64Array';
    case 'I32': return 'Int32Array';
    case 'I16': return 'Int16Array';
    case 'I8': return 'Int8Array';
    case 'U64': return 'BigUint64Array';
    case 'U32': return 'Uint32Array';
    case 'U8': case 'BOOL': return 'Uint8Array';
  }
}

/**
 * Serialises tensors (in the given order) and string metadata. The header is padded with
 * spaces to a multiple of 8 bytes, as the reference implementation does, so tensor data is
 * 8-byte aligned for readers that map the file. Throws ModelError on inconsistent input.
 */
export function writeSafetensors(tensors: Record<string, Tensor> | Map<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const list: [string, Tensor][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const meta: Record<string, string> = {};
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ModelError(`cannot write safetensors: __metadata__[${q(k)}] must be a string`);
      setOwn(meta, k, v);
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of list) {
    const where = `cannot write safetensors: tensor ${q(name)}`;
    if (name.length === 0 || name === '__metadata__') throw new ModelError(`${where}: reserved or empty name`);
    if (!isDType(t.dtype)) throw new ModelError(`${where}: unsupported dtype ${String(t.dtype)}`);
    if (t.data?.constructor?.name !== expectedArray(t.dtype)) {
      throw new ModelError(`${where}: dtype ${t.dtype} needs a ${expectedArray(t.dtype)}, got ${t.data?.constructor?.name ?? typeof t.data}`);
    }
    let count = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new ModelError(`${where}: shape entries must be non-negative integers`);
      count *= d;
    }
    if (count !== t.data.length) throw new ModelError(`${where}: shape [${t.shape.join(', ')}] has ${count} elements, data has ${t.data.length}`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    setOwn(header, name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] });
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  let headerBytes = new TextEncoder().encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad > 0) {
    json += ' '.repeat(pad);
    headerBytes = new TextEncoder().encode(json);
  }
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let p = 8 + headerBytes.length;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const bf16View = new DataView(new ArrayBuffer(4));
function bf16ToNumber(h: number): number {
  bf16View.setUint32(0, h << 16, false);
  return bf16View.getFloat32(0, false);
}

/** Decodes any tensor into float64 values (F16/BF16 bit patterns decoded, 64-bit ints via Number). */
export function toFloat64Array(t: Tensor): Float64Array {
  const n = t.data.length;
  const out = new Float64Array(n);
  if (t.dtype === 'F16' || t.dtype === 'BF16') {
    const d = t.data as Uint16Array;
    const conv = t.dtype === 'F16' ? f16ToNumber : bf16ToNumber;
    for (let i = 0; i < n; i++) out[i] = conv(d[i]!);
  } else if (t.data instanceof BigInt64Array || t.data instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) out[i] = Number(t.data[i]!);
  } else {
    const d = t.data;
    for (let i = 0; i < n; i++) out[i] = d[i]!;
  }
  return out;
}

export function elementCount(shape: readonly number[]): number {
  let c = 1;
  for (const d of shape) c *= d;
  return c;
}
