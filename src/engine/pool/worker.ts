// A RouterPool worker thread: one Router, fed batches of tasks by the main thread (see
// messages.ts for the wire layout and why it is binary).
//
// Guarantees the pool relies on:
// - Messages are handled strictly one after another (an explicit promise chain, because
//   decoding encoded tasks may first have to load the decoder module asynchronously). So a batch
//   is scored wholly with the model that was current when it started, and a `commit` takes
//   effect exactly between two batches: every request sees exactly one model.
// - A task that fails (bad input decoded here, or an engine error) fails alone; the batch goes on.
// - Anything thrown outside a task is a bug: it escapes as an uncaught exception, the thread
//   dies, and the pool fails this worker's in-flight tasks and replaces it.
import { errorMessage } from '../../errors.js';
import { toThreadError } from '../../threads/error.js';
import { threadPort } from '../../threads/port.js';
import { parseModel, type LoadedModel } from '../model.js';
import { Router, assertRoutable } from '../router.js';
import { GLOBAL_POLICY, policyTableFrom } from '../policy.js';
import { FEATURE_COUNT } from '../features.js';
import { cellSimdAvailable } from '../simd/fastgrnn-simd.js';
import { EMPTY_METADATA, noMetadata, type ValidatedRequest } from '../validate.js';
import { requestTopK } from '../../wire/response.js';
import {
  DECISION_STRIDE, D_CODE, D_CONF, D_INDEX, D_TIME, D_UNC, REASONS, RESULT_HEADER, R_FEAT, R_ID, R_INFER, R_N,
  R_POLICY, R_PROCESSED, R_STATUS, TASK_STRIDE, T_DATA, T_DIM, T_ID, T_KIND, T_LEN, T_META, T_N, TaskKind, TaskStatus,
  type DecodedInfo, type FromWorker, type RouteBatch, type TaskError, type ToWorker, type WorkerInit,
} from './messages.js';

const thread = threadPort<WorkerInit, ToWorker, FromWorker>('src/engine/pool/worker.ts (RouterPool spawns it)');
const { init, post } = thread;

// Requests validated on the main thread arrive without their ids and metadata (the main
// thread keeps them and builds the decision objects); Router.rankValidated reads neither, so
// placeholders shared by all tasks stand in for them.
let indexIds: string[] = [];
function idsFor(n: number): string[] {
  if (indexIds.length < n) indexIds = Array.from({ length: Math.max(n, 2 * indexIds.length) }, (_, i) => String(i));
  return indexIds;
}
let emptyMetas: Record<string, string>[] = [];
function emptyMetaFor(n: number): Record<string, string>[] {
  if (emptyMetas.length < n) emptyMetas = new Array<Record<string, string>>(Math.max(n, 2 * emptyMetas.length)).fill(EMPTY_METADATA);
  return emptyMetas;
}

function buildRouter(model: LoadedModel): Router {
  const opts = init.router;
  const r = new Router({
    model,
    ...(opts.confidenceThreshold !== undefined ? { confidenceThreshold: opts.confidenceThreshold } : {}),
    ...(opts.maxUncertainty !== undefined ? { maxUncertainty: opts.maxUncertainty } : {}),
    ...(opts.features !== undefined ? { features: opts.features } : {}),
    ...(opts.tenantKey !== undefined ? { policies: policyTableFrom(opts.tenantKey, opts.policies ?? []) } : {}),
  });
  return r;
}

let router: Router;
try {
  router = buildRouter(parseModel(init.model.bytes, init.model.source));
} catch (err) {
  thread.startFailed(err, false);
  // Leave with a distinct code; the pool reports the message above, not the exit.
  process.exit(70);
}

let prepared: { reloadId: number; model: LoadedModel } | null = null;

// Lazily loaded: only pools that receive encoded requests pay for the request decoder (and
// protobufjs, which its schema check loads).
type Codec = typeof import('../decode.js');
let codec: Codec | null = null;

/** Growable float64 output for one batch's results. */
class Out {
  buf: Float64Array;
  len = 0;
  constructor(cap: number) {
    this.buf = new Float64Array(Math.max(cap, 64));
  }
  
