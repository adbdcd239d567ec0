// The pool's control protocol: a model reload in two phases (every worker prepares it, then
// every worker switches, or none does), and thresholds and tenant policies set in every worker.
// One change at a time; a worker replaced meanwhile starts from `init`, which is updated first.
import { readFile, stat } from 'node:fs/promises';
import { InvalidInputError, ModelError, errorMessage } from '../../errors.js';
import { MAX_MODEL_BYTES, parseModel } from '../model.js';
import { PolicyTable, policyEntries, type TenantPolicies } from '../policy.js';
import { assertRoutable, type Router } from '../router.js';
import { PoolClosedError, WorkerCrashedError } from './errors.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';
import type { WorkerSlot } from './worker-slot.js';

const READY_TIMEOUT_MS = 30_000;

export async function readModelBytes(path: string): Promise<Uint8Array> {
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

export interface PoolControlOptions {
  slots: () => readonly WorkerSlot[];
  /** workerData of every (re)spawned worker: changed here before the workers are told. */
  init: WorkerInit;
  /** The pool's own Router on the calling thread: validates first, then mirrors the workers. */
  mirror: Router;
  closing: () => boolean;
}

export class PoolControl {
  readonly #o: PoolControlOptions;
  #seq = 0;
  #exclusive: Promise<unknown> = Promise.resolve();

  constructor(opts: PoolControlOptions) {
    this.#o = opts;
  }

  async #allReady(): Promise<void> {
    const waits = this.#o.slots().filter((s) => !s.ready).map((s) => s.whenReady());
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

  /**
   * Loads a new model into every worker, atomically: validated once here (ModelError, old model
   * stays), prepared in all workers, then committed in all. Resolves when every worker uses it.
   */
  reload(model: string | { bytes: Uint8Array; source?: string }): Promise<{ version: string }> {
    return this.#serial(async () => {
      if (this.#o.closing()) throw new PoolClosedError('the router pool is closed');
      const source = typeof model === 'string' ? model : (model.source ?? 'model bytes');
      const bytes = typeof model === 'string' ? await readModelBytes(model) : model.bytes;
      const parsed = parseModel(bytes, source); // ModelError: refused before any worker sees it
      assertRoutable(parsed);
      await this.#allReady();
      const reloadId = ++this.#seq;
      const slots = [...this.#o.slots()];
      const generations = slots.map((s) => s.generation);
      const isPrepared = (m: FromWorker): m is Extract<FromWorker, { type: 'prepared' }> => m.type === 'prepared' && m.reloadId === reloadId;
      const isCommitted = (m: FromWorker): m is Extract<FromWorker, { type: 'committed' }> => m.type === 'committed' && m.reloadId === reloadId;
      let prepared;
      try {
        prepared = await Promise.all(slots.map((s) => s.control({ type: 'prepare', reloadId, bytes, source }, isPrepared)));
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
      if (slots.some((s, i) => s.generation !== generations[i])) {
        this.#broadcast({ type: 'abort', reloadId });
        throw new WorkerCrashedError(`a router worker was replaced during the reload of ${source}; the old model stays, retry`);
      }
      // No await between the check above and this line: from here replacements start with the
      // new model, so a crash during the commit phase is harmless.
      this.#o.init.model = { bytes, source };
      await Promise.all(
        slots.map((s) =>
          s.control({ type: 'commit', reloadId }, isCommitted).catch((err) => {
            if (err instanceof WorkerCrashedError) return; // replaced, with the new model
            throw err;
          }),
        ),
      );
      this.#o.mirror.swapModel(parsed);
      return { version: parsed.version };
    });
  }

  /** Sets thresholds in every worker (and for replacements); resolves when all applied them. */
  setThresholds(t: { confidence?: number; maxUncertainty?: number }): Promise<void> {
    return this.#serial(async () => {
      if (this.#o.closing()) throw new PoolClosedError('the router pool is closed');
      for (const [k, v] of Object.entries(t)) {
        if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= 1)) {
          throw new InvalidInputError(`threshold ${k} must be a number in [0, 1], got ${String(v)}`);
        }
      }
      this.#o.mirror.setThresholds(t);
      if (t.confidence !== undefined) this.#o.init.router.confidenceThreshold = t.confidence;
      if (t.maxUncertainty !== undefined) this.#o.init.router.maxUncertainty = t.maxUncertainty;
      await this.#allReady();
      const seq = ++this.#seq;
      const msg: ToWorker = { type: 'thresholds', seq, ...t };
      const acks = await Promise.all(
        this.#o.slots().map((s) =>
          s.control(msg, (m): m is Extract<FromWorker, { type: 'thresholds-set' }> => m.type === 'thresholds-set' && m.seq === seq)
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
  setTenantPolicies(policies: TenantPolicies, tenantKey: string = this.#o.mirror.policies.tenantKey): Promise<void> {
    return this.#serial(async () => {
      if (this.#o.closing()) throw new PoolClosedError('the router pool is closed');
      const table = new PolicyTable(tenantKey, policies);
      const entries = policyEntries(table);
      this.#o.mirror.setPolicies(table);
      this.#o.init.router.tenantKey = table.tenantKey;
      this.#o.init.router.policies = entries;
      await this.#allReady();
      const seq = ++this.#seq;
      const msg: ToWorker = { type: 'policies', seq, tenantKey: table.tenantKey, policies: entries };
      const acks = await Promise.all(
        this.#o.slots().map((s) =>
          s.control(msg, (m): m is Extract<FromWorker, { type: 'policies-set' }> => m.type === 'policies-set' && m.seq === seq)
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
    for (const s of this.#o.slots()) if (s.ready) s.post(msg);
  }
}
