// Request validation (docs/contracts.md §1) and conversion to the engine's packed layout.
//
// WHY this shape: everything downstream (features, the FastGRNN, the worker pool) wants typed
// arrays, packed, and in memory the caller chooses (the SIMD kernel's staging area, a worker
// message's buffer). So validation is also the single place where a JSON/protobuf-shaped object is turned into
// typed arrays — every limit of §1 is checked while copying, so nothing is walked twice, and an
// error names the field and the candidate (index and id) so a DLQ reason is actionable.
//
// Absent optional fields take their proto3 default (0 / empty), so the same request scores the
// same whether it arrived as JSON or as protobuf (where "absent" and "0" cannot be told apart):
// created_at 0 (→ recency ≈ 0), access_count 0, success_rate 0, metadata {}. JSON `null` counts
// as absent, as in the proto3 JSON mapping. int64/uint64 fields also accept decimal strings and
// bigints, because the proto3 JSON mapping writes 64-bit integers as strings.
import { InvalidInputError } from '../errors.js';
import { LIMITS } from '../wire/types.js';
import { firstNonFinite, simdAvailable } from './simd/cosine.js';

export interface ValidatedRequest {
  request_id: string;
  /** Embedding dimension. */
  dim: number;
  /** Number of candidates. */
  n: number;
  /** Length dim. */
  query: Float32Array;
  /** n*dim, candidate i at [i*dim, (i+1)*dim): one packed buffer. */
  embeddings: Float32Array;
  ids: string[];
  /** Unix seconds; 0 when absent (proto3 default). */
  createdAt: Float64Array;
  /** 0 when absent. */
  accessCount: Float64Array;
  /** In [0, 1]; 0 when absent. */
  successRate: Float32Array;
  /** Carried through to the decisions untouched ({} when absent). */
  candidateMetadata: Record<string, string>[];
  /** Request metadata ({} when absent). */
  metadata: Record<string, string>;
  /**
   * PERF (worker pool): the n cosine similarities of the candidates to the query, computed on
   * the thread that validated the request. When set, features read them and `query` and
   * `embeddings` may be empty (the pool does not send embeddings to its workers).
   */
  similarity?: Float32Array;
  /**
   * Set by validateRequest with `deferFiniteCheck`: the Float32Array embeddings were not yet
   * scanned for NaN/±Infinity; `completeFiniteCheck` finishes the job from the similarities.
   */
  finitePending?: boolean;
}

const utf8 = new TextEncoder();

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 63)}…` : s);
}

/**
 * PERF: "candidates[i] (id "…")" built only when an error is thrown. Formatting it eagerly for
 * every candidate (template + JSON.stringify) was a visible share of validating a large request.
 */
class CandidateWhere {
  constructor(public i: number, public id: string) {}
  toString(): string {
    return `candidates[${this.i}] (id ${quote(this.id)})`;
  }
}
type Where = string | CandidateWhere;

function fail(where: Where, what: string): never {
  throw new InvalidInputError(`${String(where)}: ${what}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function isArrayLikeNumbers(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array));
}

/**
 * Copies an embedding into `out` at `offset`, checking every value is a number that is finite
 * once rounded to float32 (1e300 is finite as a double but Infinity as float32).
 * PERF: a Float32Array is copied unchecked (one memcpy) and this returns true; the caller then
 * checks the packed buffer in one SIMD pass (`firstNonFinite`) — a JS test per value cost
 * ~1 ns each, more than the whole rest of routing for 100 × 384 floats.
 */
function copyEmbedding(where: Where, src: unknown, out: Float32Array, offset: number, dim: number): boolean {
  const len = (src as ArrayLike<unknown>).length;
  if (len !== dim) fail(where, `embedding has ${len} values, query has ${dim}`);
  if (src instanceof Float32Array) {
    out.set(src, offset);
    return true;
  }
  const a = src as ArrayLike<unknown>;
  for (let j = 0; j < dim; j++) {
    const x = a[j];
    if (typeof x !== 'number') fail(where, `embedding[${j}] is ${describe(x)}, not a finite number`);
    const f = Math.fround(x);
    if (!Number.isFinite(f)) fail(where, `embedding[${j}] is ${x}, not a finite float32`);
    out[offset + j] = f;
  }
  return false;
}