  reserve(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const next = new Float64Array(Math.max(this.len + extra, this.buf.length * 2));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
}

// Router.rankValidated writes each decision's index, confidence, uncertainty and code at
// offsets 0..3, which must be the protocol's.
if (D_INDEX !== 0 || D_CONF !== 1 || D_UNC !== 2 || D_CODE !== 3) throw new Error('decision layout out of step with Router.rankValidated');

// PERF: the layout constants of the per-decision loops as module constants, read once at load:
// where the modules are transpiled to CommonJS (tsx) an imported name is an accessor on the
// exporting module's object, called on every use.
const STRIDE = DECISION_STRIDE;
const TIME = D_TIME;
const NFEAT = FEATURE_COUNT;

/** Results of the batch being handled (reused: the results are copied into the arena). */
const batchOut = new Out(4096);

const EMPTY_F32 = new Float32Array(0);

/** A reduced task's request (messages.ts), reading the arena in place. */
function reducedFromArena(arena: ArrayBuffer, index: Float64Array, o: number, batch: RouteBatch): ValidatedRequest {
  const n = index[o + T_N]!;
  const off = index[o + T_DATA]!;
  const metaIdx = index[o + T_META]!;
  const meta = metaIdx >= 0 ? batch.meta![metaIdx]! : null;
  return {
    request_id: '',
    dim: index[o + T_DIM]!,
    n,
    query: EMPTY_F32,
    embeddings: EMPTY_F32,
    similarity: new Float32Array(arena, off + 20 * n, n),
    ids: idsFor(n),
    createdAt: new Float64Array(arena, off, n),
    accessCount: new Float64Array(arena, off + 8 * n, n),
    successRate: new Float32Array(arena, off + 16 * n, n),
    candidateMetadata: meta ? meta.candidateMetadata : emptyMetaFor(n),
    metadata: meta ? meta.metadata : EMPTY_METADATA,
  };
}

function taskError(taskId: number, err: unknown): TaskError {
  return { taskId, ...toThreadError(err, false) };
}

async function onBatch(batch: RouteBatch): Promise<void> {
  const { arena, count } = batch;
  const index = new Float64Array(arena, batch.indexOffset, count * TASK_STRIDE);
  let needsCodec = false;
  let estimate = 0;
  for (let t = 0; t < count; t++) {
    const o = t * TASK_STRIDE;
    if (index[o + T_KIND] === TaskKind.Reduced) estimate += RESULT_HEADER + index[o + T_N]! * (DECISION_STRIDE + (init.returnFeatures ? FEATURE_COUNT : 0));
    else needsCodec = true;
  }
  if (needsCodec && !codec) codec = await import('../decode.js');

  const out = batchOut;
  out.len = 0;
  out.reserve(estimate);
  let errors: TaskError[] | null = null;
  let decoded: DecodedInfo[] | null = null;
  // Tenant policy labels used by this batch, by index (R_POLICY); the global one is -1.
  let policies: string[] | null = null;
  const version = router.modelVersion;

  for (let t = 0; t < count; t++) {
    const o = t * TASK_STRIDE;
    const taskId = index[o + T_ID]!;
    const kind = index[o + T_KIND]!;
    try {
      let req: ValidatedRequest;
      if (kind === TaskKind.Reduced) {
        req = reducedFromArena(arena, index, o, batch);
      } else {
        const bytes = new Uint8Array(arena, index[o + T_DATA]!, index[o + T_LEN]!);
        req = codec!.decodeRequest(bytes, kind === TaskKind.EncodedProtobuf ? 'protobuf' : 'json');
        const candidateMetadata = noMetadata(req.candidateMetadata) ? null : req.candidateMetadata;
        (decoded ??= []).push({ taskId, request_id: req.request_id, ids: req.ids, candidateMetadata, topK: requestTopK(req.metadata) ?? null });
      }
      // The Router's own ranking and rules, without decision objects: numbers straight into
      // the results (the main thread builds the objects).
      const n = req.n;
      out.reserve(RESULT_HEADER + n * (DECISION_STRIDE + (init.returnFeatures ? FEATURE_COUNT : 0)));
      const b = out.buf;
      const p0 = out.len;
      const first = p0 + RESULT_HEADER;
      const t0 = performance.now();
      const { featureUs, policy } = router.rankValidated(req, b, first, DECISION_STRIDE, REASONS);
      const totalUs = (performance.now() - t0) * 1000;
      for (let r = 0; r < n; r++) b[first + r * STRIDE + TIME] = totalUs;
      let end = first + n * STRIDE;
      if (init.returnFeatures) {
        const feat = router.lastFeatures(n);
        for (let r = 0; r < n; r++) {
          const src = b[first + r * STRIDE]! * NFEAT;
          for (let k = 0; k < NFEAT; k++) b[end++] = feat[src + k]!;
        }
      }
      b[p0 + R_ID] = taskId;
      b[p0 + R_STATUS] = TaskStatus.Ok;
      b[p0 + R_N] = n;
      b[p0 + R_INFER] = totalUs;
      b[p0 + R_FEAT] = featureUs;
      b[p0 + R_PROCESSED] = n;
      let policyIdx = -1;
      if (policy !== GLOBAL_POLICY) {
        policies ??= [];
        policyIdx = policies.indexOf(policy);
        if (policyIdx < 0) policyIdx = policies.push(policy) - 1;
      }
      b[p0 + R_POLICY] = policyIdx;
      out.len = end;
    } catch (err) {
      out.reserve(RESULT_HEADER);
      const b = out.buf;
      const p = out.len;
      b[p + R_ID] = taskId;
      b[p + R_STATUS] = TaskStatus.Failed;
      b[p + R_N] = 0;
      b[p + R_INFER] = 0;
      b[p + R_FEAT] = 0;
      b[p + R_PROCESSED] = 0;
      b[p + R_POLICY] = -1;
      out.len = p + RESULT_HEADER;
      (errors ??= []).push(taskError(taskId, err));
    }
  }
  // Results go back inside the arena (its inputs are consumed), so one buffer travels each way.
  const base = { type: 'results', batchId: batch.batchId, modelVersion: version, arena, resultsLength: out.len, errors, decoded, policies } as const;
  if (out.len * 8 <= arena.byteLength) {
    new Float64Array(arena, 0, out.len).set(out.buf.subarray(0, out.len));
    post({ ...base, data: null }, [arena]);
  } else {
    const data = out.buf.slice(0, out.len);
    post({ ...base, data }, [arena, data.buffer as ArrayBuffer]);
  }
}

function handle(msg: ToWorker): Promise<void> | void {
  switch (msg.type) {
    case 'route':
      return onBatch(msg);
    case 'prepare': {
      try {
        const model = parseModel(msg.bytes, msg.source);
        assertRoutable(model);
        cellSimdAvailable(model.cell); // compile its SIMD cell now, not on the first batch after commit
        prepared = { reloadId: msg.reloadId, model };
        post({ type: 'prepared', reloadId: msg.reloadId, ok: true, version: model.version });
      } catch (err) {
        prepared = null;
        post({ type: 'prepared', reloadId: msg.reloadId, ok: false, message: errorMessage(err) });
      }
      return;
    }
    case 'commit': {
      if (!prepared || prepared.reloadId !== msg.reloadId) {
        // The pool only commits after this worker acknowledged `prepare`; anything else is a bug.
        throw new Error(`commit of reload ${msg.reloadId} without a matching prepare`);
      }
      router.swapModel(prepared.model);
      prepared = null;
      post({ type: 'committed', reloadId: msg.reloadId, version: router.modelVersion });
      return;
    }
    case 'abort':
      if (prepared?.reloadId === msg.reloadId) prepared = null;
      return;
    case 'thresholds': {
      try {
        const t: { confidence?: number; maxUncertainty?: number } = {};
        if (msg.confidence !== undefined) t.confidence = msg.confidence;
        if (msg.maxUncertainty !== undefined) t.maxUncertainty = msg.maxUncertainty;
        router.setThresholds(t);
        post({ type: 'thresholds-set', seq: msg.seq, ok: true });
      } catch (err) {
        post({ type: 'thresholds-set', seq: msg.seq, ok: false, message: errorMessage(err) });
      }
      return;
    }
    case 'policies': {
      try {
        router.setPolicies(policyTableFrom(msg.tenantKey, msg.policies));
        post({ type: 'policies-set', seq: msg.seq, ok: true });
      } catch (err) {
        post({ type: 'policies-set', seq: msg.seq, ok: false, message: errorMessage(err) });
      }
      return;
    }
    case '__crashForTest':
      if (init.testHooks) process.exit(msg.code);
      return;
    default: {
      const never: never = msg;
      throw new Error(`unknown message ${JSON.stringify(never)}`);
    }
  }
}

// One message at a time, in arrival order. A rejection here is a bug: rethrow it outside the
// chain so it becomes an uncaught exception and the pool replaces this worker.
let chain: Promise<void> = Promise.resolve();
thread.onMessage((msg) => {
  chain = chain.then(() => handle(msg)).catch((err: unknown) => {
    setImmediate(() => {
      throw err;
    });
  });
});

post({ type: 'ready', version: router.modelVersion });
