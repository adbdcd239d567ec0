// RouterPool (docs/contracts.md §7): the Router on worker threads, for throughput.
//
// Shape (ideas from piscina, no code): a fixed set of worker slots, each running one Router.
//   route()  validates on the calling thread (bad input rejects at once, with the Router's
//            message). The embeddings are copied once, into this thread's WebAssembly staging
//            memory, and reduced there to n cosine similarities by the SIMD kernel; the numbers
//            the worker needs (24 bytes per candidate) go straight into the ArrayBuffer that is
//            transferred to it (arena.ts; messages.ts says why embeddings do not travel).
//   dispatch least-loaded slot (tasks queued + in flight). Concurrent route() calls are
//            coalesced into batches, one message per worker (batcher.ts).
//   bound    tasks not yet posted are bounded (maxQueue, maxQueueBytes); beyond that route()
//            rejects with PoolSaturatedError (retriable) instead of growing without bound.
//   results  come back as numbers (messages.ts); the decision objects are built here, with the
//            ids and metadata that never left this thread (results.ts). Arenas are reused.
//   crash    a worker that exits or throws fails exactly its in-flight tasks with
//            WorkerCrashedError (retriable) and is replaced (with backoff if it keeps dying);
//            its not-yet-posted tasks wait for the replacement (worker-slot.ts).
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
import { InvalidInputError } from '../../errors.js';
import { DecodeError } from '../../wire/errors.js';
import type { FeatureConfig } from '../features.js';
import { defaultModelPath, parseModel } from '../model.js';
import { Router } from '../router.js';
import { DEFAULT_TENANT_KEY, PolicyTable, policyEntries, type TenantPolicies } from '../policy.js';
import type { PackedRoutingRequest, RoutingRequest, RoutingResponse } from '../../wire/types.js';
import { requestTopK } from '../../wire/response.js';
import { completeFiniteCheck, isValidatedRequest, noMetadata, validateRequest, type ValidatedRequest } from '../validate.js';
import { cosineBatch } from '../features.js';
import { ARENA_BYTES, ArenaCache, Packer, packBytes, packNumbers, type PackedNumbers } from './arena.js';
import { Batcher, MAX_INFLIGHT, releaseBatch, settleTask, type Batch, type Task } from './batcher.js';
import { PoolClosedError, PoolSaturatedError } from './errors.js';
import { PROTOCOL_VERSION, TaskKind, reducedBytes, type RouteResults, type WorkerInit } from './messages.js';
import { PoolControl, readModelBytes } from './pool-control.js';
import { decodeResults } from './results.js';
import { WorkerSlot, type SlotHost } from './worker-slot.js';

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

/** Raw encoded payloads larger than this are refused before copying. */
export const MAX_ENCODED_BYTES = 64 * 1024 * 1024;

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new InvalidInputError(`RouterPool: ${name} must be an integer >= 1, got ${String(v)}`);
  return v;
}

export class RouterPool {
  readonly #slots: WorkerSlot[];
  readonly #init: WorkerInit;
  /** Mirror of the workers' Router: the current model and resolved thresholds, on this thread. */
  readonly #mirror: Router;
  readonly #maxQueue: number;
  readonly #maxQueueBytes: number;
  readonly #batcher: Batcher;
  #nextTask = 1;
  #queued = 0;
  #queuedBytes = 0;
  #inFlight = 0;
  #completed = 0;
  #failed = 0;
  #crashes = 0;
  #closing = false;
  /** Set once create() has all workers up; before that a dying worker is not replaced. */
  #started = false;
  #closed: Promise<void> | null = null;
  #drainWaiters: (() => void)[] = [];
  readonly #control: PoolControl;
  readonly #packer = new Packer<WorkerSlot, Batch>((slot, need) => this.#batcher.batchWithRoom(slot.queue, need));

