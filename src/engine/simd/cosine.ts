// Batch cosine similarity on WebAssembly SIMD, with an exact float64 fallback.
//
// One kernel instance per thread (module state: each worker_thread gets its own). The kernel
// works on its own linear memory, laid out per call as
//   [ query: dim f32 | pad to 16 B ][ embeddings: n*dim f32 ][ out: n f32 ]
// and grown (never shrunk) to the largest request seen: at docs/contracts.md §1 limits (4096 × 1000) that is
// ~16 MB per thread, a bounded, reused buffer rather than per-call garbage.
//
// Copy cost: the caller's embeddings must be in wasm memory. `cosineBatchSimd` copies them in
// with one memcpy (`TypedArray#set`). A caller that can write the packed embeddings straight
// into the staging area (`stagingEmbeddings`) saves even that copy: when `embeddings` is that
// very view, the copy is skipped. A staging view is only valid until the next call that grows
// memory (growth detaches the old ArrayBuffer), so use it immediately, on the same thread.
import { buildCosineModule } from './cosine-module.js';
import { ensureMemory, instantiate, type WasmMemory } from './runtime.js';

type KernelFn = (q: number, e: number, n: number, dim: number, out: number) => number;
type AllFiniteFn = (p: number, count: number) => number;

interface Kernel {
  memory: WasmMemory;
  fn: KernelFn;
  allFinite: AllFiniteFn;
  f32: Float32Array;
}

let kernel: Kernel | null | undefined; // undefined: not tried yet; null: unsupported here
/** A second instance whose memory is scratch for scanning arrays that live outside wasm memory. */
let scanKernel: Kernel | null | undefined;
let enabled = true;

function load(): Kernel | null {
  // Synchronous compile is fine: the module is a few hundred bytes. Engines without
  // WebAssembly SIMD reject it at compile time; the scalar paths stay.
  const instance = instantiate(buildCosineModule());
  if (!instance) return null;
  const memory = instance.exports.memory as WasmMemory;
  const fn = instance.exports.cosine_batch as KernelFn;
  const allFinite = instance.exports.all_finite as AllFiniteFn;
  return { memory, fn, allFinite, f32: new Float32Array(memory.buffer) };
}

function getKernel(): Kernel | null {
  if (kernel === undefined) kernel = load();
  return kernel;
}

/** True when the WebAssembly SIMD kernel compiled on this engine and is not switched off. */
export function simdAvailable(): boolean {
  return enabled && getKernel() !== null;
}

/**
 * Switch the SIMD path off (or back on) for this thread, e.g. for a benchmark comparing it with
 * the scalar loop. Callers that dispatch on `simdAvailable()` then take their fallback.
 */
export function setSimdEnabled(on: boolean): void {
  enabled = on;
}

function align16(bytes: number): number {
  return (bytes + 15) & ~15;
}

function ensureCapacity(k: Kernel, bytes: number): void {
  if (ensureMemory(k.memory, bytes)) k.f32 = new Float32Array(k.memory.buffer);
}

/**
 * A Float32Array of n*dim floats inside the kernel's memory, at the place `cosineBatchSimd(…, n,
 * dim, …)` reads embeddings from. Writing candidates here and passing this view back skips the
 * copy. Valid until the next staging/cosine call on this thread that needs more memory.
 */
export function stagingEmbeddings(n: number, dim: number): Float32Array {
  const k = getKernel();
  if (!k) throw new Error('WebAssembly SIMD is not available on this engine');
  const eOff = align16(dim * 4);
  ensureCapacity(k, eOff + n * dim * 4 + n * 4);
  return new Float32Array(k.memory.buffer, eOff, n * dim);
}

/** Exact cosine of query and candidate i in float64; zero norm → 0. */
function cosineF64(query: Float32Array, embeddings: Float32Array, i: number, dim: number): number {
  let dot = 0;
  let qq = 0;
  let ee = 0;
  const base = i * dim;
  for (let j = 0; j < dim; j++) {
    const a = query[j]!;
    const b = embeddings[base + j]!;
    dot += a * b;
    qq += a * a;
    ee += b * b;
  }
  if (qq === 0 || ee === 0) return 0;
  const c = dot / (Math.sqrt(qq) * Math.sqrt(ee));
  return c > 1 ? 1 : c < -1 ? -1 : c;
}

