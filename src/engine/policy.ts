// Per-tenant decision policy: which thresholds decide a request, and the name of the policy that
// did (docs/contracts.md §10). A request names its tenant in one metadata key (TD_TENANT_KEY,
// default `tenant`); a tenant with a policy gets that policy's thresholds, every other request
// (no tenant, or a tenant without a policy) gets the global ones.
//
// WHY a compiled table: the choice is made for every request on the engine's worker threads, so
// it must be one map lookup with no allocation. Each tenant's thresholds and label are built
// once, when the table is built; the global choice is rebuilt only when the global thresholds
// object changes (a model reload or a threshold change).
import { InvalidInputError } from '../errors.js';
import type { Thresholds } from './decide.js';

export interface TenantPolicy {
  /** Lightweight only when confidence ≥ this (0..1). */
  confidence: number;
  /** Heavyweight when uncertainty > this (0..1). */
  maxUncertainty: number;
}

/** Tenant name → its policy. */
export type TenantPolicies = ReadonlyMap<string, TenantPolicy>;

/** The label of decisions made with the global thresholds. */
export const GLOBAL_POLICY = 'global';
export const DEFAULT_TENANT_KEY = 'tenant';
/** A tenant name is at most this many UTF-8 bytes (it lands in every decision and row). */
export const MAX_TENANT_BYTES = 128;

/** The label of decisions made with `tenant`'s policy. */
export function tenantPolicyLabel(tenant: string): string {
  return `tenant:${tenant}`;
}

export interface PolicyChoice {
  readonly thresholds: Readonly<Thresholds>;
  /** GLOBAL_POLICY or tenantPolicyLabel(tenant). */
  readonly policy: string;
}

const UTF8 = new TextEncoder();

function unit(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1;
}

/** Throws InvalidInputError naming what is wrong with one tenant's policy. */
export function checkTenantPolicy(tenant: string, policy: TenantPolicy): void {
  if (typeof tenant !== 'string' || tenant.length === 0) throw new InvalidInputError('a tenant policy needs a non-empty tenant name');
  if (UTF8.encode(tenant).length > MAX_TENANT_BYTES) {
    throw new InvalidInputError(`tenant name is longer than ${MAX_TENANT_BYTES} bytes: ${JSON.stringify(tenant.slice(0, 40))}…`);
  }
  if (!unit(policy?.confidence)) throw new InvalidInputError(`tenant ${JSON.stringify(tenant)}: confidence must be a number in [0, 1], got ${String(policy?.confidence)}`);
  if (!unit(policy?.maxUncertainty)) {
    throw new InvalidInputError(`tenant ${JSON.stringify(tenant)}: max uncertainty must be a number in [0, 1], got ${String(policy?.maxUncertainty)}`);
  }
}

/** Throws InvalidInputError for a tenant key that cannot name a metadata entry. */
export function checkTenantKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > 256) {
    throw new InvalidInputError(`the tenant key must be 1..256 characters, got ${JSON.stringify(key)}`);
  }
}

/** Tenant policies compiled for the decision path; immutable. */
export class PolicyTable {
  readonly tenantKey: string;
  readonly #choices: ReadonlyMap<string, PolicyChoice>;
  #globalFor: Readonly<Thresholds> | undefined;
  #global: PolicyChoice | undefined;

  /** Validates every policy (InvalidInputError: nothing is built). */
  constructor(tenantKey: string = DEFAULT_TENANT_KEY, policies: TenantPolicies = new Map()) {
    checkTenantKey(tenantKey);
    const choices = new Map<string, PolicyChoice>();
    for (const [tenant, p] of policies) {
      checkTenantPolicy(tenant, p);
      choices.set(tenant, Object.freeze({
        thresholds: Object.freeze({ confidence: p.confidence, maxUncertainty: p.maxUncertainty }),
        policy: tenantPolicyLabel(tenant),
      }));
    }
    this.tenantKey = tenantKey;
    this.#choices = choices;
  }

  get size(): number {
    return this.#choices.size;
  }

  /** The policies as plain data (to send them to another thread, or to show them). */
  entries(): [tenant: string, policy: TenantPolicy][] {
    return [...this.#choices].map(([t, c]) => [t, { confidence: c.thresholds.confidence, maxUncertainty: c.thresholds.maxUncertainty }]);
  }

  /**
   * The thresholds that decide a request with this metadata: its tenant's policy when it names
   * a tenant that has one, else `global`.
   */
  choose(metadata: Readonly<Record<string, string>> | undefined, global: Readonly<Thresholds>): PolicyChoice {
    if (this.#choices.size > 0 && metadata !== undefined) {
      const tenant = metadata[this.tenantKey];
      if (tenant !== undefined) {
        const c = this.#choices.get(tenant);
        if (c !== undefined) return c;
      }
    }
    if (this.#globalFor !== global || this.#global === undefined) {
      this.#globalFor = global;
      this.#global = Object.freeze({ thresholds: global, policy: GLOBAL_POLICY });
    }
    return this.#global;
  }
}

/** Builds the table from plain entries (as they cross threads: [tenant, confidence, maxUncertainty]). */
export function policyTableFrom(tenantKey: string, entries: readonly (readonly [string, number, number])[]): PolicyTable {
  return new PolicyTable(tenantKey, new Map(entries.map(([t, c, u]) => [t, { confidence: c, maxUncertainty: u }])));
}

/** The plain form of a table's policies, for postMessage. */
export function policyEntries(table: PolicyTable): [string, number, number][] {
  return table.entries().map(([t, p]) => [t, p.confidence, p.maxUncertainty]);
}
