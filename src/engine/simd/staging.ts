// Reused buffers for validating and routing one request at a time on one thread (the Router's
// synchronous route(), a pool worker's batch loop).
//
// WHY: a 100-candidate, 384-dim request is 150 KB of embeddings. Allocating that per request
// (plus four small typed arrays, each an off-heap ArrayBuffer the GC must track) cost more than
// scoring it; copying it once more into WebAssembly memory for the similarity kernel cost again.
// With StagedArrays, validateRequest writes the embeddings straight into the SIMD kernel's
// staging area (cosine.ts reads them in place) and the other arrays into buffers grown to the
// largest request seen.
//
// Lifetime: everything handed out is valid only until the next allocation from the same
// instance (or, for staged embeddings, any other use of the kernel that grows its memory); the
// id and metadata lists (allocLists) are overwritten by the next request of the same size.
// Use the ValidatedRequest immediately, on the same thread, and do not keep it.
import { EMPTY_METADATA, type CandidateArrays, type ValidateOptions } from '../validate.js';
import { simdAvailable, stagingEmbeddings } from './cosine.js';

export class StagedArrays implements ValidateOptions {
  /** The similarity kernel reads the staged embeddings anyway: it finishes the finite check. */
  readonly deferFiniteCheck = true;
  #query = new Float32Array(0);
  #embeddings = new Float32Array(0);
  #createdAt = new Float64Array(0);
  #accessCount = new Float64Array(0);
  #successRate = new Float32Array(0);
  /** Id and metadata lists by request size, each made once (see allocLists). */
  #lists: { ids: string[]; candidateMetadata: Record<string, string>[] }[] = [];

  // PERF: the views handed out are kept and handed out again for the same size, so a request of
  // a size seen before allocates nothing here (a typed-array view is a heap object too).
  #queryViews: Float32Array[] = [];
  #candViews: CandidateArrays[] = [];
  #staged: { n: number; dim: number; view: Float32Array } = { n: 0, dim: 0, view: new Float32Array(0) };
  /** The same for the plain buffer used without SIMD. */
  #plain: { n: number; dim: number; view: Float32Array } = { n: 0, dim: 0, view: new Float32Array(0) };

  allocQuery(dim: number): Float32Array {
    if (this.#query.length < dim) {
      this.#query = new Float32Array(dim);
      this.#queryViews = [];
    }
    return (this.#queryViews[dim] ??= this.#query.subarray(0, dim));
  }

  allocCandidates(n: number, dim: number): CandidateArrays {
    if (this.#createdAt.length < n) {
      const cap = Math.max(n, 2 * this.#createdAt.length);
      this.#createdAt = new Float64Array(cap);
      this.#accessCount = new Float64Array(cap);
      this.#successRate = new Float32Array(cap);
      this.#candViews = [];
    }
    const embeddings = this.embeddings(n, dim);
    const c = (this.#candViews[n] ??= {
      embeddings,
      createdAt: this.#createdAt.subarray(0, n),
      accessCount: this.#accessCount.subarray(0, n),
      successRate: this.#successRate.subarray(0, n),
    });
    c.embeddings = embeddings;
    return c;
  }

  /**
   * Lists of exactly n entries, one pair per request size seen, kept for the next request of
   * that size. Plain arrays cannot be views, and shrinking or growing one array between sizes
   * would reallocate its storage; requests come in a few sizes, and n ≤ 1000 bounds the rest.
   */
  allocLists(n: number): { ids: string[]; candidateMetadata: Record<string, string>[] } {
    return (this.#lists[n] ??= { ids: new Array<string>(n).fill(''), candidateMetadata: new Array<Record<string, string>>(n).fill(EMPTY_METADATA) });
  }

  /** n*dim floats: the SIMD kernel's staging area when available, else a reused buffer. */
  embeddings(n: number, dim: number): Float32Array {
    if (simdAvailable()) {
      // the last staging view again while it is still attached (memory growth detaches it: its
      // length drops to 0) and of the same shape
      const st = this.#staged;
      if (st.n === n && st.dim === dim && st.view.length === n * dim) return st.view;
      const view = stagingEmbeddings(n, dim);
      this.#staged = { n, dim, view };
      return view;
    }
    const pl = this.#plain;
    if (pl.n === n && pl.dim === dim) return pl.view;
    if (this.#embeddings.length < n * dim) this.#embeddings = new Float32Array(n * dim);
    const view = this.#embeddings.subarray(0, n * dim);
    this.#plain = { n, dim, view };
    return view;
  }
}
