// The slice of the WebAssembly JS API the SIMD kernels use. Declared here because the project
// compiles with lib ES2023 only (no DOM lib, where the full WebAssembly typings live); Node has
// the API at runtime.

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(deltaPages: number): number;
}

export interface WasmInstance {
  exports: Record<string, unknown>;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => WasmInstance;
}

const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export const WASM_PAGE = 65536;

/**
 * Compiles and instantiates module bytes synchronously (our modules are small), or returns
 * null when this engine has no WebAssembly or rejects the module (e.g. no SIMD support).
 */
export function instantiate(bytes: Uint8Array): WasmInstance | null {
  if (!wasmApi) return null;
  try {
    return new wasmApi.Instance(new wasmApi.Module(bytes), {});
  } catch {
    return null;
  }
}

/** Grows `memory` to at least `bytes`; returns true when it grew (old views are then detached). */
export function ensureMemory(memory: WasmMemory, bytes: number): boolean {
  const have = memory.buffer.byteLength;
  if (have >= bytes) return false;
  memory.grow(Math.ceil((bytes - have) / WASM_PAGE));
  return true;
}
