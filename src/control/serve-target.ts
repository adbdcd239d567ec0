// The control plane's view of a running `serve` (the ControlTarget the gRPC server calls): routing
// and the breaker are the shared ControlCore; reloads, thresholds and tenant policies go through
// the fleet's control topic (FleetControl) and come into force here, as on every replica, when
// the topic delivers them; stats and config are assembled from the service's parts.
//
// The service (app.ts) owns the parts and their life; this reads them through `ServeParts`, so a
// call made while the service starts or stops gets UNAVAILABLE instead of a half-built answer.
import type { Logger } from '../observe/logger.js';
import { PolicyTable, type TenantPolicies } from '../engine/policy.js';
import type { RoutingRequest, RoutingResponse } from '../wire/types.js';
import type { ControlCore, RoutingPool } from './core.js';
import type { FleetControl } from './fleet-control.js';
import type { FleetViewSnapshot } from './fleet-table.js';
import { serviceConfig, serviceStats, type ServiceParts } from './service-views.js';
import {
  ControlError,
  type BreakerView,
  type ChangeOptions,
  type ConfigSnapshot,
  type ControlStats,
  type ControlTarget,
  type HealthStatus,
  type ModelSource,
  type PolicyChangeResult,
  type ReloadResult,
  type SetThresholdsResult,
  type TenantPolicyView,
  type ThresholdsUpdate,
} from './target.js';

/** What the target reads from the running service; each part is undefined until it runs. */
export interface ServeParts {
  core(): ControlCore | undefined;
  fleet(): FleetControl | undefined;
  fleetView(): { snapshot(includeStale: boolean): FleetViewSnapshot } | undefined;
  pool(): RoutingPool | undefined;
  /** Stopping: no state changes now. */
  draining(): boolean;
  /** The parts the views are built from; `withStore` also reads (and so refreshes) the Postgres aggregates. */
  views(withStore: boolean): ServiceParts;
  health(): HealthStatus;
  onHealthChange(listener: (status: HealthStatus) => void): () => void;
}

export interface ServeTargetOptions {
  parts: ServeParts;
  /** TD_TENANT_KEY: the metadata key that names a request's tenant. */
  tenantKey: string;
  logger: Logger;
}

export class ServeControlTarget implements ControlTarget {
  readonly mode = 'serve';
  readonly #parts: ServeParts;
  readonly #logger: Logger;
  /** Per-tenant thresholds (the workers hold the same table; this one labels breaker fallbacks). */
  #policies: PolicyTable;

  constructor(opts: ServeTargetOptions) {
    this.#parts = opts.parts;
    this.#logger = opts.logger;
    this.#policies = new PolicyTable(opts.tenantKey);
  }

  #require<T>(v: T | undefined, what: string): T {
    if (v === undefined) throw new ControlError('unavailable', `${what} is not running (the service is starting or stopped)`);
    return v;
  }

  #core(): ControlCore {
    return this.#require(this.#parts.core(), 'the router');
  }

  #fleetForChange(): FleetControl {
    if (this.#parts.draining()) throw new ControlError('failed_precondition', 'the service is draining; no changes now');
    return this.#require(this.#parts.fleet(), 'the control topic');
  }

  /** Validated, written to the control topic, returned once in force here (see FleetControl). */
  reload(source: ModelSource, opts: ChangeOptions = {}): Promise<ReloadResult> {
    return this.#fleetForChange().reload(source, opts);
  }

  breaker(): BreakerView {
    return this.#core().breakerView();
  }

  resetBreaker(): BreakerView {
    return this.#core().resetBreaker();
  }

  /** Opens the breaker by hand (every candidate heavyweight until reset or the reset timeout). */
  tripBreaker(): BreakerView {
    return this.#core().tripBreaker();
  }

  config(): ConfigSnapshot {
    return serviceConfig(this.#parts.views(false));
  }

  setThresholds(update: ThresholdsUpdate, opts: ChangeOptions = {}): Promise<SetThresholdsResult> {
    return this.#fleetForChange().setThresholds(update, opts);
  }

  setPolicy(policy: TenantPolicyView, opts: ChangeOptions = {}): Promise<PolicyChangeResult> {
    return this.#fleetForChange().setPolicy(policy, opts);
  }

  deletePolicy(tenant: string, opts: ChangeOptions = {}): Promise<PolicyChangeResult> {
    return this.#fleetForChange().deletePolicy(tenant, opts);
  }

  listPolicies(): TenantPolicyView[] {
    return this.#require(this.#parts.fleet(), 'the control topic').listPolicies();
  }

  /**
   * Replaces the per-tenant policies (tenant → thresholds) on every worker; requests decided
   * after it resolves use them. The service calls it with the fleet's table from the control
   * topic. InvalidInputError for a bad policy (nothing changes).
   */
  async setTenantPolicies(policies: TenantPolicies): Promise<void> {
    if (this.#parts.draining()) throw new ControlError('failed_precondition', 'the service is draining; tenant policies are not changed now');
    const table = new PolicyTable(this.#policies.tenantKey, policies);
    const pool = this.#parts.pool() as (RoutingPool & { setTenantPolicies?: (p: TenantPolicies, key?: string) => Promise<void> }) | undefined;
    if (pool) {
      if (!pool.setTenantPolicies) throw new ControlError('failed_precondition', 'this router pool does not support tenant policies');
      await pool.setTenantPolicies(policies, table.tenantKey);
    }
    this.#policies = table;
    this.#logger.info('tenant policies changed', { tenants: table.size });
  }

  /** The per-tenant policies in force. */
  tenantPolicies(): PolicyTable {
    return this.#policies;
  }

  /** Routes one request through the same breaker as the stream (not logged, not published). */
  route(request: RoutingRequest | unknown): Promise<RoutingResponse> {
    return this.#core().route(request);
  }

  stats(): ControlStats {
    const core = this.#require(this.#parts.core(), 'the engine');
    return serviceStats(this.#parts.views(true), core);
  }

  /** Every replica of the fleet (GetFleet): any replica answers for all. */
  fleet(opts: { includeStale: boolean }): FleetViewSnapshot {
    return this.#require(this.#parts.fleetView(), 'the fleet view').snapshot(opts.includeStale);
  }

  health(): HealthStatus {
    return this.#parts.health();
  }

  onHealthChange(listener: (status: HealthStatus) => void): () => void {
    return this.#parts.onHealthChange(listener);
  }
}
