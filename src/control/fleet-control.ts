// The write half of the fleet's desired state: what ReloadModel, SetThresholds and the tenant
// policy calls do in `serve`. Each validates first (nothing reaches the topic that a replica
// would refuse), writes ONE record to the control topic, and returns once THIS replica has
// applied it — through the same path as every other replica, the topic — with how many live
// replicas had converged by then. With `waitMs` it waits for the whole fleet, up to that long.
//
// How many replicas are live and which revision each has applied is the fleet view's
// knowledge, not this file's: it asks a ConvergenceProbe, set by whoever has that view.
// Without one it reports itself only (live 0: unknown).
import { hostname } from 'node:os';
import {
  checkTenant,
  encodeModelRecord,
  encodePolicyRecord,
  encodeThresholdsRecord,
  MODEL_KEY,
  policyKey,
  THRESHOLDS_KEY,
  type RecordMeta,
} from './control-records.js';
import type { ControlCore } from './core.js';
import type { DesiredState } from './desired-state.js';
import { modelNotes, prepareModel } from './reload.js';
import {
  ControlError,
  type ChangeOptions,
  type ConvergenceView,
  type ModelSource,
  type PolicyChangeResult,
  type ReloadResult,
  type SetThresholdsResult,
  type TenantPolicyView,
  type ThresholdsUpdate,
} from './target.js';

/** Live replicas and how many of them have applied the control topic up to `revision`. */
export type ConvergenceProbe = (revision: number) => { converged: number; live: number };

/** Where records go: ./control-topic.ts's ControlTopic, or a test's double. */
export interface ControlWriter {
  write(key: string, value: Buffer | null): Promise<number>;
}

export interface FleetControlOptions {
  writer: ControlWriter;
  state: DesiredState;
  core: () => ControlCore;
  /** Names this control plane in records' written_by. Default `serve@<host>:<pid>`. */
  writtenBy?: string;
  /** How long a call waits for THIS replica to apply its own record. Default 30 s. */
  applyTimeoutMs?: number;
  now?: () => number;
}

const POLL_MS = 100;

export class FleetControl {
  readonly #o: FleetControlOptions;
  readonly #now: () => number;
  #probe: ConvergenceProbe | undefined;

  constructor(opts: FleetControlOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** The fleet view's answer to "who has applied revision N" (see the file comment). */
  setConvergenceProbe(probe: ConvergenceProbe | undefined): void {
    this.#probe = probe;
  }

  #meta(): RecordMeta {
    return { writtenBy: this.#o.writtenBy ?? `serve@${hostname()}:${process.pid}`, writtenAt: this.#now() };
  }

  async #write(key: string, value: Buffer | null, opts: ChangeOptions): Promise<ConvergenceView> {
    if (this.#o.core().draining) throw new ControlError('failed_precondition', 'the service is draining; no changes now');
    const offset = await this.#o.writer.write(key, value);
    await this.#o.state.waitFor(offset, this.#o.applyTimeoutMs ?? 30_000);
    return this.#convergence(offset, opts.waitMs ?? 0);
  }

  async #convergence(revision: number, waitMs: number): Promise<ConvergenceView> {
    const deadline = this.#now() + Math.max(0, waitMs);
    for (;;) {
      const seen = this.#probe?.(revision);
      const view: ConvergenceView = seen ? { revision, converged: Math.max(1, seen.converged), live: seen.live } : { revision, converged: 1, live: 0 };
      if (!seen || view.converged >= view.live || this.#now() >= deadline) return view;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /** Validates the model, writes it as the fleet's active model, returns once applied here. */
  async reload(source: ModelSource, opts: ChangeOptions = {}): Promise<ReloadResult> {
    const core = this.#o.core();
    const prepared = await prepareModel(source);
    const previousVersion = core.pool.modelVersion;
    const record = encodeModelRecord(prepared, this.#meta());
    const convergence = await this.#write(MODEL_KEY, record, opts);
    const result: ReloadResult = { model: core.modelView(), previousVersion, convergence, notes: modelNotes(prepared.model) };
    if (result.model.version !== prepared.model.version) {
      // A later record replaced it before this call returned; say so rather than pretend.
      result.notes!.push(`a later control record made ${result.model.version} current before this call returned`);
    }
    return result;
  }

  async setThresholds(update: ThresholdsUpdate, opts: ChangeOptions = {}): Promise<SetThresholdsResult> {
    const current = this.#o.core().thresholds();
    const next = { confidence: update.confidence ?? current.confidence, maxUncertainty: update.maxUncertainty ?? current.maxUncertainty };
    checkUnit('confidence', next.confidence);
    checkUnit('max_uncertainty', next.maxUncertainty);
    const convergence = await this.#write(THRESHOLDS_KEY, encodeThresholdsRecord(next, this.#meta()), opts);
    return { ...this.#o.core().thresholds(), convergence };
  }

  async setPolicy(p: TenantPolicyView, opts: ChangeOptions = {}): Promise<PolicyChangeResult> {
    checkTenant(p.tenant);
    checkUnit('confidence', p.confidence);
    checkUnit('max_uncertainty', p.maxUncertainty);
    const convergence = await this.#write(policyKey(p.tenant), encodePolicyRecord(p.tenant, p, this.#meta()), opts);
    const now = this.#o.state.policies.get(p.tenant);
    return { tenant: p.tenant, changed: true, convergence, ...(now ? { policy: { tenant: p.tenant, ...now } } : {}) };
  }

  async deletePolicy(tenant: string, opts: ChangeOptions = {}): Promise<PolicyChangeResult> {
    checkTenant(tenant);
    if (!this.#o.state.policies.has(tenant)) return { tenant, changed: false };
    const convergence = await this.#write(policyKey(tenant), null, opts);
    return { tenant, changed: true, convergence };
  }

  listPolicies(): TenantPolicyView[] {
    return [...this.#o.state.policies].map(([tenant, p]) => ({ tenant, ...p })).sort((a, b) => a.tenant.localeCompare(b.tenant));
  }
}

function checkUnit(name: string, v: number): void {
  if (!Number.isFinite(v) || v < 0 || v > 1) throw new ControlError('invalid_argument', `${name} must be in [0, 1], got ${v}`);
}
