// The fleet's desired state as this replica knows it: the last valid record of each key of the
// control topic, in topic order. No Kafka here (./control-topic.ts feeds it records); no pool
// either: once the replica is running, an Applier puts each validated change into force, and
// only a change that was applied becomes the state. A record that fails validation or applying
// leaves the state as it was and becomes `lastApplyError`.
//
// `revision` is the offset of the last record processed (applied or refused); a writer waits for
// its record's offset to learn whether this replica applied it.
import { errorMessage, oneLine } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import type { ControlHistoryEntry } from '../store/control-history.js';
import { ControlRecordError, decodeControlRecord, MODEL_KEY, POLICY_KEY_PREFIX, THRESHOLDS_KEY, type ControlChange, type RecordMeta, type TenantThresholds } from './control-records.js';
import type { PreparedModel } from './reload.js';
import { ControlError } from './target.js';

export interface DesiredModel {
  prepared: PreparedModel;
  sha256: string;
  meta: RecordMeta;
  offset: number;
}

export interface ApplyErrorView {
  key: string;
  offset: number;
  message: string;
  /** Unix ms. */
  at: number;
}

/** Puts a validated change into force on this replica (the pool, the breaker's version...). */
export interface Applier {
  model(model: DesiredModel): Promise<void>;
  thresholds(t: TenantThresholds): Promise<void>;
}

export type PoliciesListener = (policies: ReadonlyMap<string, TenantThresholds>) => void;

interface Waiter {
  offset: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

/** Refusals kept by offset so a writer can learn its record's fate; older ones are forgotten. */
const KEPT_REFUSALS = 256;

export class DesiredState {
  #model: DesiredModel | undefined;
  #thresholds: (TenantThresholds & { meta: RecordMeta; offset: number }) | undefined;
  readonly #policies = new Map<string, TenantThresholds>();
  #revision = -1;
  #lastApplyError: ApplyErrorView | undefined;
  #applyErrors = 0;
  #applier: Applier | undefined;
  readonly #refusals = new Map<number, string>();
  readonly #waiters = new Set<Waiter>();
  readonly #policyListeners = new Set<PoliciesListener>();
  readonly #errorListeners = new Set<(e: ApplyErrorView) => void>();
  readonly #processedListeners = new Set<(e: ControlHistoryEntry) => void>();
  readonly #log: Logger | undefined;
  readonly #now: () => number;

  constructor(opts: { logger?: Logger; now?: () => number } = {}) {
    this.#log = opts.logger;
    this.#now = opts.now ?? Date.now;
  }

  get model(): DesiredModel | undefined {
    return this.#model;
  }

  get thresholds(): TenantThresholds | undefined {
    return this.#thresholds ? { confidence: this.#thresholds.confidence, maxUncertainty: this.#thresholds.maxUncertainty } : undefined;
  }