  private constructor(init: WorkerInit, mirror: Router, workers: number, opts: RouterPoolOptions) {
    this.#init = init;
    this.#mirror = mirror;
    this.#control = new PoolControl({ slots: () => this.#slots, init, mirror, closing: () => this.#closing });
    this.#maxQueue = positiveInt('maxQueue', opts.maxQueue, 1024);
    this.#maxQueueBytes = positiveInt('maxQueueBytes', opts.maxQueueBytes, 32 * 1024 * 1024);
    const maxBatch = positiveInt('maxBatch', opts.maxBatch, 64);
    // Arenas kept: the queue's bytes plus every worker's in-flight and open batches.
    const arenas = new ArenaCache(Math.ceil(this.#maxQueueBytes / ARENA_BYTES) + workers * (MAX_INFLIGHT + 1), 64 + workers * (MAX_INFLIGHT + 1));
    this.#batcher = new Batcher(maxBatch, arenas);
    const host: SlotHost = {
      workerInit: () => this.#init,
      replaces: () => this.#started && !this.#closing,
      onReady: (slot) => this.#pump(slot),
      onResults: (slot, msg) => this.#onResults(slot, msg),
      onTaskFailed: (task, err, queued) => {
        if (queued) {
          this.#queued--;
          this.#queuedBytes -= task.bytes;
        } else this.#inFlight--;
        this.#failed++;
        settleTask(task, { ok: false, error: err });
      },
      onCrash: () => {
        this.#crashes++;
        this.#checkDrained();
      },
    };
    this.#slots = Array.from({ length: workers }, (_, i) => new WorkerSlot(i, host));
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
      await Promise.all(pool.#slots.map((s) => s.spawn()));
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
      arenaBytes: this.#batcher.arenas.bytes,
    };
  }

  // -------------------------------------------------------------------------------------------
  // routing

  /**
   * Routes one request on a worker. Invalid input rejects with InvalidInputError (validated
   * here, before anything is queued); PoolSaturatedError / WorkerCrashedError / PoolClosedError
   * are retriable. Embeddings packed in `candidate_embeddings` (PackedRoutingRequest) are
   * copied in one piece.
   */
  route(request: RoutingRequest | PackedRoutingRequest | ValidatedRequest | unknown): Promise<RoutingResponse> {
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
    const batch = this.#batcher.batchWithRoom(slot.queue, bytes.length + 8);
    const off = packBytes(batch, bytes);
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
  #pick(): WorkerSlot {
    let best: WorkerSlot | undefined;
    for (const s of this.#slots) {
      if (!best) { best = s; continue; }
      const sLive = s.alive;
      const bLive = best.alive;
      if ((sLive && !bLive) || (sLive === bLive && s.load < best.load)) best = s;
    }
    return best!;
  }

  #enqueueRequest(slot: WorkerSlot, request: unknown): Promise<RoutingResponse> {
    const packer = this.#packer;
    let b: Batch;
    let usedBefore: number;
    let nums: PackedNumbers;
    let req: ValidatedRequest;
    if (isValidatedRequest(request)) {
      // Validated by the caller, in its own buffers: the numbers are copied into the arena.
      req = request;
      const { n } = req;
      b = this.#batcher.batchWithRoom(slot.queue, reducedBytes(n) + 8);
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

  #addTask(slot: WorkerSlot, batch: Batch, row: number[], requestId: string, ids: string[], meta: Record<string, string>[] | null, bytes: number, topK?: number): Promise<RoutingResponse> {
    const id = this.#nextTask++;
    row[0] = id;
    return new Promise<RoutingResponse>((resolve, reject) => {
      const task: Task = { id, resolve, reject, requestId, ids, candidateMetadata: meta, bytes, topK };
      this.#batcher.add(batch, task, row);
      slot.load++;
      this.#queued++;
      this.#queuedBytes += bytes;
      this.#scheduleFlush(slot);
    });
  }

  #scheduleFlush(slot: WorkerSlot): void {
    // setImmediate, not a microtask: callers that await in a loop (many "lanes" resolved by one
    // results message) all get to enqueue before the batch is posted.
    if (slot.flushScheduled || !slot.ready || slot.inflight.size >= MAX_INFLIGHT) return;
    slot.flushScheduled = true;
    setImmediate(() => {
      slot.flushScheduled = false;
      this.#batcher.retarget(this.#queued + this.#inFlight, this.#slots.length);
      this.#pump(slot);
    });
  }

  /** Posts queued batches while the worker has room (the batcher picks which). */
  #pump(slot: WorkerSlot): void {
    if (!slot.ready) return;
    while (true) {
      const batch = this.#batcher.next(slot.queue, slot.inflight.size, this.#closing);
      if (!batch) return;
      const msg = this.#batcher.message(batch);
      let bytes = 0;
      for (const t of batch.tasks) bytes += t.bytes;
      this.#queued -= msg.count;
      this.#queuedBytes -= bytes;
      this.#inFlight += msg.count;
      slot.inflight.set(batch.id, batch);
      slot.post(msg, [batch.arena]);
    }
  }

  #onResults(slot: WorkerSlot, msg: RouteResults): void {
    const batch = slot.answered(msg.batchId);
    if (!batch) return;
    const outcomes = decodeResults(msg, batch.tasks, this.#init.returnFeatures);
    for (let i = 0; i < batch.tasks.length; i++) {
      const task = batch.tasks[i]!;
      const o = outcomes[i]!;
      slot.load--;
      this.#inFlight--;
      if (o.ok) this.#completed++;
      else this.#failed++;
      settleTask(task, o);
    }
    releaseBatch(batch);
    this.#batcher.arenas.release(msg.arena);
    this.#pump(slot);
    this.#checkDrained();
  }

  // -------------------------------------------------------------------------------------------
  // control

  /**
   * Loads a new model into every worker, atomically: validated once here (ModelError, old model
   * stays), prepared in all workers, then committed in all. Resolves when every worker uses it.
   */
  reload(model: string | { bytes: Uint8Array; source?: string }): Promise<{ version: string }> {
    return this.#control.reload(model);
  }

  /** Sets thresholds in every worker (and for replacements); resolves when all applied them. */
  setThresholds(t: { confidence?: number; maxUncertainty?: number }): Promise<void> {
    return this.#control.setThresholds(t);
  }

  /**
   * Replaces the tenant policies in every worker (and for replacements); resolves when all use
   * them. A bad policy is refused (InvalidInputError) before any worker sees it. `tenantKey`
   * defaults to the current one.
   */
  setTenantPolicies(policies: TenantPolicies, tenantKey: string = this.#mirror.policies.tenantKey): Promise<void> {
    return this.#control.setTenantPolicies(policies, tenantKey);
  }

  /** Test hook: makes worker `index` exit with `code` (requires `testHooks: true`). */
  crashWorkerForTest(index = 0, code = 13): void {
    if (!this.#init.testHooks) throw new InvalidInputError('crashWorkerForTest needs RouterPool.create({ testHooks: true })');
    const s = this.#slots[index];
    if (!s?.ready) throw new InvalidInputError(`no running worker ${index}`);
    s.post({ type: '__crashForTest', code });
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
    const err = new PoolClosedError(`router pool closed (timeout ${timeout} ms) before the task finished`);
    await Promise.all(this.#slots.map((s) => s.terminate(err)));
  }
}
