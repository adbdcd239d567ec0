// The gRPC control plane (docs/contracts.md §5): tiny_dancer.v1.ControlPlane, the standard
// grpc.health.v1.Health service and server reflection, on one port.
//
// The server knows only a ControlTarget (./target.ts): the App of `serve` or the route-only
// adapter of ./standalone.ts. Everything here is about the wire: authorization of mutating
// calls, mapping failures to precise statuses, bounded resources (message size, number of
// watch streams, one reload at a time) and a clean shutdown that says NOT_SERVING first.
import {
  Server,
  status as GrpcStatus,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { ConfigError, errorMessage, oneLine } from '../errors.js';
import type { RoutingRequest } from '../wire/types.js';
import type { Logger } from '../observe/logger.js';
import { VERSION } from '../version.js';
import { AdminAuth, type TokenSource } from './auth.js';
import { breakerMsg, configMsg, policyChangeMsg, ratesBetween, reloadMsg, statsMsg, tenantPolicyMsg, thresholdsMsg } from './convert.js';
import { fleetMsg } from './fleet-status.js';
import { serviceError, statusName, toServiceError } from './errors.js';
import { reflectionPackage } from './descriptors.js';
import { CONTROL_SERVICE, controlPackageDefinition } from './proto.js';
import { ControlError, type ChangeOptions, type ControlStats, type ControlTarget, type HealthStatus, type ModelSource, type ThresholdsUpdate, type TotalsView } from './target.js';
import { DEFAULT_MAX_MESSAGE_BYTES, serverCredentials, type ServerTlsFiles } from './tls.js';

export const DEFAULT_CONTROL_ADDR = '127.0.0.1:50051';

export interface WatchOptions {
  /** Shortest interval a client may ask for (ms); shorter requests are raised to it. Default 250. */
  minIntervalMs?: number;
  /** Longest interval (ms). Default 3 600 000. */
  maxIntervalMs?: number;
  /** Interval when the client asks for 0. Default 1000. */
  defaultIntervalMs?: number;
  /** Concurrent WatchStats streams; more are refused with RESOURCE_EXHAUSTED. Default 32. */
  maxWatchers?: number;
}

export interface ControlServerOptions {
  target: ControlTarget;
  /** host:port; port 0 picks a free one. Default 127.0.0.1:50051 (loopback). */
  address?: string;
  /** TD_ADMIN_TOKEN. Without it, mutating calls are refused (PERMISSION_DENIED). */
  adminToken?: TokenSource;
  /** TLS, and mutual TLS when a client CA is given. Plaintext when absent. */
  tls?: ServerTlsFiles;
  /** Largest message received or sent (bytes). Default 32 MiB. */
  maxMessageBytes?: number;
  watch?: WatchOptions;
  /** A stats() slower than this fails the call with UNAVAILABLE. Default 5000 ms. */
  statsTimeoutMs?: number;
  logger?: Logger;
  /** Reported in Stats and ConfigView. Default: the package version. */
  serviceVersion?: string;
  /** Clock (Unix ms), for tests. */
  now?: () => number;
}

export interface ControlServer {
  /** host:port actually bound (with the real port when 0 was asked). */
  readonly address: string;
  readonly port: number;
  /** Open WatchStats streams. */
  readonly watchers: number;
  /** What the health service currently reports. */
  readonly health: HealthStatus;
  /**
   * Says NOT_SERVING, ends the WatchStats streams, lets in-flight calls finish for up to
   * `timeoutMs` (default 5000), then cuts what is left. Idempotent.
   */
  close(opts?: { timeoutMs?: number }): Promise<void>;
}

/** A message as proto-loader serializes it (convert.ts types each one with the generated types). */
type Msg = object;

function splitAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(address);
  if (!m) throw new ConfigError(`control address ${JSON.stringify(address)} is invalid: expected host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`control address ${JSON.stringify(address)} is invalid: the port must be in 0..65535`);
  return { host: (m[1] ?? m[2])!, port };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ControlError('unavailable', `${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function checkThreshold(name: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new ControlError('invalid_argument', `${name} must be a number in [0, 1], got ${String(v)}`);
  }
  return v;
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const target = opts.target;
  const log = opts.logger?.child({ component: 'control' });
  const now = opts.now ?? Date.now;
  const auth = new AdminAuth(opts.adminToken);
  const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const statsTimeoutMs = opts.statsTimeoutMs ?? 5000;
  const serviceVersion = opts.serviceVersion ?? VERSION;
  const minInterval = opts.watch?.minIntervalMs ?? 250;
  const maxInterval = Math.max(minInterval, opts.watch?.maxIntervalMs ?? 3_600_000);
  const defaultInterval = opts.watch?.defaultIntervalMs ?? 1000;
  const maxWatchers = opts.watch?.maxWatchers ?? 32;
  const { host, port: askedPort } = splitAddress(opts.address ?? DEFAULT_CONTROL_ADDR);
  const credentials = serverCredentials(opts.tls);

  const pkg = controlPackageDefinition();
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // Bounded concurrency per connection: one client cannot open unbounded streams.
    'grpc.max_concurrent_streams': 256,
  });

  // ---- health -------------------------------------------------------------------------------
  const health = new HealthImplementation({ '': 'NOT_SERVING', [CONTROL_SERVICE]: 'NOT_SERVING' });
  let closing = false;
  let currentHealth: HealthStatus = 'NOT_SERVING';
  const publishHealth = (status: HealthStatus) => {
    const next: HealthStatus = closing ? 'NOT_SERVING' : status;
    if (next === currentHealth) return;
    currentHealth = next;
    health.setStatus('', next);
    health.setStatus(CONTROL_SERVICE, next);
    log?.info('control plane health changed', { health: next });
  };
  const unsubscribeHealth = target.onHealthChange((s) => publishHealth(s));
  publishHealth(target.health());

  // ---- helpers ------------------------------------------------------------------------------
  const peerOf = (call: { getPeer(): string }) => {
    try {
      return call.getPeer();
    } catch {
      return 'unknown';
    }
  };

  function unary<Req>(name: string, mutating: boolean, fn: (req: Req) => Promise<Msg> | Msg) {
    return (call: ServerUnaryCall<Req, Msg>, callback: sendUnaryData<Msg>) => {
      if (mutating) {
        const decision = auth.check(call.metadata, name);
        if (!decision.ok) {
          log?.warn('control call refused', { call: name, peer: peerOf(call), status: statusName(decision.code) });
          callback(serviceError(decision.code, decision.message));
          return;
        }
      }
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (res) => callback(null, res),
          (err: unknown) => {
            const e = toServiceError(err);
            const level = e.code === GrpcStatus.INTERNAL ? 'error' : mutating ? 'warn' : 'debug';
            log?.[level]('control call failed', { call: name, peer: peerOf(call), status: statusName(e.code!), error: e.details });
            callback(e);
          },
        );
    };
  }

  const statsSnapshot = (): Promise<ControlStats> =>
    withTimeout(Promise.resolve().then(() => target.stats()), statsTimeoutMs, 'the stats snapshot');

  const statsMessage = (s: ControlStats, previous?: { totals: TotalsView; at: number }): Msg => {
    const t = now();
    const rates = previous
      ? ratesBetween(previous.totals, s.totals, (t - previous.at) / 1000)
      : ratesBetween(undefined, s.totals, (t - s.startedAt) / 1000);
    return statsMsg(previous ? { ...s, rates: undefined } : s, {
      mode: target.mode,
      serviceVersion,
      health: currentHealth,
      now: t,
      rates,
    });
  };

  // ---- reload: one at a time ----------------------------------------------------------------
  let reloading = false;
  const reload = async (req: { source?: string; path?: string; model?: Buffer; wait_ms?: number }): Promise<Msg> => {
    let source: ModelSource;
    if (req.source === 'path') {
      if (!req.path) throw new ControlError('invalid_argument', 'path is empty');
      source = { path: req.path };
    } else if (req.source === 'model') {
      if (!req.model || req.model.length === 0) throw new ControlError('invalid_argument', 'model bytes are empty');
      source = { bytes: new Uint8Array(req.model.buffer, req.model.byteOffset, req.model.byteLength) };
    } else {
      throw new ControlError('invalid_argument', 'set either path (a file on the server) or model (the file content)');
    }
    if (reloading) {
      throw new ControlError('aborted', 'another ReloadModel is in progress; retry when it has finished');
    }
    reloading = true;
    const t0 = performance.now();
    try {
      const result = await target.reload(source, changeOptions(req));
      const ms = performance.now() - t0;
      log?.info('model reloaded', {
        version: result.model.version,
        previous: result.previousVersion,
        source: 'path' in source ? source.path : `bytes (${source.bytes.length})`,
        ms: Math.round(ms),
      });
      return reloadMsg(result, ms);
    } finally {
      reloading = false;
    }
  };

  // ---- watch streams ------------------------------------------------------------------------
  const watchStops = new Set<() => void>();

  const watchStats = (call: ServerWritableStream<{ interval_ms?: number }, Msg>) => {
    if (closing) {
      call.emit('error', serviceError(GrpcStatus.UNAVAILABLE, 'the control plane is shutting down'));
      return;
    }
    if (watchStops.size >= maxWatchers) {
      call.emit('error', serviceError(GrpcStatus.RESOURCE_EXHAUSTED, `too many WatchStats streams open (limit ${maxWatchers})`));
      return;
    }
    const asked = call.request.interval_ms ?? 0;
    const interval = Math.min(maxInterval, Math.max(minInterval, asked > 0 ? asked : defaultInterval));
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    // A slow reader must not make us buffer: while a write is not flushed, ticks are skipped.
    let backedUp = false;
    let previous: { totals: TotalsView; at: number } | undefined;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      watchStops.delete(endStream);
    };
    const endStream = () => {
      if (stopped) return;
      stop();
      call.end();
    };
    watchStops.add(endStream);
    call.on('cancelled', stop);
    call.on('close', stop);
    call.on('error', stop);
    call.on('drain', () => {
      backedUp = false;
    });
    const tick = async () => {
      if (stopped) return;
      try {
        const s = await statsSnapshot();
        if (stopped) return;
        if (!backedUp) {
          const msg = statsMessage(s, previous);
          previous = { totals: { ...s.totals, reasons: { ...s.totals.reasons } }, at: now() };
          backedUp = !call.write(msg);
        }
      } catch (err) {
        if (stopped) return;
        stop();
        call.emit('error', toServiceError(err));
        return;
      }
      if (!stopped) timer = setTimeout(() => void tick(), interval);
    };
    void tick();
  };

  // ---- the service --------------------------------------------------------------------------
  const impl: UntypedServiceImplementation = {
    GetStats: unary('GetStats', false, async () => statsMessage(await statsSnapshot())),
    WatchStats: watchStats,
    ReloadModel: unary('ReloadModel', true, reload),
    GetCircuitBreaker: unary('GetCircuitBreaker', false, () => breakerMsg(target.breaker())),
    ResetCircuitBreaker: unary('ResetCircuitBreaker', true, async () => {
      const b = await target.resetBreaker();
      log?.info('circuit breaker reset', { state: b.state });
      return breakerMsg(b);
    }),
    GetConfig: unary('GetConfig', false, async () => {
      const c = target.config();
      let modelVersion = '';
      try {
        modelVersion = (await statsSnapshot()).model.version;
      } catch {
        // GetConfig must answer even when stats cannot; the version is then left empty.
      }
      return configMsg(c, { mode: target.mode, serviceVersion, modelVersion });
    }),
    SetThresholds: unary('SetThresholds', true, async (req: { confidence?: number; max_uncertainty?: number; wait_ms?: number }) => {
      const update: ThresholdsUpdate = {};
      const confidence = checkThreshold('confidence', req.confidence);
      const maxUncertainty = checkThreshold('max_uncertainty', req.max_uncertainty);
      if (confidence !== undefined) update.confidence = confidence;
      if (maxUncertainty !== undefined) update.maxUncertainty = maxUncertainty;
      if (confidence === undefined && maxUncertainty === undefined) {
        throw new ControlError('invalid_argument', 'set at least one of confidence and max_uncertainty');
      }
      const t = await target.setThresholds(update, changeOptions(req));
      log?.info('thresholds changed', { confidence: t.confidence, maxUncertainty: t.maxUncertainty });
      return thresholdsMsg(t);
    }),
    Route: unary('Route', false, async (req: RoutingRequest) => (await target.route(req)) as unknown as Msg),
    SetTenantPolicy: unary('SetTenantPolicy', true, async (req: { policy?: { tenant?: string; confidence?: number; max_uncertainty?: number } | null; wait_ms?: number }) => {
      if (!target.setPolicy) throw noPolicies();
      const p = req.policy;
      if (!p) throw new ControlError('invalid_argument', 'policy is required');
      const confidence = checkThreshold('confidence', p.confidence);
      const maxUncertainty = checkThreshold('max_uncertainty', p.max_uncertainty);
      const r = await target.setPolicy({ tenant: p.tenant ?? '', confidence: confidence ?? 0, maxUncertainty: maxUncertainty ?? 0 }, changeOptions(req));
      log?.info('tenant policy set', { tenant: r.tenant, confidence, maxUncertainty });
      return policyChangeMsg(r);
    }),
    DeleteTenantPolicy: unary('DeleteTenantPolicy', true, async (req: { tenant?: string; wait_ms?: number }) => {
      if (!target.deletePolicy) throw noPolicies();
      const r = await target.deletePolicy(req.tenant ?? '', changeOptions(req));
      log?.info('tenant policy deleted', { tenant: r.tenant, changed: r.changed });
      return policyChangeMsg(r);
    }),
    ListTenantPolicies: unary('ListTenantPolicies', false, () => {
      if (!target.listPolicies) throw noPolicies();
      return { policies: target.listPolicies().map(tenantPolicyMsg) };
    }),
    GetFleet: unary('GetFleet', false, (req: { include_stale?: boolean }) => {
      if (!target.fleet) throw new ControlError('failed_precondition', `a ${target.mode} deployment has no fleet view (it needs Kafka: run serve)`);
      return fleetMsg(target.fleet({ includeStale: req.include_stale === true }));
    }),
  };
  server.addService(pkg[CONTROL_SERVICE] as ServiceDefinition, impl);
  health.addToServer(server);
  new ReflectionService(reflectionPackage()).addToServer(server);

  const bindHost = host.includes(':') ? `[${host}]` : host;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${bindHost}:${askedPort}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
    });
  } catch (err) {
    unsubscribeHealth();
    throw new ConfigError(`cannot listen on ${bindHost}:${askedPort} for the control plane: ${oneLine(errorMessage(err))}`, { cause: err });
  }
  const address = `${bindHost}:${port}`;
  log?.info('control plane listening', {
    address,
    tls: opts.tls ? (opts.tls.caFile ? 'mutual' : 'server') : 'off',
    adminCalls: auth.configured ? 'token' : 'disabled',
  });

  let closed: Promise<void> | undefined;
  return {
    address,
    port,
    get watchers() {
      return watchStops.size;
    },
    get health() {
      return currentHealth;
    },
    close(closeOpts: { timeoutMs?: number } = {}): Promise<void> {
      closed ??= (async () => {
        closing = true;
        publishHealth('NOT_SERVING');
        unsubscribeHealth();
        for (const end of [...watchStops]) end();
        const timeoutMs = closeOpts.timeoutMs ?? 5000;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            // Health Watch streams and slow calls keep tryShutdown waiting: cut them.
            server.forceShutdown();
            resolve();
          }, timeoutMs);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        log?.info('control plane closed');
      })();
      return closed;
    },
  };
}

/** A call's wait for the whole fleet, bounded so a client cannot hold a handler forever. */
function changeOptions(req: { wait_ms?: number }): ChangeOptions {
  const w = Number(req.wait_ms ?? 0);
  return Number.isFinite(w) && w > 0 ? { waitMs: Math.min(w, 600_000) } : {};
}

function noPolicies(): ControlError {
  return new ControlError('failed_precondition', 'tenant policies live in the fleet\'s control topic; this deployment has none (serve --control-only)');
}
