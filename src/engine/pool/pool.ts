// RouterPool (SPEC §7): the Router on worker threads, for throughput.
//
// Shape (ideas from piscina, no code): a fixed set of worker slots, each running one Router.
//   route()  validates on the calling thread (bad input rejects at once, with the Router's
//            message). The embeddings are copied once, into this thread's WebAssembly staging
//            memory, and reduced there to n cosine similarities by the SIMD kernel; the numbers
//            the worker needs (24 bytes per candidate) go straight into the ArrayBuffer that is
//            transferred to it (messages.ts says why embeddings do not travel).
//   dispatch least-loaded slot (tasks queued + in flight). Concurrent route() calls are
//            coalesced into one batch per worker: a slot has at most MAX_INFLIGHT batches posted
//            (one running, one waiting in its port so the worker never idles on a round trip);
//            tasks arriving meanwhile form the next batch, so batches grow with load.
//   bound    tasks not yet posted are bounded (maxQueue, maxQueueBytes); beyond that route()
//            rejects with PoolSaturatedError (retriable) instead of growing without bound.
//   results  come back as numbers (messages.ts); the decision objects are built here, with the
//            ids and metadata that never left this thread. Arenas come back and are reused.
//   crash    a worker that exits or throws fails exactly its in-flight tasks with
//            WorkerCrashedError (retriable) and is replaced (with backoff if it keeps dying);
//            its not-yet-posted tasks wait for the replacement.
//   reload   the model file is read and validated once here, then two-phase: every worker
//            parses and holds it (prepare), and only when all acknowledged does every worker
//            switch (commit). Any failure aborts everywhere: the old model stays. A batch is
//            scored inside one worker between two messages, so no request sees a mix, and
//            reload() resolves only after every worker switched: later requests see the new one.
//   close    bounded: stop accepting, let queued and in-flight tasks finish until the timeout,
//            then terminate the workers and reject what is left with PoolClosedError.
//
// Default size: max(1, availableParallelism() − 1) workers. The main thread is not idle in this
// design — it validates and packs requests and builds the decision objects, roughly as much
// CPU per request as a worker spends scoring it — so on a 2-core machine one worker plus the
// main thread fill both cores; a second worker would only contend with the main thread.
import { availableParallelism } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { InvalidInputError, ModelError, TinyDancerError, errorMessage } from '../../errors.js';
import { workerScript } from '../../worker-script.js';
import { DecodeError, type DecodeErrorKind } from '../../wire/errors.js';
import type { FeatureConfig } from '../features.js';
import { MAX_MODEL_BYTES, defaultModelPath, parseModel } from '../model.js';
import { Router, assertRoutable } from '../router.js';
import { DEFAULT_TENANT_KEY, GLOBAL_POLICY, PolicyTable, policyEntries, type TenantPolicies } from '../policy.js';
import type { DecisionReason, RoutingDecision, RoutingRequest, RoutingResponse } from '../../wire/types.js';
import { requestTopK } from '../../wire/response.js';
import {
  EMPTY_METADATA, completeFiniteCheck, isValidatedRequest, noMetadata, validateRequest, type CandidateArrays, type ValidateOptions, type ValidatedRequest,
} from '../validate.js';
import { FEATURE_COUNT, cosineBatch } from '../features.js';
import { StagedArrays } from '../simd/staging.js';
import { PoolClosedError, PoolSaturatedError, WorkerCrashedError } from './errors.js';
import {
  DECISION_STRIDE, D_CODE, D_CONF, D_INDEX, D_TIME, D_UNC, PROTOCOL_VERSION, REASONS, RESULT_HEADER, R_FEAT, R_ID,
  R_INFER, R_N, R_POLICY, R_PROCESSED, R_STATUS, TASK_STRIDE, TaskKind, TaskStatus, reducedBytes,
  type DecodedInfo, type FromWorker, type RouteResults, type TaskError, type TaskMeta, type ToWorker, type WorkerInit,
} from './messages.js';

export interface RouterPoolOptions {
  /** Model file; default models/default.safetensors. Ignored when `model` is given. */
  modelPath?: string;
  /** Model file bytes (e.g. received over gRPC). */
  model?: { bytes: Uint8Array; source?: string };
  /** Worker threads; default max(1, availableParallelism() − 1). */
  workers?: number;
  confidenceThreshold?: number;
  maxUncertainty?: number;
  /** Feature configuration (no clock function: it cannot cross threads; use nowSeconds). */
  features?: Partial<FeatureConfig>;
  /** Tasks accepted but not yet handed to a worker; beyond it route() rejects. Default 1024. */
  maxQueue?: number;
  /** Bytes of those tasks' packed requests; default 32 MiB. One task is always admitted per worker. */
  maxQueueBytes?: number;
  /**
   * Upper bound on tasks per message to a worker; default 64. The pool sizes batches below it
   * from the load it sees (see #batchTarget).
   */
  maxBatch?: number;
  /** Let `crashWorkerForTest` work. Tests only. */
  testHooks?: boolean;
  /** Give every response its decisions' feature vectors (RoutingResponse.features). */
  returnFeatures?: boolean;
  /** The request metadata key naming the tenant (default `tenant`). */
  tenantKey?: string;
  /** Per-tenant thresholds to start with (setTenantPolicies replaces them). */
  tenantPolicies?: TenantPolicies;
}