/** Where a non-finite query value is reported (one function, not a closure per request). */
const queryWhere = (): Where => 'query_embedding';

/** PERF: the deferred finite check of copyEmbedding, same message as the per-value one. */
function checkFinite(packed: Float32Array, dim: number, whereOf: (i: number) => Where): void {
  const bad = firstNonFinite(packed);
  if (bad < 0) return;
  const i = Math.floor(bad / dim);
  const j = bad - i * dim;
  fail(whereOf(i), `embedding[${j}] is ${packed[bad]}, not a finite number`);
}

/**
 * The metadata of a request or candidate that has none: one frozen object shared by all, so a
 * 100-candidate request does not allocate 100 empty maps (nor its decisions 100 more).
 */
export const EMPTY_METADATA: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** True when none of the first n maps has a key (EMPTY_METADATA or `{}`). */
export function noMetadata(maps: readonly Record<string, string>[], n = maps.length): boolean {
  for (let i = 0; i < n; i++) {
    const m = maps[i];
    if (m === EMPTY_METADATA) continue;
    for (const _k in m) return false;
  }
  return true;
}

function stringMap(where: Where, v: unknown): Record<string, string> {
  if (v === undefined || v === null) return EMPTY_METADATA;
  if (!isRecord(v)) fail(where, `metadata must be an object of string values, got ${describe(v)}`);
  for (const k in v) {
    if (typeof v[k] !== 'string') fail(where, `metadata[${quote(k)}] must be a string, got ${describe(v[k])}`);
  }
  return v as Record<string, string>;
}

/** int64 / uint64 in JSON: a safe integer, a bigint, or a decimal string (proto3 JSON mapping). */
function integerField(where: Where, field: string, v: unknown, min: number): number {
  if (v === undefined || v === null) return 0;
  let x: number;
  if (typeof v === 'number') x = v;
  else if (typeof v === 'bigint') x = Number(v);
  else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) x = Number(v);
  else return fail(where, `${field} must be an integer, got ${describe(v)}`);
  if (!Number.isFinite(x) || !Number.isInteger(x)) fail(where, `${field} must be an integer, got ${String(v)}`);
  if (x < min) fail(where, `${field} must be >= ${min}, got ${String(v)}`);
  return x;
}

/** PERF: the candidates' typed arrays, as a caller-provided ValidateOptions.allocCandidates returns them. */
export interface CandidateArrays {
  /** n*dim floats. */
  embeddings: Float32Array;
  /** n values each. */
  createdAt: Float64Array;
  accessCount: Float64Array;
  successRate: Float32Array;
}

/**
 * PERF: lets the caller choose where the packed typed arrays are written (every value of them is
 * overwritten), instead of allocating them per request. The Router and the worker pool pass the
 * SIMD kernel's staging area for the embeddings, so the finite check and the similarity kernel
 * read them in place, and reused buffers (the pool: views into the ArrayBuffer it transfers to a
 * worker) for the rest. Defaults: new typed arrays.
 */
export interface ValidateOptions {
  /** dim floats for the query. */
  allocQuery?: (dim: number) => Float32Array;
  allocCandidates?: (n: number, dim: number) => CandidateArrays;
  /**
   * n-entry arrays for the ids and candidate metadata (every entry overwritten). Only for a
   * caller that drops the ValidatedRequest before validating the next one (the Router's
   * route()); the pool keeps ids until the response, so it does not pass this.
   */
  allocLists?: (n: number) => { ids: string[]; candidateMetadata: Record<string, string>[] };
  /**
   * PERF: do not scan Float32Array embeddings for non-finite values here; the result carries
   * `finitePending` and the caller MUST pass the similarities computed from it by the SIMD
   * kernel (cosineBatchSimd) to `completeFiniteCheck` before using anything else. Saves one
   * pass over the embeddings. Honoured only where the SIMD kernel
   * runs (the argument in completeFiniteCheck needs it); numbers in plain arrays are always
   * checked one by one, and the query always here.
   */
  deferFiniteCheck?: boolean;
}