/**
 * out[outOffset + i] = cosine(query, embeddings[i*dim .. (i+1)*dim)) for i < n; zero-norm vectors
 * give 0. (An offset rather than a view of `out`: a view per call would be garbage.)
 * Same contract as the engine's `cosineBatch`. Throws when SIMD is unavailable (check
 * `simdAvailable()` first). Not re-entrant across threads by construction (per-thread state).
 */
export function cosineBatchSimd(query: Float32Array, embeddings: Float32Array, n: number, dim: number, out: Float32Array, outOffset = 0): void {
  const k = getKernel();
  if (!k) throw new Error('WebAssembly SIMD is not available on this engine');
  if (n <= 0) return;
  const total = n * dim;
  const eOff = align16(dim * 4);
  const outOff = eOff + total * 4;
  ensureCapacity(k, outOff + n * 4);
  const f32 = k.f32;
  f32.set(query.length === dim ? query : query.subarray(0, dim), 0);
  const staged = embeddings.buffer === k.memory.buffer && embeddings.byteOffset === eOff;
  if (!staged) f32.set(embeddings.length === total ? embeddings : embeddings.subarray(0, total), eOff >> 2);
  const flagged = k.fn(0, eOff, n, dim, outOff);
  if (flagged < 0) {
    // query norm out of f32 range (zero, tiny or huge): the whole batch in float64
    for (let i = 0; i < n; i++) out[outOffset + i] = cosineF64(query, embeddings, i, dim);
    return;
  }
  const o = outOff >> 2;
  if (flagged === 0) {
    for (let i = 0; i < n; i++) out[outOffset + i] = f32[o + i]!;
    return;
  }
  for (let i = 0; i < n; i++) {
    const v = f32[o + i]!;
    out[outOffset + i] = v === v ? v : cosineF64(query, embeddings, i, dim); // NaN marks "recompute exactly"
  }
}

/** Floats copied per step when scanning an array outside wasm memory (1 MiB of scratch). */
const SCAN_CHUNK = 256 * 1024;

function firstNonFiniteScalar(view: Float32Array, from = 0): number {
  for (let j = from; j < view.length; j++) {
    const x = view[j]!;
    if (x - x !== 0) return j; // NaN for ±Infinity and NaN
  }
  return -1;
}

/**
 * Index of the first non-finite value (NaN, ±Infinity) in `view`, or -1. Uses the SIMD kernel:
 * in place when `view` lies in the kernel's memory (a staging view), otherwise through a
 * scratch copy in chunks (a memcpy plus a vector pass beats a JS loop with a test per value). Falls back to the JS loop without SIMD.
 */
export function firstNonFinite(view: Float32Array): number {
  const k = enabled ? getKernel() : null;
  if (!k) return firstNonFiniteScalar(view);
  if (view.buffer === k.memory.buffer) {
    return k.allFinite(view.byteOffset, view.length) === 1 ? -1 : firstNonFiniteScalar(view);
  }
  if (scanKernel === undefined) scanKernel = load();
  const s = scanKernel;
  if (!s) return firstNonFiniteScalar(view);
  const chunk = Math.min(view.length, SCAN_CHUNK);
  ensureCapacity(s, chunk * 4);
  for (let off = 0; off < view.length; off += SCAN_CHUNK) {
    // PERF: a view that fits one chunk (a query: every request has one) is copied as it is,
    // without a subarray object per call
    const part = view.length <= SCAN_CHUNK ? view : view.subarray(off, Math.min(view.length, off + SCAN_CHUNK));
    s.f32.set(part, 0);
    if (s.allFinite(0, part.length) !== 1) return off + firstNonFiniteScalar(part);
  }
  return -1;
}