export interface PoolStats {
  workers: number;
  /** Tasks posted to a worker and not yet answered. */
  inFlight: number;
  /** Tasks accepted but not yet posted. */
  queued: number;
  completed: number;
  failed: number;
  crashes: number;
  /** Bytes of idle arenas kept for reuse (memory the pool holds between bursts). */
  arenaBytes: number;
}

export type ContentType = 'json' | 'protobuf';

/**
 * A batch is closed at this many candidates. All decision objects of a batch are built in one
 * go when its results arrive; measured with 64 × 100-candidate batches, that burst (~1 MB)
 * outlived young-generation GCs and got promoted, costing more CPU than the scoring.
 */
const MAX_BATCH_CANDIDATES = 1024;
/** Batches posted to one worker at a time: one running, one waiting in its port. */
const MAX_INFLIGHT = 2;
/** Default arena size; larger requests get an arena of their own size. */
const ARENA_BYTES = 256 * 1024;
/**
 * Arena of a batch expected to stay small (a low load: few tasks, few candidates). WHY: when
 * the load is low the batch target is small, and a burst of requests (serve hands a chunk of
 * 64 to the pool at once) opens many small batches queued behind the worker. Each held a
 * 256 KiB arena for a few hundred bytes: serve kept ~90 of them (23 MB, a tenth of its RSS).
 */
const SMALL_ARENA_BYTES = 32 * 1024;
/**
 * Room a batch's arena needs per byte of task input, for the results that come back in it: a
 * reduced task's 24 B per candidate become 80 B of decisions and features.
 */
const RESULT_ROOM_FACTOR = 4;
/** Raw encoded payloads larger than this are refused before copying. */
export const MAX_ENCODED_BYTES = 64 * 1024 * 1024;
const RESPAWN_BACKOFF_MS = [0, 50, 200, 1000, 2000];
const READY_TIMEOUT_MS = 30_000;

interface Task {
  id: number;
  resolve: (r: RoutingResponse) => void;
  reject: (e: unknown) => void;
  requestId: string;
  ids: string[];
  /** null when every candidate's metadata is empty: decisions then share EMPTY_METADATA. */
  candidateMetadata: Record<string, string>[] | null;
  bytes: number;
  /** The request's td-top-k (wire/response.ts), passed on in its response. */
  topK: number | undefined;
}

interface Batch {
  id: number;
  arena: ArrayBuffer;
  used: number;
  /** TASK_STRIDE numbers per task. */
  index: number[];
  tasks: Task[];
  meta: TaskMeta[] | null;
  sealed: boolean;
  /** Candidates of its validated tasks: bounds the decision objects built at once for it. */
  candidates: number;
}

interface Control {
  match: (m: FromWorker) => boolean;
  resolve: (m: FromWorker) => void;
  reject: (e: unknown) => void;
}

class Slot {
  worker: Worker | null = null;
  ready = false;
  /** Waiting to be posted, oldest first; the last one may still be open. */
  queue: Batch[] = [];
  inflight = new Map<number, Batch>();
  load = 0;
  flushScheduled = false;
  controls = new Set<Control>();
  consecutiveCrashes = 0;
  lastError: unknown = undefined;
  readyWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  constructor(readonly index: number) {}
}

function align(n: number, a: number): number {
  return (n + a - 1) & ~(a - 1);
}

const INDEX_ROW_BYTES = TASK_STRIDE * 8;


/**
 * Reserves a reduced request's numbers in `b` at its `used` mark (8-aligned) and returns views
 * of them in the layout messages.ts gives for TaskKind.Reduced.
 */
function packNumbers(b: Batch, n: number, embeddings: Float32Array = EMPTY_F32): CandidateArrays & { similarity: Float32Array } {
  const off = align(b.used, 8);
  b.used = off + reducedBytes(n);
  return {
    embeddings,
    createdAt: new Float64Array(b.arena, off, n),
    accessCount: new Float64Array(b.arena, off + 8 * n, n),
    successRate: new Float32Array(b.arena, off + 16 * n, n),
    similarity: new Float32Array(b.arena, off + 20 * n, n),
  };
}

const EMPTY_F32 = new Float32Array(0);

/**
 * ValidateOptions that make validateRequest write a request's embeddings into this thread's
 * SIMD staging memory (the similarity kernel reads them in place) and its other numbers
 * straight into the chosen worker's open batch. State is per call: set `slot`, read the rest
 * after validation.
 */
class Packer implements ValidateOptions {
  readonly deferFiniteCheck = true;
  slot: Slot | null = null;
  batch: Batch | null = null;
  usedBefore = 0;
  numbers: (CandidateArrays & { similarity: Float32Array }) | null = null;
  readonly #staged = new StagedArrays();
  constructor(private readonly room: (slot: Slot, need: number) => Batch) {}

  allocQuery(dim: number): Float32Array {
    return this.#staged.allocQuery(dim);
  }