/**
 * PERF: the duplicate-id check without a Set per request (a Set allocates, and grows through
 * several rehashes to 100 entries). An open-addressing table of candidate indices, reused by
 * every request on this thread (validation is synchronous, so one table suffices), cleared by
 * bumping a generation stamp rather than by writing it. The hash is FNV-1a over the id's length
 * and up to 12 of its characters, the first 4 and the last 8, where ids usually differ (a
 * counter, a UUID's last group); each character read costs a few nanoseconds, so a 36-character
 * UUID hashed whole costs more than all the rest of its candidate's checks. Equal hashes are
 * told apart by comparing the strings. Ids that differ only in the middle collide, and probing
 * could turn quadratic, so a probe longer than MAX_PROBE switches the rest of the request to a
 * Set. Each slot also keeps its id's full 32-bit hash, compared before the strings: ids of one
 * request often share a prefix and a length, and comparing two such strings reads their
 * characters, where comparing hashes is one integer test.
 */
class IdTable {
  static readonly MAX_PROBE = 32;
  #slots = new Int32Array(0);
  #hashes = new Int32Array(0);
  #stamps = new Uint32Array(0);
  #gen = 0;
  #mask = 0;
  #fallback: Set<string> | null = null;
  #count = 0;

  reset(n: number): void {
    if (this.#slots.length < 2 * n) {
      let size = 64;
      while (size < 2 * n) size *= 2;
      this.#slots = new Int32Array(size);
      this.#hashes = new Int32Array(size);
      this.#stamps = new Uint32Array(size);
      this.#gen = 0;
    }
    this.#mask = this.#slots.length - 1;
    this.#gen = (this.#gen + 1) >>> 0;
    if (this.#gen === 0) {
      this.#stamps.fill(0);
      this.#gen = 1;
    }
    this.#fallback = null;
    this.#count = 0;
  }