  /** Tenant policies in force (a copy). */
  get policies(): Map<string, TenantThresholds> {
    return new Map([...this.#policies].map(([k, v]) => [k, { ...v }]));
  }

  /** Offset of the last control record processed; -1 before the first. */
  get revision(): number {
    return this.#revision;
  }

  get lastApplyError(): ApplyErrorView | undefined {
    return this.#lastApplyError ? { ...this.#lastApplyError } : undefined;
  }

  get applyErrors(): number {
    return this.#applyErrors;
  }

  /**
   * From now on each change is put into force through `applier` before it becomes the state.
   * Before this (start-up), records only build the state the replica starts with.
   */
  attach(applier: Applier): void {
    this.#applier = applier;
  }

  /** Called with every tenant policy in force whenever one is set or deleted; returns the unsubscribe. */
  onPoliciesChanged(listener: PoliciesListener): () => void {
    this.#policyListeners.add(listener);
    return () => this.#policyListeners.delete(listener);
  }

  onApplyError(listener: (e: ApplyErrorView) => void): () => void {
    this.#errorListeners.add(listener);
    return () => this.#errorListeners.delete(listener);
  }

  /** Called with every record processed, applied or refused, in topic order (the audit history). */
  onProcessed(listener: (e: ControlHistoryEntry) => void): () => void {
    this.#processedListeners.add(listener);
    return () => this.#processedListeners.delete(listener);
  }

  /** Processes one record of the control topic, in offset order. Never throws. */
  async handle(key: string, value: Uint8Array | null, offset: number): Promise<void> {
    let entry: ControlHistoryEntry;
    try {
      const change = await decodeControlRecord(key, value);
      await this.#apply(change, offset);
      entry = historyEntry(key, offset, change);
    } catch (err) {
      const message = this.#refuse(key, offset, err);
      entry = { offset, key, kind: kindOfKey(key), detail: {}, outcome: 'refused', error: message };
    }
    this.#revision = Math.max(this.#revision, offset);
    this.#settleWaiters();
    for (const l of [...this.#processedListeners]) {
      try {
        l(entry);
      } catch (err) {
        this.#log?.warn('control: a history listener failed', { err });
      }
    }
  }

  async #apply(change: ControlChange, offset: number): Promise<void> {
    switch (change.kind) {
      case 'model': {
        const next: DesiredModel = { prepared: change.prepared, sha256: change.sha256, meta: change.meta, offset };
        if (this.#applier && this.#model?.sha256 !== change.sha256) await this.#applier.model(next);
        this.#model = next;
        this.#log?.info('control: model in force', { version: change.prepared.model.version, sha256: change.sha256, by: change.meta.writtenBy, offset });
        return;
      }
      case 'thresholds':
        if (this.#applier) await this.#applier.thresholds(change.thresholds);
        this.#thresholds = { ...change.thresholds, meta: change.meta, offset };
        this.#log?.info('control: thresholds in force', { ...change.thresholds, by: change.meta.writtenBy, offset });
        return;
      case 'policy':
        this.#policies.set(change.tenant, { ...change.policy });
        this.#notifyPolicies();
        return;
      case 'policy-delete':
        if (this.#policies.delete(change.tenant)) this.#notifyPolicies();
        return;
    }
  }

  #notifyPolicies(): void {
    const snapshot = this.policies;
    for (const l of [...this.#policyListeners]) {
      try {
        l(snapshot);
      } catch (err) {
        this.#log?.warn('control: a tenant policy listener failed', { err });
      }
    }
  }

  #refuse(key: string, offset: number, err: unknown): string {
    const message = oneLine(errorMessage(err), 400);
    const e: ApplyErrorView = { key: oneLine(key, 120), offset, message, at: this.#now() };
    this.#lastApplyError = e;
    this.#applyErrors++;
    this.#refusals.set(offset, message);
    if (this.#refusals.size > KEPT_REFUSALS) this.#refusals.delete(this.#refusals.keys().next().value!);
    this.#log?.error(
      err instanceof ControlRecordError ? 'control: record refused; the current state stays' : 'control: record could not be applied; the current state stays',
      { key: e.key, offset, err: message },
    );
    for (const l of [...this.#errorListeners]) l(e);
    return message;
  }

  /**
   * Resolves once the record at `offset` was processed and applied here; rejects with the reason
   * it was refused, or UNAVAILABLE after `timeoutMs`.
   */
  waitFor(offset: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        offset,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(w);
          reject(new ControlError('unavailable', `the change was written to the control topic (offset ${offset}) but this replica had not applied it within ${timeoutMs} ms; it applies it when it catches up`));
        }, timeoutMs),
      };
      this.#waiters.add(w);
      this.#settleWaiters();
    });
  }

  #settleWaiters(): void {
    for (const w of [...this.#waiters]) {
      if (this.#revision < w.offset) continue;
      this.#waiters.delete(w);
      clearTimeout(w.timer);
      const refused = this.#refusals.get(w.offset);
      if (refused === undefined) w.resolve();
      else w.reject(new ControlError('failed_precondition', `the change was written but this replica refused it: ${refused}`));
    }
  }

  /** Rejects pending waiters (shutdown). */
  close(): void {
    for (const w of [...this.#waiters]) {
      clearTimeout(w.timer);
      w.reject(new ControlError('unavailable', 'the service is stopping'));
    }
    this.#waiters.clear();
  }
}

function kindOfKey(key: string): ControlHistoryEntry['kind'] {
  if (key === MODEL_KEY) return 'model';
  if (key === THRESHOLDS_KEY) return 'thresholds';
  if (key.startsWith(POLICY_KEY_PREFIX)) return 'policy';
  return 'unknown';
}

/** What an applied record set, for the history: never the model's bytes. */
function historyEntry(key: string, offset: number, change: ControlChange): ControlHistoryEntry {
  const base = { offset, key, outcome: 'applied' as const };
  switch (change.kind) {
    case 'model':
      return { ...base, kind: 'model', detail: { version: change.prepared.model.version, sha256: change.sha256, bytes: change.prepared.bytes.length }, writtenBy: change.meta.writtenBy, writtenAt: change.meta.writtenAt };
    case 'thresholds':
      return { ...base, kind: 'thresholds', detail: { confidence: change.thresholds.confidence, max_uncertainty: change.thresholds.maxUncertainty }, writtenBy: change.meta.writtenBy, writtenAt: change.meta.writtenAt };
    case 'policy':
      return { ...base, kind: 'policy', detail: { tenant: change.tenant, confidence: change.policy.confidence, max_uncertainty: change.policy.maxUncertainty }, writtenBy: change.meta.writtenBy, writtenAt: change.meta.writtenAt };
    case 'policy-delete':
      return { ...base, kind: 'policy-delete', detail: { tenant: change.tenant } };
  }
}