  allocCandidates(n: number, dim: number): CandidateArrays {
    const b = this.room(this.slot!, reducedBytes(n) + 8);
    this.batch = b;
    this.usedBefore = b.used;
    const nums = packNumbers(b, n, this.#staged.embeddings(n, dim));
    this.numbers = nums;
    return nums;
  }
}

async function readModelBytes(path: string): Promise<Uint8Array> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ModelError(`${path}: not a regular file`);
    if (st.size > MAX_MODEL_BYTES) throw new ModelError(`${path}: ${st.size} bytes, the limit is ${MAX_MODEL_BYTES}`);
    return await readFile(path);
  } catch (err) {
    if (err instanceof ModelError) throw err;
    throw new ModelError(`cannot read model file ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new InvalidInputError(`RouterPool: ${name} must be an integer >= 1, got ${String(v)}`);
  return v;
}

export class RouterPool {
  readonly #slots: Slot[];
  readonly #init: WorkerInit;
  /** Mirror of the workers' Router: the current model and resolved thresholds, on this thread. */
  readonly #mirror: Router;
  readonly #maxQueue: number;
  readonly #maxQueueBytes: number;
  readonly #maxBatch: number;
  /** Tasks per batch for the current load; recomputed at every flush (#retarget). */
  #batchTarget: number;
  readonly #script = workerScript(import.meta.url, 'worker');
  #arenas: ArrayBuffer[] = [];
  readonly #arenasKept: number;
  #smallArenas: ArrayBuffer[] = [];
  readonly #smallArenasKept: number;
  #nextTask = 1;
  #nextBatch = 1;
  #queued = 0;
  #queuedBytes = 0;
  #inFlight = 0;
  #completed = 0;
  #failed = 0;
  #crashes = 0;
  #seq = 0;
  #closing = false;
  /** Set once create() has all workers up; before that a dying worker is not replaced. */
  #started = false;
  #terminated = false;
  #closed: Promise<void> | null = null;
  #drainWaiters: (() => void)[] = [];
  #exclusive: Promise<unknown> = Promise.resolve();
  readonly #packer = new Packer((slot, need) => this.#batchWithRoom(slot, need));

  private constructor(init: WorkerInit, mirror: Router, workers: number, opts: RouterPoolOptions) {
    this.#init = init;
    this.#mirror = mirror;
    this.#slots = Array.from({ length: workers }, (_, i) => new Slot(i));
    this.#maxQueue = positiveInt('maxQueue', opts.maxQueue, 1024);
    this.#maxQueueBytes = positiveInt('maxQueueBytes', opts.maxQueueBytes, 32 * 1024 * 1024);
    this.#maxBatch = positiveInt('maxBatch', opts.maxBatch, 64);
    this.#batchTarget = this.#maxBatch;
    this.#arenasKept = Math.ceil(this.#maxQueueBytes / ARENA_BYTES) + workers * (MAX_INFLIGHT + 1);
    this.#smallArenasKept = 64 + workers * (MAX_INFLIGHT + 1);
  }

  /** Reads and validates the model once, starts the workers, resolves when all are ready. */
  static async create(opts: RouterPoolOptions = {}): Promise<RouterPool> {
    const source = opts.model ? (opts.model.source ?? 'model bytes') : (opts.modelPath ?? defaultModelPath());
    const bytes = opts.model ? opts.model.bytes : await readModelBytes(source);
    const model = parseModel(bytes, source);
    const features = opts.features ? { ...opts.features } : undefined;
    const policies = new PolicyTable(opts.tenantKey ?? DEFAULT_TENANT_KEY, opts.tenantPolicies);
    // The mirror validates thresholds and feature config exactly as each worker's Router will.
    const mirror = new Router({
      model,
      ...(opts.confidenceThreshold !== undefined ? { confidenceThreshold: opts.confidenceThreshold } : {}),
      ...(opts.maxUncertainty !== undefined ? { maxUncertainty: opts.maxUncertainty } : {}),
      ...(features ? { features } : {}),
      policies,
    });
    const workers = positiveInt('workers', opts.workers, Math.max(1, availableParallelism() - 1));
    const init: WorkerInit = {
      protocol: PROTOCOL_VERSION,
      model: { bytes, source },
      router: {
        ...(opts.confidenceThreshold !== undefined ? { confidenceThreshold: opts.confidenceThreshold } : {}),
        ...(opts.maxUncertainty !== undefined ? { maxUncertainty: opts.maxUncertainty } : {}),
        ...(features ? { features } : {}),
        tenantKey: policies.tenantKey,
        policies: policyEntries(policies),
      },
      testHooks: opts.testHooks === true,
      returnFeatures: opts.returnFeatures === true,
    };
    const pool = new RouterPool(init, mirror, workers, opts);
    try {
      await Promise.all(pool.#slots.map((s) => pool.#spawn(s)));
    } catch (err) {
      await pool.close({ timeout: 0 });
      throw err;
    }
    pool.#started = true;
    return pool;
  }

  get modelVersion(): string {
    return this.#mirror.modelVersion;
  }

  /** Thresholds in force in every worker (model metadata ← options ← setThresholds). */
  get thresholds(): { confidence: number; maxUncertainty: number } {
    return this.#mirror.thresholds;
  }

  get workers(): number {
    return this.#slots.length;
  }

  /** The tenant policies in force in every worker. */
  get tenantPolicies(): PolicyTable {
    return this.#mirror.policies;
  }

  stats(): PoolStats {
    return {
      workers: this.#slots.filter((s) => s.ready).length,
      inFlight: this.#inFlight,
      queued: this.#queued,
      completed: this.#completed,
      failed: this.#failed,
      crashes: this.#crashes,
      arenaBytes: this.#arenas.length * ARENA_BYTES + this.#smallArenas.length * SMALL_ARENA_BYTES,
    };
  }

  // -------------------------------------------------------------------------------------------
  // routing

  /**
   * Routes one request on a worker. Invalid input rejects with InvalidInputError (validated
   * here, before anything is queued); PoolSaturatedError / WorkerCrashedError / PoolClosedError
   * are retriable.
   */
  route(request: RoutingRequest | ValidatedRequest | unknown): Promise<RoutingResponse> {
    const refused = this.#admit();
    if (refused) return Promise.reject(refused);
    const slot = this.#pick();
    try {
      return this.#enqueueRequest(slot, request);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Routes one request still in its wire encoding (JSON text or protobuf
   * tiny_dancer.v1.RoutingRequest). Decoding and validation run on the worker, so the calling
   * thread only copies the bytes. Bad bytes reject with wire/'s DecodeError (an
   * InvalidInputError with `kind`), exactly as `decodeRequest` would throw it; payloads over
   * `opts.maxBytes` (default and cap MAX_ENCODED_BYTES) with kind 'too_large' before any copy.
   */
  async routeEncoded(bytes: Uint8Array, contentType: ContentType, opts: { maxBytes?: number } = {}): Promise<RoutingResponse> {
    if (contentType !== 'json' && contentType !== 'protobuf') {
      throw new InvalidInputError(`routeEncoded: content type must be 'json' or 'protobuf', got ${String(contentType)}`);
    }
    const limit = Math.min(opts.maxBytes ?? MAX_ENCODED_BYTES, MAX_ENCODED_BYTES);
    if (bytes.length > limit) {
      throw new DecodeError('too_large', `message is ${bytes.length} bytes, the limit is ${limit}`);
    }
    const refused = this.#admit();
    if (refused) throw refused;
    const slot = this.#pick();
    const batch = this.#batchWithRoom(slot, bytes.length + 8);
    const off = align(batch.used, 8);
    new Uint8Array(batch.arena, off, bytes.length).set(bytes);
    batch.used = off + bytes.length;
    const kind = contentType === 'protobuf' ? TaskKind.EncodedProtobuf : TaskKind.EncodedJson;
    return this.#addTask(slot, batch, [0, kind, 0, 0, off, bytes.length, -1], '', [], [], bytes.length);
  }

  #admit(): Error | null {
    if (this.#closing) return new PoolClosedError('the router pool is closed');
    if (this.#queued >= this.#maxQueue) {
      return new PoolSaturatedError(`pool saturated: ${this.#queued} tasks queued (maxQueue ${this.#maxQueue}); retry later`);
    }
    if (this.#queuedBytes >= this.#maxQueueBytes && this.#queued >= this.#slots.length) {
      return new PoolSaturatedError(`pool saturated: ${this.#queuedBytes} bytes queued (maxQueueBytes ${this.#maxQueueBytes}); retry later`);
    }
    return null;
  }

  /** Least loaded slot, preferring live ones; ties to the lowest index. */
  #pick(): Slot {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (!best) { best = s; continue; }
      const sLive = s.worker !== null;
      const bLive = best.worker !== null;
      if ((sLive && !bLive) || (sLive === bLive && s.load < best.load)) best = s;
    }
    return best!;
  }

  #enqueueRequest(slot: Slot, request: unknown): Promise<RoutingResponse> {
    const packer = this.#packer;
    let b: Batch;
    let usedBefore: number;
    let nums: CandidateArrays & { similarity: Float32Array };
    let req: ValidatedRequest;
    if (isValidatedRequest(request)) {
      // Validated by the caller, in its own buffers: the numbers are copied into the arena.
      req = request;
      const { n } = req;
      b = this.#batchWithRoom(slot, reducedBytes(n) + 8);
      usedBefore = b.used;
      nums = packNumbers(b, n);
      nums.createdAt.set(req.createdAt.subarray(0, n));
      nums.accessCount.set(req.accessCount.subarray(0, n));
      nums.successRate.set(req.successRate.subarray(0, n));
    } else {
      packer.slot = slot;
      packer.batch = null;
      try {
        req = validateRequest(request, packer);
      } catch (err) {
        const partial = packer.batch as Batch | null; // set by allocCandidates if validation got that far
        if (partial) partial.used = packer.usedBefore;
        throw err;
      }
      b = packer.batch!;
      usedBefore = packer.usedBefore;
      nums = packer.numbers!;
    }
    const { n, dim } = req;
    // Embeddings staged by the packer are read in place; a caller's own buffers are copied into
    // the staging memory by the kernel. Either way they are read once, here.
    cosineBatch(req.query, req.embeddings, n, dim, nums.similarity);
    try {
      completeFiniteCheck(req, nums.similarity);
    } catch (err) {
      b.used = usedBefore;
      throw err;
    }

    let metaIdx = -1;
    for (const _k in req.metadata) {
      // Only requests with metadata need the maps in the worker (metadata-overlap feature).
      b.meta ??= [];
      metaIdx = b.meta.length;
      b.meta.push({ metadata: req.metadata, candidateMetadata: req.candidateMetadata });
      break;
    }
    // A task holds its candidates' metadata only when there is some: n empty maps kept while in
    // flight survived young-generation GCs and were promoted, at a visible CPU cost.
    return this.#addTask(slot, b, [0, TaskKind.Reduced, dim, n, nums.createdAt.byteOffset, 0, metaIdx], req.request_id, req.ids,
      noMetadata(req.candidateMetadata, n) ? null : req.candidateMetadata, b.used - usedBefore, requestTopK(req.metadata));
  }

  #addTask(slot: Slot, batch: Batch, row: number[], requestId: string, ids: string[], meta: Record<string, string>[] | null, bytes: number, topK?: number): Promise<RoutingResponse> {
    const id = this.#nextTask++;
    row[0] = id;
    return new Promise<RoutingResponse>((resolve, reject) => {
      const task: Task = { id, resolve, reject, requestId, ids, candidateMetadata: meta, bytes, topK };
      for (const v of row) batch.index.push(v);
      batch.tasks.push(task);
      slot.load++;
      this.#queued++;
      this.#queuedBytes += bytes;
      batch.candidates += row[3]!;
      if (batch.tasks.length >= this.#batchTarget || batch.candidates >= MAX_BATCH_CANDIDATES) batch.sealed = true;
      this.#scheduleFlush(slot);
    });
  }

  /**
   * The slot's open batch if it has room for `need` more bytes (plus this task's index row),
   * else a new one.
   */
  #batchWithRoom(slot: Slot, need: number): Batch {
    const last = slot.queue[slot.queue.length - 1];
    need += INDEX_ROW_BYTES;
    if (last && !last.sealed) {
      if (last.arena.byteLength - align(last.used, 16) - (last.tasks.length + 1) * INDEX_ROW_BYTES - 8 >= need) return last;
      if (last.tasks.length === 0) {
        this.#releaseArena(last.arena);
        last.arena = this.#takeArena(need);
        last.used = 0;
        return last;
      }
      last.sealed = true;
    }
    const arena = this.#takeArena(need + 8, this.#batchTarget * need * RESULT_ROOM_FACTOR + 8);
    const batch: Batch = { id: this.#nextBatch++, arena, used: 0, index: [], tasks: [], meta: null, sealed: false, candidates: 0 };
    slot.queue.push(batch);
    return batch;
  }

  /** An arena with room for `need` bytes; a small one when the whole batch should fit in it. */
  #takeArena(need: number, expected = need): ArrayBuffer {
    if (expected <= SMALL_ARENA_BYTES && need <= SMALL_ARENA_BYTES) return this.#smallArenas.pop() ?? new ArrayBuffer(SMALL_ARENA_BYTES);
    if (need <= ARENA_BYTES) return this.#arenas.pop() ?? new ArrayBuffer(ARENA_BYTES);
    return new ArrayBuffer(align(need, 65536));
  }

  /**
   * Keeps a standard or small arena for reuse. Enough standard ones are kept for the peak the
   * bounds allow (the queue's bytes plus every worker's in-flight batches): a fresh arena costs
   * page faults on first touch and GC accounting, measured (with the former 2 MiB arenas) at ~2×
   * the CPU per 100-candidate request when the pool ran short of recycled ones. Small ones, for a burst of
   * small batches. Oversized one-off arenas are dropped.
   */
  #releaseArena(arena: ArrayBuffer): void {
    if (arena.byteLength === ARENA_BYTES) {
      if (this.#arenas.length < this.#arenasKept) this.#arenas.push(arena);
    } else if (arena.byteLength === SMALL_ARENA_BYTES && this.#smallArenas.length < this.#smallArenasKept) this.#smallArenas.push(arena);
  }

  #scheduleFlush(slot: Slot): void {
    // setImmediate, not a microtask: callers that await in a loop (16 "lanes" resolved by one
    // results message) all get to enqueue before the batch is posted.
    if (slot.flushScheduled || !slot.ready || slot.inflight.size >= MAX_INFLIGHT) return;
    slot.flushScheduled = true;
    setImmediate(() => {
      slot.flushScheduled = false;
      this.#retarget();
      this.#pump(slot);
    });
  }

  /**
   * Sizes the next batches so every worker always has one batch running and one waiting while
   * this thread fills the next: outstanding tasks / (workers × MAX_INFLIGHT), within
   * [1, maxBatch]. WHY: with one batch as large as the whole load (64 callers, maxBatch 64)
   * the two threads take turns — the worker idles while this thread turns results into
   * decisions and packs the next requests, then this thread idles while the worker scores.
   * Measured on 2 cores, 10 candidates, 64 callers, 1 worker: ~45k req/s with both threads
   * ~60% idle at batches of 64, ~95k at batches of 32. Computed when a flush runs, i.e. after
   * the callers woken by the last results have queued their next requests, so in a steady
   * stream it sees the whole load; the first burst after idling uses the previous estimate.
   */
  #retarget(): void {
    const perBatch = Math.ceil((this.#queued + this.#inFlight) / (this.#slots.length * MAX_INFLIGHT));
    this.#batchTarget = Math.min(this.#maxBatch, Math.max(1, perBatch));
  }

  /**
   * Posts queued batches while the worker has room. The open (not yet full) batch goes only when
   * the worker would otherwise idle: while it has work, the open batch keeps filling. WHY: a
   * closed loop of callers preserves batch sizes (a batch of 16 coming back wakes 16 callers,
   * who queue 16 new requests), so a partial batch posted early splits the load into more,
   * smaller batches for good — measured at 10 candidates, 64 callers: 190k req/s with two
   * batches of 32 alternating, 110–140k once split into 16 + 16 + 32 or 28 + 8 + 28.
   */
  #pump(slot: Slot): void {
    const w = slot.worker;
    if (!w || !slot.ready) return;
    while (slot.inflight.size < MAX_INFLIGHT && slot.queue.length > 0) {
      if (!slot.queue[0]!.sealed && slot.inflight.size > 0 && !this.#closing) break;
      const batch = slot.queue.shift()!;
      if (batch.tasks.length === 0) {
        this.#releaseArena(batch.arena);
        continue;
      }
      batch.sealed = true;
      const count = batch.tasks.length;
      const indexOffset = align(batch.used, 8);
      new Float64Array(batch.arena, indexOffset, batch.index.length).set(batch.index);
      let bytes = 0;
      for (const t of batch.tasks) bytes += t.bytes;
      this.#queued -= count;
      this.#queuedBytes -= bytes;
      this.#inFlight += count;
      slot.inflight.set(batch.id, batch);
      const msg: ToWorker = { type: 'route', batchId: batch.id, arena: batch.arena, indexOffset, count, meta: batch.meta };
      w.postMessage(msg, [batch.arena]);
    }
  }

  #onResults(slot: Slot, msg: RouteResults): void {
    const batch = slot.inflight.get(msg.batchId);
    if (!batch) return; // a batch of a crashed generation: already failed
    slot.inflight.delete(msg.batchId);
    slot.consecutiveCrashes = 0;
    const errors = new Map<number, TaskError>();
    if (msg.errors) for (const e of msg.errors) errors.set(e.taskId, e);
    const decoded = new Map<number, DecodedInfo>();
    if (msg.decoded) for (const d of msg.decoded) decoded.set(d.taskId, d);
    const data = msg.data ?? new Float64Array(msg.arena, 0, msg.resultsLength);
    const version = msg.modelVersion;
    let p = 0;
    for (const task of batch.tasks) {
      slot.load--;
      this.#inFlight--;
      if (data[p + R_ID] !== task.id) {
        // Protocol bug: never resolve a task with another task's answer.
        this.#failed++;
        task.reject(new TinyDancerError(`router pool protocol error: result for task ${data[p + R_ID]} where ${task.id} was expected`));
        continue;
      }
      const n = data[p + R_N]!;
      if (data[p + R_STATUS] === TaskStatus.Ok) {
        const info = decoded.get(task.id);
        if (info) {
          task.requestId = info.request_id;
          task.ids = info.ids;
          task.candidateMetadata = info.candidateMetadata;
          task.topK = info.topK ?? undefined;
        }
        this.#completed++;
        const pi = data[p + R_POLICY]!;
        const policy = pi >= 0 && msg.policies ? (msg.policies[pi] ?? GLOBAL_POLICY) : GLOBAL_POLICY;
        task.resolve(this.#response(task, data, p, n, version, policy));
      } else {
        this.#failed++;
        task.reject(this.#rebuildError(errors.get(task.id)));
      }
      p += RESULT_HEADER + n * (DECISION_STRIDE + (this.#init.returnFeatures ? FEATURE_COUNT : 0)); // n is 0 for a failed task
    }
    this.#releaseArena(msg.arena);
    this.#pump(slot);
    this.#checkDrained();
  }

  #response(task: Task, data: Float64Array, p: number, n: number, version: string, policy: string): RoutingResponse {
    const { requestId, ids, candidateMetadata } = task;
    const decisions = new Array<RoutingDecision>(n);
    let lightweight = 0;
    for (let r = 0, q = p + RESULT_HEADER; r < n; r++, q += DECISION_STRIDE) lightweight += data[q + D_CODE]! & 1;
    let q = p + RESULT_HEADER;
    for (let r = 0; r < n; r++, q += DECISION_STRIDE) {
      const i = data[q + D_INDEX]!;
      const code = data[q + D_CODE]!;
      // Same fields, same order as Router#route builds them.
      decisions[r] = {
        request_id: requestId,
        candidate_id: ids[i]!,
        confidence: data[q + D_CONF]!,
        uncertainty: data[q + D_UNC]!,
        use_lightweight: (code & 1) === 1,
        rank: r,
        model_version: version,
        reason: REASONS[code >> 1] as DecisionReason,
        metadata: candidateMetadata ? candidateMetadata[i]! : EMPTY_METADATA,
        inference_time_us: data[q + D_TIME]!,
        candidate_count: n,
        lightweight_count: lightweight,
        policy,
      };
    }
    const response: RoutingResponse = {
      decisions,
      inference_time_us: data[p + R_INFER]!,
      feature_time_us: data[p + R_FEAT]!,
      candidates_processed: data[p + R_PROCESSED]!,
      policy,
    };
    if (task.topK !== undefined) response.top_k = task.topK;
    if (this.#init.returnFeatures) response.features = Float32Array.from(data.subarray(q, q + n * FEATURE_COUNT));
    return response;
  }

  #rebuildError(e: TaskError | undefined): Error {
    if (!e) return new TinyDancerError('router pool: a task failed without an error report');
    if (e.name === 'DecodeError' && e.kind) {
      return new DecodeError(e.kind as DecodeErrorKind, e.message);
    }
    if (e.name === 'InvalidInputError' || e.name === 'DecodeError') return new InvalidInputError(e.message);
    if (e.name === 'ModelError') return new ModelError(e.message);
    return new TinyDancerError(e.message, { retriable: e.retriable });
  }

  // -------------------------------------------------------------------------------------------
  // workers

  #spawn(slot: Slot): Promise<void> {
    const { target, eval: isEval } = this.#script;
    const w = new Worker(target, { workerData: this.#init, eval: isEval });
    slot.worker = w;
    slot.ready = false;
    slot.lastError = undefined;
    const ready = new Promise<void>((resolve, reject) => slot.readyWaiters.push({ resolve, reject }));
    w.on('message', (m: FromWorker) => this.#onMessage(slot, w, m));
    w.on('error', (err) => {
      if (slot.worker === w) slot.lastError = err;
    });
    w.on('exit', (code) => this.#onExit(slot, w, code));
    return ready;
  }

  #onMessage(slot: Slot, w: Worker, m: FromWorker): void {
    if (slot.worker !== w) return;
    switch (m.type) {
      case 'results':
        this.#onResults(slot, m);
        return;
      case 'ready': {
        slot.ready = true;
        for (const r of slot.readyWaiters.splice(0)) r.resolve();
        this.#pump(slot);
        return;
      }
      case 'init-failed':
        slot.lastError = new ModelError(`worker ${slot.index} could not start: ${m.message}`);
        return;
      default:
        for (const c of slot.controls) {
          if (c.match(m)) {
            slot.controls.delete(c);
            c.resolve(m);
            return;
          }
        }
    }
  }

  #onExit(slot: Slot, w: Worker, code: number): void {
    if (slot.worker !== w) return;
    slot.worker = null;
    slot.ready = false;
    if (this.#terminated) return;
    this.#crashes++;
    const why = slot.lastError !== undefined ? `: ${errorMessage(slot.lastError)}` : '';
    const err = new WorkerCrashedError(`router worker ${slot.index} exited with code ${code}${why}`, { cause: slot.lastError });
    for (const batch of slot.inflight.values()) {
      for (const t of batch.tasks) {
        slot.load--;
        this.#inFlight--;
        this.#failed++;
        t.reject(err);
      }
    }
    slot.inflight.clear();
    for (const c of slot.controls) c.reject(err);
    slot.controls.clear();
    for (const r of slot.readyWaiters.splice(0)) r.reject(err);
    if (this.#closing || !this.#started) {
      // No replacement while closing (or while create() is failing): fail what was waiting for this worker now.
      this.#failQueued(slot, err);
      this.#checkDrained();
      return;
    }
    const delay = RESPAWN_BACKOFF_MS[Math.min(slot.consecutiveCrashes, RESPAWN_BACKOFF_MS.length - 1)]!;
    slot.consecutiveCrashes++;
    const respawn = (): void => {
      if (this.#closing || slot.worker) return;
      // A replacement that fails to start is handled by its own exit event (next backoff step).
      this.#spawn(slot).catch(() => {});
    };
    if (delay === 0) respawn();
    else setTimeout(respawn, delay);
    this.#checkDrained();
  }

  #failQueued(slot: Slot, err: Error): void {
    for (const batch of slot.queue.splice(0)) {
      for (const t of batch.tasks) {
        slot.load--;
        this.#queued--;
        this.#queuedBytes -= t.bytes;
        this.#failed++;
        t.reject(err);
      }
    }
  }

  /** Sends a control message and waits for the worker's matching answer (or its death). */
  #control<T extends FromWorker>(slot: Slot, msg: ToWorker, match: (m: FromWorker) => m is T): Promise<T> {
    const w = slot.worker;
    if (!w || !slot.ready) return Promise.reject(new WorkerCrashedError(`router worker ${slot.index} is not running`));
    return new Promise<T>((resolve, reject) => {
      slot.controls.add({ match, resolve: resolve as (m: FromWorker) => void, reject });
      w.postMessage(msg);
    });
  }

  async #allReady(): Promise<void> {
    const waits = this.#slots.filter((s) => !s.ready).map((s) => new Promise<void>((resolve, reject) => s.readyWaiters.push({ resolve, reject })));
    if (waits.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new WorkerCrashedError(`router workers not ready after ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([Promise.all(waits), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs reloads and threshold changes one at a time. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#exclusive.then(fn, fn);
    this.#exclusive = run.catch(() => {});
    return run;
  }

  // -------------------------------------------------------------------------------------------
  // control

  /**
   * Loads a new model into every worker, atomically: validated once here (ModelError, old model
   * stays), prepared in all workers, then committed in all. Resolves when every worker uses it.
   */
  reload(model: string | { bytes: Uint8Array; source?: string }): Promise<{ version: string }> {
    return this.#serial(async () => {
      if (this.#closing) throw new PoolClosedError('the router pool is closed');
      const source = typeof model === 'string' ? model : (model.source ?? 'model bytes');
      const bytes = typeof model === 'string' ? await readModelBytes(model) : model.bytes;
      const parsed = parseModel(bytes, source); // ModelError: refused before any worker sees it
      assertRoutable(parsed);
      await this.#allReady();
      const reloadId = ++this.#seq;
      const slots = [...this.#slots];
      const workers = slots.map((s) => s.worker);
      const isPrepared = (m: FromWorker): m is Extract<FromWorker, { type: 'prepared' }> => m.type === 'prepared' && m.reloadId === reloadId;
      const isCommitted = (m: FromWorker): m is Extract<FromWorker, { type: 'committed' }> => m.type === 'committed' && m.reloadId === reloadId;
      let prepared;
      try {
        prepared = await Promise.all(slots.map((s) => this.#control(s, { type: 'prepare', reloadId, bytes, source }, isPrepared)));
      } catch (err) {
        this.#broadcast({ type: 'abort', reloadId });
        throw err;
      }
      const bad = prepared.find((p) => !p.ok);
      if (bad && !bad.ok) {
        this.#broadcast({ type: 'abort', reloadId });
        throw new ModelError(`reload of ${source} refused by a worker: ${bad.message}; the old model stays`);
      }
      // A worker replaced after it acknowledged (its replacement started with the old model)
      // would miss the switch: abort, the old model stays everywhere.
      if (slots.some((s, i) => s.worker !== workers[i])) {
        this.#broadcast({ type: 'abort', reloadId });
        throw new WorkerCrashedError(`a router worker was replaced during the reload of ${source}; the old model stays, retry`);
      }
      // No await between the check above and this line: from here replacements start with the
      // new model, so a crash during the commit phase is harmless.
      this.#init.model = { bytes, source };
      await Promise.all(
        slots.map((s) =>
          this.#control(s, { type: 'commit', reloadId }, isCommitted).catch((err) => {
            if (err instanceof WorkerCrashedError) return; // replaced, with the new model
            throw err;
          }),
        ),
      );
      this.#mirror.swapModel(parsed);
      return { version: parsed.version };
    });
  }

  /** Sets thresholds in every worker (and for replacements); resolves when all applied them. */
  setThresholds(t: { confidence?: number; maxUncertainty?: number }): Promise<void> {
    return this.#serial(async () => {
      if (this.#closing) throw new PoolClosedError('the router pool is closed');
      for (const [k, v] of Object.entries(t)) {
        if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) {
          throw new InvalidInputError(`threshold ${k} must be a number in [0, 1], got ${String(v)}`);
        }
      }
      this.#mirror.setThresholds(t);
      if (t.confidence !== undefined) this.#init.router.confidenceThreshold = t.confidence;
      if (t.maxUncertainty !== undefined) this.#init.router.maxUncertainty = t.maxUncertainty;
      await this.#allReady();
      const seq = ++this.#seq;
      const msg: ToWorker = { type: 'thresholds', seq, ...t };
      const acks = await Promise.all(
        this.#slots.map((s) =>
          this.#control(s, msg, (m): m is Extract<FromWorker, { type: 'thresholds-set' }> => m.type === 'thresholds-set' && m.seq === seq)
            .catch((err) => {
              if (err instanceof WorkerCrashedError) return null; // its replacement reads #init
              throw err;
            }),
        ),
      );
      const bad = acks.find((a) => a && !a.ok);
      if (bad && !bad.ok) throw new InvalidInputError(`thresholds refused: ${bad.message}`);
    });
  }

  /**
   * Replaces the tenant policies in every worker (and for replacements); resolves when all use
   * them. A bad policy is refused (InvalidInputError) before any worker sees it. `tenantKey`
   * defaults to the current one.
   */
  setTenantPolicies(policies: TenantPolicies, tenantKey: string = this.#mirror.policies.tenantKey): Promise<void> {
    return this.#serial(async () => {
      if (this.#closing) throw new PoolClosedError('the router pool is closed');
      const table = new PolicyTable(tenantKey, policies);
      const entries = policyEntries(table);
      this.#mirror.setPolicies(table);
      this.#init.router.tenantKey = table.tenantKey;
      this.#init.router.policies = entries;
      await this.#allReady();
      const seq = ++this.#seq;
      const msg: ToWorker = { type: 'policies', seq, tenantKey: table.tenantKey, policies: entries };
      const acks = await Promise.all(
        this.#slots.map((s) =>
          this.#control(s, msg, (m): m is Extract<FromWorker, { type: 'policies-set' }> => m.type === 'policies-set' && m.seq === seq)
            .catch((err) => {
              if (err instanceof WorkerCrashedError) return null; // its replacement reads #init
              throw err;
            }),
        ),
      );
      const bad = acks.find((a) => a && !a.ok);
      if (bad && !bad.ok) throw new InvalidInputError(`tenant policies refused: ${bad.message}`);
    });
  }

  #broadcast(msg: ToWorker): void {
    for (const s of this.#slots) s.worker?.postMessage(msg);
  }

  /** Test hook: makes worker `index` exit with `code` (requires `testHooks: true`). */
  crashWorkerForTest(index = 0, code = 13): void {
    if (!this.#init.testHooks) throw new InvalidInputError('crashWorkerForTest needs RouterPool.create({ testHooks: true })');
    const s = this.#slots[index];
    if (!s?.worker) throw new InvalidInputError(`no running worker ${index}`);
    const msg: ToWorker = { type: '__crashForTest', code };
    s.worker.postMessage(msg);
  }

  // -------------------------------------------------------------------------------------------
  // shutdown

  #checkDrained(): void {
    if (this.#queued === 0 && this.#inFlight === 0) for (const r of this.#drainWaiters.splice(0)) r();
  }

  /**
   * Stops accepting, lets queued and in-flight tasks finish for up to `timeout` ms (default
   * 10 s), then terminates the workers; tasks still unfinished reject with PoolClosedError.
   */
  close(opts: { timeout?: number } = {}): Promise<void> {
    this.#closed ??= this.#close(opts.timeout ?? 10_000);
    return this.#closed;
  }

  async #close(timeout: number): Promise<void> {
    this.#closing = true;
    for (const s of this.#slots) this.#pump(s);
    if (this.#queued > 0 || this.#inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#drainWaiters.push(resolve)),
        new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, timeout)); }),
      ]);
      clearTimeout(timer);
    }
    this.#terminated = true;
    const err = new PoolClosedError(`router pool closed (timeout ${timeout} ms) before the task finished`);
    await Promise.all(this.#slots.map((s) => s.worker?.terminate()));
    for (const s of this.#slots) {
      for (const batch of s.inflight.values()) {
        for (const t of batch.tasks) {
          this.#inFlight--;
          this.#failed++;
          t.reject(err);
        }
      }
      s.inflight.clear();
      this.#failQueued(s, err);
      s.load = 0;
      for (const c of s.controls) c.reject(err);
      s.controls.clear();
      for (const r of s.readyWaiters.splice(0)) r.reject(err);
      s.worker = null;
      s.ready = false;
    }
  }
}