  /**
   * Records `id` as the next candidate's (its index: the number recorded so far, whose ids must
   * already be in `ids`); false when it is a duplicate.
   */
  add(id: string, ids: readonly string[]): boolean {
    const fb = this.#fallback;
    if (fb !== null) {
      if (fb.has(id)) return false;
      fb.add(id);
      return true;
    }
    const len = id.length;
    let h = 0x811c9dc5 ^ len;
    const head = len < 4 ? len : 4;
    for (let k = 0; k < head; k++) h = Math.imul(h ^ id.charCodeAt(k), 0x01000193);
    for (let k = len - 8 > head ? len - 8 : head; k < len; k++) h = Math.imul(h ^ id.charCodeAt(k), 0x01000193);
    // FNV-1a's low bits depend on few input bits; a multiply-xorshift spreads them to the slot index
    h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
    h ^= h >>> 16;
    const mask = this.#mask, gen = this.#gen, slots = this.#slots, hashes = this.#hashes, stamps = this.#stamps;
    let s = h & mask;
    for (let probe = 0; ; probe++) {
      if (stamps[s] !== gen) {
        stamps[s] = gen;
        hashes[s] = h;
        slots[s] = this.#count++;
        return true;
      }
      if (hashes[s] === h && ids[slots[s]!] === id) return false;
      if (probe >= IdTable.MAX_PROBE) {
        // switch to a Set holding every id added so far, then add this one there
        const set = new Set<string>();
        for (let k = 0; k < this.#count; k++) set.add(ids[k]!);
        this.#fallback = set;
        return this.add(id, ids);
      }
      s = (s + 1) & mask;
    }
  }

  /** Drops the references kept for the request just validated. */
  done(): void {
    this.#count = 0;
    this.#fallback = null;
  }
}

const idTable = new IdTable();

/**
 * The request's `candidate_embeddings` (docs/contracts.md §7): every candidate's embedding in one
 * Float32Array of n × dim, or null when the candidates carry their own.
 */
function packedEmbeddings(v: unknown, n: number, dim: number): Float32Array | null {
  if (v === undefined || v === null) return null;
  if (!(v instanceof Float32Array)) {
    fail('candidate_embeddings', `must be a Float32Array of candidates × dimension values, got ${ArrayBuffer.isView(v) ? `a ${v.constructor.name}` : describe(v)}`);
  }
  if (v.length === 0 && v.buffer.byteLength === 0) {
    fail('candidate_embeddings', 'is a detached view (a staging view is valid only until the next route call on its thread)');
  }
  if (v.length !== n * dim) {
    fail('candidate_embeddings', `has ${v.length} values, must have ${n * dim} (${n} candidates × ${dim}, the query's dimension)`);
  }
  return v;
}

/**
 * Validates a RoutingRequest (docs/contracts.md §1) and packs it. Throws InvalidInputError with a one-line
 * message naming the field and, for candidate fields, the candidate index and id. A request may
 * carry all its candidates' embeddings packed in `candidate_embeddings` instead (the library
 * API, docs/contracts.md §7); they are then copied with one memcpy, or not at all when they
 * already are where the caller's ValidateOptions would put them (a staging view), and checked
 * as strictly.
 */
export function validateRequest(input: unknown, opts?: ValidateOptions): ValidatedRequest {
  if (!isRecord(input)) fail('request', `must be a JSON object, got ${describe(input)}`);

  const rid = input.request_id;
  if (typeof rid !== 'string') fail('request_id', rid === undefined ? 'is required' : `must be a string, got ${describe(rid)}`);
  if (rid.length === 0) fail('request_id', 'must not be empty');
  // Byte length, not UTF-16 length: the id becomes a Kafka key. Cheap upper bound first.
  if (rid.length * 3 > LIMITS.maxRequestIdBytes) {
    const bytes = utf8.encode(rid).length;
    if (bytes > LIMITS.maxRequestIdBytes) fail('request_id', `is ${bytes} bytes, the limit is ${LIMITS.maxRequestIdBytes}`);
  }

  const q = input.query_embedding;
  if (q === undefined || q === null) fail('query_embedding', 'is required');
  if (!isArrayLikeNumbers(q)) fail('query_embedding', `must be an array of numbers, got ${describe(q)}`);
  const dim = q.length;
  if (dim < LIMITS.minDim || dim > LIMITS.maxDim) {
    fail('query_embedding', `has ${dim} values, must have ${LIMITS.minDim}..${LIMITS.maxDim}`);
  }
  const query = opts?.allocQuery ? opts.allocQuery(dim) : new Float32Array(dim);
  if (copyEmbedding('query_embedding', q, query, 0, dim)) checkFinite(query, dim, queryWhere);

  const cands = input.candidates;
  if (cands === undefined || cands === null) fail('candidates', 'is required');
  if (!Array.isArray(cands)) fail('candidates', `must be an array, got ${describe(cands)}`);
  const n = cands.length;
  if (n < LIMITS.minCandidates || n > LIMITS.maxCandidates) {
    fail('candidates', `has ${n} entries, must have ${LIMITS.minCandidates}..${LIMITS.maxCandidates}`);
  }

  const given = packedEmbeddings(input.candidate_embeddings, n, dim);
  const packed = opts?.allocCandidates ? opts.allocCandidates(n, dim) : null;
  const embeddings = packed ? packed.embeddings : new Float32Array(n * dim);
  const lists = opts?.allocLists ? opts.allocLists(n) : null;
  const ids = lists ? lists.ids : new Array<string>(n);
  const createdAt = packed ? packed.createdAt : new Float64Array(n);
  const accessCount = packed ? packed.accessCount : new Float64Array(n);
  const successRate = packed ? packed.successRate : new Float32Array(n);
  const candidateMetadata = lists ? lists.candidateMetadata : new Array<Record<string, string>>(n);
  const seen = idTable;
  seen.reset(n);
  let unchecked = false; // PERF: some embedding was copied without its finite check
  const where = new CandidateWhere(0, '');

  for (let i = 0; i < n; i++) {
    const c: unknown = cands[i];
    if (!isRecord(c)) fail(`candidates[${i}]`, `must be an object, got ${describe(c)}`);
    const id = c.id;
    if (typeof id !== 'string') fail(`candidates[${i}]`, id === undefined || id === null ? 'id is required' : `id must be a string, got ${describe(id)}`);
    // PERF: one object reused for every candidate (fail() stringifies it at once).
    where.i = i;
    where.id = id;
    if (id.length === 0) fail(where, 'id must not be empty');
    if (!seen.add(id, ids)) fail(where, 'duplicate id: ids must be unique within a request');
    ids[i] = id;

    const e = c.embedding;
    if (given !== null) {
      if (e !== undefined && e !== null) fail(where, 'embedding must be absent when the request carries candidate_embeddings');
    } else if (e instanceof Float32Array && e.length === dim) {
      // PERF: the common case first (one type test, one memcpy, the finite check deferred as in
      // copyEmbedding); everything else goes through the general checks.
      embeddings.set(e, i * dim);
      unchecked = true;
    } else {
      if (e === undefined || e === null) fail(where, 'embedding is required');
      if (!isArrayLikeNumbers(e)) fail(where, `embedding must be an array of numbers, got ${describe(e)}`);
      if (copyEmbedding(where, e, embeddings, i * dim, dim)) unchecked = true;
    }

    createdAt[i] = integerField(where, 'created_at', c.created_at, Number.MIN_SAFE_INTEGER);
    accessCount[i] = integerField(where, 'access_count', c.access_count, 0);

    const sr = c.success_rate;
    if (sr !== undefined && sr !== null) {
      if (typeof sr !== 'number' || !Number.isFinite(sr)) fail(where, `success_rate must be a number in [0, 1], got ${describe(sr)}`);
      if (sr < 0 || sr > 1) fail(where, `success_rate must be in [0, 1], got ${sr}`);
      successRate[i] = sr;
    } else {
      successRate[i] = 0; // PERF: the array may be a reused buffer
    }
    candidateMetadata[i] = stringMap(where, c.metadata);
  }
  if (given !== null) {
    // in place already when the caller wrote them into the view allocCandidates hands out
    if (given.buffer !== embeddings.buffer || given.byteOffset !== embeddings.byteOffset) embeddings.set(given);
    unchecked = true;
  }
  // PERF: one vector pass over all Float32Array embeddings. A NaN is thus reported after the
  // other checks of all candidates rather than before those of later candidates; the message
  // is the same.
  seen.done();
  const defer = unchecked && opts?.deferFiniteCheck === true && simdAvailable();
  if (unchecked && !defer) checkFinite(embeddings, dim, (i) => new CandidateWhere(i, ids[i]!));

  return {
    request_id: rid,
    dim,
    n,
    query,
    embeddings,
    ids,
    createdAt,
    accessCount,
    successRate,
    candidateMetadata,
    metadata: stringMap('metadata', input.metadata),
    finitePending: defer, // always present: one object shape for every validated request
  };
}

/**
 * Finishes a deferred finite check (ValidateOptions.deferFiniteCheck) from `sims` (from
 * `offset` on), the request's cosine similarities as the SIMD kernel computed them, and throws the error validateRequest
 * would have thrown. Sound because the kernel cannot return a number for a candidate holding a
 * non-finite value: its ||e||² is then ±Infinity or NaN, out of the kernel's range, so that
 * candidate is recomputed in float64, where dot/(‖q‖·‖e‖) is NaN (Infinity/Infinity, 0·Infinity
 * or NaN) — except for an all-zero query, whose cosines are all defined as 0. So a NaN or an
 * all-zero result triggers the full scan; anything else proves every value finite.
 */
export function completeFiniteCheck(req: ValidatedRequest, sims: Float32Array, offset = 0): void {
  if (!req.finitePending) return;
  let suspect = true; // all zero so far
  for (let i = 0; i < req.n; i++) {
    const s = sims[offset + i]!;
    if (s !== s) {
      suspect = true;
      break;
    }
    if (s !== 0) suspect = false;
  }
  if (suspect) checkFinite(req.embeddings, req.dim, (i) => new CandidateWhere(i, req.ids[i]!));
  req.finitePending = false;
}

/** True for an object produced by validateRequest (or rebuilt from one after a worker transfer). */
export function isValidatedRequest(v: unknown): v is ValidatedRequest {
  return isRecord(v) && v.query instanceof Float32Array && v.embeddings instanceof Float32Array && typeof v.n === 'number' && typeof v.dim === 'number';
}
