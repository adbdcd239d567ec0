// The service, wired: config → decision log (Postgres, migrated) → the fleet's desired state
// (control topic) → router pool → circuit breaker → Kafka processor → metrics/health HTTP.
// `App.control` is what the gRPC control plane calls (src/control/serve-target.ts): it reads the
// parts started here and sends state changes through the fleet's control topic.
//
// Start-up order puts the cheap, failure-prone parts first (HTTP port, database, model), and
// Kafka last, so a bad setting fails fast and no request is consumed before every part that
// decides or logs it is ready. Shutdown runs the other way: stop consuming and drain (decisions
// acknowledged, rows durable, offsets committed), then close the log, the pool and the rest.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Admin, Kafka } from 'kafkajs';
import type pg from 'pg';
import { decodesInWorkers, type Config } from './config.js';
import { DEFAULT_THRESHOLDS } from './engine/decide.js';
import { RouterPool } from './engine/pool/pool.js';
import type { TenantPolicies } from './engine/policy.js';
import { errorMessage } from './errors.js';
import { ControlTopic } from './control/control-topic.js';
import { ControlHistory } from './store/control-history.js';
import { ControlCore, type RoutingPool } from './control/core.js';
import { DesiredState } from './control/desired-state.js';
import { FleetControl } from './control/fleet-control.js';
import { startupModel } from './control/reload.js';
import { replicaSample, routeCounts, type ServiceParts } from './control/service-views.js';
import { ControlError, type HealthStatus } from './control/target.js';
import { startHttpServer, type HttpServer, type ReadinessReport } from './observe/http.js';
import { FleetView } from './control/fleet-view.js';
import { ServeControlTarget } from './control/serve-target.js';
import { VERSION } from './version.js';
import { createLogger, type Logger } from './observe/logger.js';
import { registerCostMetrics } from './observe/cost.js';
import { logDecisionLogEvents } from './observe/decision-log-events.js';
import { LagSampler } from './observe/lag.js';
import { serviceReadiness } from './observe/readiness.js';
import { StatusTracker } from './observe/status.js';
import { statusRoutes } from './observe/status-page.js';
import { createMetrics, setModelVersion, type Metrics } from './observe/metrics.js';
import { DecisionLog, createPool, migrate, redactUrl, resolveDatabase, type ResolvedDatabase } from './store/index.js';
import { StoreStatsCache } from './store/stats-cache.js';
import type { Scorer } from './resilience/breaker.js';
import { createKafka, ensureTopics } from './stream/kafka.js';
import { startLocalBroker } from './stream/local-broker.js';
import { securityFailure } from './stream/security-errors.js';
import { decisionLogPort } from './stream/log-port.js';
import { waitForBroker } from './stream/wait-for-broker.js';
import { StartupPatience } from './startup.js';
import { classifyPgError } from './store/errors.js';
import { Processor, type DecisionLogPort, type ProcessorEvent, type ProcessorOptions } from './stream/processor.js';
import { FeedbackService, type FeedbackSettings } from './feedback/service.js';

export type { Scorer } from './resilience/breaker.js';
export { startLocalBroker } from './stream/local-broker.js';

export interface AppOptions {
  config: Config;
  logger?: Logger;
  /**
   * Wraps the scorer the breaker protects — the test hook for failure injection
   * (`(score) => (req) => failing ? Promise.reject(new Error('boom')) : score(req)`).
   */
  wrapScorer?: (scorer: Scorer) => Scorer;
  /** Serve /metrics, /healthz, /readyz on config.httpAddr. Default true. */
  http?: boolean;
  /** Start the local development broker (scripts/kafka.mjs) when KAFKA_BROKERS is not set. Default false. */
  localBroker?: boolean;
  /** Fall back to the embedded Postgres when DATABASE_URL is not set and nothing answers. Default true. */
  embeddedDatabase?: boolean;
  /** Where a Postgres is looked for when DATABASE_URL is not set (default docs/contracts.md §2's; tests point it at a closed port). */
  defaultDatabaseUrl?: string;
  /** Use this pool instead of creating one (closed with the app). */
  pool?: RoutingPool;
  /** Processor tuning (chunk size, heartbeat period, session timeout). */
  processor?: Pick<ProcessorOptions, 'chunkSize' | 'heartbeatIntervalMs' | 'sessionTimeoutMs' | 'createProducerThread'>;
  /** The feedback loop's settings (feedbackSettingsFromEnv); default: its defaults. */
  feedback?: FeedbackSettings;
}

export type AppEvent =
  | ProcessorEvent
  | { type: 'started'; ms: number }
  | { type: 'breaker'; state: 'closed' | 'half_open' | 'open' }
  | { type: 'model'; version: string; previousVersion: string }
  | { type: 'health'; status: HealthStatus }
  | { type: 'stopped'; clean: boolean }
  /** The service cannot go on (the consumer stopped for good); the process should exit 1. */
  | { type: 'fatal'; reason: string };

export class App extends EventEmitter {
  /** The validated, frozen configuration (config() is the control plane's redacted view). */
  readonly settings: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** What the gRPC control plane calls (GetStats, reloads, thresholds, policies, breaker, Route). */
  readonly control: ServeControlTarget;
  readonly #opts: AppOptions;

  #http: HttpServer | undefined;
  #db: ResolvedDatabase | undefined;
  #pg: pg.Pool | undefined;
  #log: DecisionLog | undefined;
  #logPort: DecisionLogPort | undefined;
  #pool: RoutingPool | undefined;
  #core: ControlCore | undefined;
  /** The fleet's desired state (control topic), read before the engine starts. */
  readonly #desired: DesiredState;
  #controlTopic: ControlTopic | undefined;
  #controlHistory: ControlHistory | undefined;
  #fleet: FleetControl | undefined;
  #kafka: Kafka | undefined;
  #admin: Admin | undefined;
  #processor: Processor | undefined;
  #feedback: FeedbackService | undefined;
  #lag: LagSampler | undefined;
  #storeStats: StoreStatsCache | undefined;
  /** The fleet view: this replica's heartbeats, and every replica's from the status topic. */
  #fleetView: FleetView | undefined;
  #fleetStarting: Promise<void> | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  /** Waits for Postgres and the broker at start; aborted by a stop during start-up. */
  readonly #startupAbort = new AbortController();
  #patience: StartupPatience | undefined;
  /** Why the service cannot go on, once it cannot (start-up stops at the next step). */
  #fatal: string | undefined;

  #startedAt = Date.now();
  #started = false;
  #draining = false;
  #stopping: Promise<{ clean: boolean }> | undefined;
  #health: HealthStatus = 'NOT_SERVING';
  readonly #healthListeners = new Set<(s: HealthStatus) => void>();
  #logFailedBatches = 0;
  readonly #status = new StatusTracker({
    stats: () => this.control.stats(),
    counters: () => {
      const r = routeCounts({ processor: this.#processor, core: this.#core });
      return { decisions: r.lightweight + r.heavyweight, lightweight: r.lightweight, dlq: this.#processor?.counters.dlq ?? 0 };
    },
    meta: () => ({ mode: this.control.mode, health: this.#health }),
  });

  constructor(opts: AppOptions) {
    super();
    this.#opts = opts;
    this.settings = opts.config;
    this.logger = opts.logger ?? createLogger({ level: opts.config.logLevel, secrets: [opts.config.adminToken] });
    this.metrics = createMetrics();
    const prices = opts.config.cost;
    if (prices) registerCostMetrics(this.metrics.registry, prices, () => routeCounts({ processor: this.#processor, core: this.#core }));
    this.#desired = new DesiredState({ logger: this.logger.child({ component: 'desired-state' }) });
    this.control = new ServeControlTarget({
      tenantKey: opts.config.tenantKey,
      logger: this.logger,
      parts: {
        core: () => this.#core,
        fleet: () => this.#fleet,
        fleetView: () => this.#fleetView,
        pool: () => this.#pool,
        draining: () => this.#draining,
        views: (withStore) => this.#views(withStore),
        health: () => this.#health,
        onHealthChange: (listener) => {
          this.#healthListeners.add(listener);
          return () => this.#healthListeners.delete(listener);
        },
      },
    });
  }

  #emitEvent(e: AppEvent): void {
    this.emit('event', e);
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** Starts every part; on failure, stops what was started and rethrows. */
  async start(): Promise<void> {
    if (this.#started) throw new Error('App.start() called twice');
    this.#started = true;
    const t0 = Date.now();
    this.#patience = new StartupPatience({ timeoutMs: this.settings.startupTimeoutMs, logger: this.logger, signal: this.#startupAbort.signal });
    try {
      await this.#startParts();
    } catch (err) {
      await this.stop({ timeoutMs: 1000 }).catch(() => {});
      throw err;
    }
    this.#startedAt = Date.now();
    this.#healthTimer = setInterval(() => this.#refreshHealth(), 500);
    this.#healthTimer.unref();
    this.#status.start();
    this.logger.info('tiny-dancer serving', {
      ms: Date.now() - t0,
      brokers: this.settings.brokers,
      requests: this.settings.topics.requests,
      group: this.settings.groupId,
      exactlyOnce: this.settings.exactlyOnce,
      model: this.#core?.model.version,
      http: this.#http?.url,
    });
    this.#emitEvent({ type: 'started', ms: Date.now() - t0 });
  }

  async #startParts(): Promise<void> {
    const c = this.settings;
    const log = this.logger;

    if (this.#opts.http !== false) {
      this.#http = await startHttpServer({
        host: c.httpAddr.host,
        port: c.httpAddr.port,
        registry: this.metrics.registry,
        readiness: () => this.readiness(),
        maxEventLoopDelayMs: c.maxEventLoopDelayMs,
        onEventLoopDelay: (p99) => this.metrics.eventLoopDelay.set(p99),
        logger: log,
        routes: statusRoutes(this.#status),
      });
    }

    // Kafka address: the local development broker when none was configured and asked for.
    if (this.#opts.localBroker && !c.brokersFromEnv) {
      const b = await startLocalBroker();
      log.info(
        b.started
          ? `no KAFKA_BROKERS: started the local development Kafka broker at ${b.brokers}`
          : `no KAFKA_BROKERS: using the local development Kafka broker at ${b.brokers}`,
        { brokers: b.brokers },
      );
    }

    // Postgres: migrated before anything is decided.
    this.#db = await resolveDatabase({
      ...(c.databaseUrlFromEnv || this.#opts.embeddedDatabase === false ? { databaseUrl: c.databaseUrl } : {}),
      dataDir: c.pgliteDir,
      log,
      ...(this.#opts.defaultDatabaseUrl ? { defaultUrl: this.#opts.defaultDatabaseUrl } : {}),
    });
    this.#pg = createPool({ url: this.#db.url, tls: c.pgTls, max: c.logConcurrency + 2, log, applicationName: 'tiny-dancer serve' });
    const pgPool = this.#pg;
    const migrated = await this.#patience!.until(
      'postgres',
      `Postgres at ${redactUrl(this.#db.url)}`,
      () => migrate(pgPool, { schema: c.dbSchema, log }),
      (err) => classifyPgError(err) === 'retriable',
    );
    log.info('decision log ready', {
      database: redactUrl(this.#db.url),
      embedded: this.#db.embedded,
      schema: c.dbSchema,
      schemaVersion: migrated.version,
      applied: migrated.applied.map((m) => m.version),
    });
    this.#log = new DecisionLog({
      pool: this.#pg,
      schema: c.dbSchema,
      batchSize: c.logBatchSize,
      maxBuffered: c.logMaxBuffered,
      flushIntervalMs: c.logFlushIntervalMs,
      concurrency: c.logConcurrency,
    });
    logDecisionLogEvents(this.#log, log, () => this.#logFailedBatches++);
    this.#storeStats = new StoreStatsCache({ pool: this.#pg, schema: c.dbSchema });

    this.#checkNotStopped();
    // The fleet's desired state, read to the end of the control topic before the engine starts,
    // so this replica starts with the model and thresholds the fleet runs.
    this.#kafka = createKafka(c, log);
    await waitForBroker(c, this.#patience!, log);
    // Every control record this replica reads, from the start of the topic, is mirrored into
    // Postgres as the audit history (idempotent across replicas: keyed by offset).
    const history = (this.#controlHistory = new ControlHistory({ pool: pgPool, schema: c.dbSchema, log }));
    this.#desired.onProcessed((entry) => history.record(entry));
    this.#controlTopic = new ControlTopic({
      kafka: this.#kafka,
      topic: c.topics.control,
      replicationFactor: c.replicationFactor,
      state: this.#desired,
      instanceId: `${hostname()}.${process.pid}`,
      logger: log,
      registry: this.metrics.registry,
    });
    await this.#controlTopic.start();

    this.#checkNotStopped();
    // Engine: validate the model here first, so a bad file fails start-up with a precise message.
    const prepared = await startupModel(this.#desired.model, c.modelPath, log);
    const thresholds = { ...c.thresholds, ...(this.#desired.thresholds ?? {}) };
    if (this.#opts.pool) this.#pool = this.#opts.pool;
    else {
      this.#pool = await RouterPool.create({
        model: { bytes: prepared.bytes, source: prepared.source },
        ...(c.workers === undefined ? {} : { workers: c.workers }),
        ...(thresholds.confidence === undefined ? {} : { confidenceThreshold: thresholds.confidence }),
        ...(thresholds.maxUncertainty === undefined ? {} : { maxUncertainty: thresholds.maxUncertainty }),
        // The processor never has more than maxInFlight requests out, plus Route calls.
        maxQueue: c.maxInFlight + 1024,
        // The decision log stores each decision's features (retraining); the workers have them.
        returnFeatures: true,
        tenantKey: c.tenantKey,
        tenantPolicies: this.control.tenantPolicies().size > 0 ? new Map(this.control.tenantPolicies().entries()) : undefined,
      });
    }
    setModelVersion(this.metrics, this.#pool.modelVersion);
    const pool = this.#pool as RoutingPool & { routeEncoded?: unknown };
    const core = (this.#core = new ControlCore({
      pool: this.#pool,
      model: prepared.model,
      modelSource: prepared.source,
      thresholds,
      breaker: c.breaker,
      ...(this.#opts.wrapScorer ? { wrapScorer: this.#opts.wrapScorer } : {}),
      metrics: this.metrics,
      logger: log,
      policyOf: (req) => this.control.tenantPolicies().choose(req.metadata, DEFAULT_THRESHOLDS).policy,
      onBreakerState: (state) => this.#emitEvent({ type: 'breaker', state }),
    }));
    this.#fleet = new FleetControl({ writer: this.#controlTopic, state: this.#desired, core: () => core });

    this.#checkNotStopped();
    // Requests last: nothing is consumed before the parts that decide and log are up.
    this.#admin = this.#kafka.admin();
    await this.#admin.connect().catch((err: unknown) => Promise.reject(securityFailure(err, c.brokers) ?? err));
    await ensureTopics(this.#admin, c, log);
    const port = (this.#logPort = decisionLogPort(this.#log, () => !this.#draining));
    this.#processor = new Processor({
      kafka: this.#kafka,
      config: c,
      breaker: core.breaker,
      log: port,
      logger: log,
      metrics: this.metrics,
      onEngineLatency: (us) => core.engineLatency.record(us),
      onEndToEnd: (us) => core.endToEndLatency.record(us),
      encodedScoring: pool.routeEncoded === undefined ? undefined : (encoding) => decodesInWorkers(c.decodeInWorkers, encoding),
      producerThread: c.producerThread,
      ...(this.#opts.processor ?? {}),
    });
    this.#processor.on('event', (e: ProcessorEvent) => {
      this.#emitEvent(e);
      this.#refreshHealth();
      // kafkajs does not restart its consumer after a non-retriable error: without this the
      // process would live on, never ready, consuming nothing. Exiting lets a supervisor start
      // a fresh one, and the uncommitted records are redelivered to it.
      if (e.type === 'crashed' && !e.restart && !this.#draining) {
        const reason = `the Kafka consumer stopped and will not restart: ${e.error}`;
        this.#fatal ??= reason;
        log.error(`${reason}; stopping so the process can be restarted`);
        this.#emitEvent({ type: 'fatal', reason });
      }
    });
    await this.#processor.start();
    this.#checkNotStopped();
    // The feedback loop: the outcomes topic in its own group, the calibration monitor (metrics on
    // this registry, a section of GetStats) and the registry's record of the serving model.
    this.#feedback = new FeedbackService({
      kafka: this.#kafka,
      topics: c.topics,
      groupId: c.groupId,
      pool: this.#pg,
      schema: c.dbSchema,
      registry: this.metrics.registry,
      dlqCounter: this.metrics.dlq,
      logger: log,
      ...(this.#opts.feedback ? { settings: this.#opts.feedback } : {}),
    });
    await this.#feedback.modelLoaded(prepared.model, prepared.bytes, prepared.source, { activate: true, by: this.#desired.model?.meta.writtenBy || 'serve' });
    await this.#feedback.start();
    // From here on, control records come into force as they arrive.
    this.#desired.attach({
      model: async (m) => {
        const previousVersion = core.pool.modelVersion;
        await core.applyModel(m.prepared);
        setModelVersion(this.metrics, core.pool.modelVersion);
        // The registry keeps the audit history: every model record, mirrored.
        await this.#feedback?.modelLoaded(m.prepared.model, m.prepared.bytes, m.prepared.source, { activate: true, by: m.meta.writtenBy || 'control topic' });
        this.#emitEvent({ type: 'model', version: core.pool.modelVersion, previousVersion });
      },
      thresholds: async (t) => {
        await core.setThresholds(t);
      },
    });
    // The workers decide with the fleet's tenant policies, kept in step with the control topic.
    const applyPolicies = (policies: TenantPolicies) => {
      this.control.setTenantPolicies(policies).catch((err: unknown) => log.warn('tenant policies not applied', { err: errorMessage(err) }));
    };
    applyPolicies(this.#desired.policies);
    this.#desired.onPoliciesChanged(applyPolicies);
    this.#lag = new LagSampler({
      admin: () => this.#admin,
      groupId: c.groupId,
      topic: c.topics.requests,
      gauge: this.metrics.consumerLag,
      logger: this.logger,
      intervalMs: c.lagIntervalMs,
    });
    this.#lag.start();
    this.#startFleetView();
  }

  /**
   * Starts the fleet view in the background: it does not hold up readiness (a replica decides
   * requests without it), and a failure to start it is logged, not fatal.
   */
  #startFleetView(): void {
    const c = this.settings;
    const host = c.grpcAddr.host.includes(':') ? `[${c.grpcAddr.host}]` : c.grpcAddr.host;
    const fleet = (this.#fleetView = new FleetView({
      kafka: this.#kafka!,
      admin: this.#admin!,
      topic: c.topics.status,
      groupId: c.groupId,
      replicationFactor: c.replicationFactor,
      identity: { instance: c.instanceId, host: hostname(), version: VERSION, startedAt: Date.now(), controlAddress: `${host}:${c.grpcAddr.port}` },
      source: { sample: () => replicaSample(this.#views(false), this.readiness().ready) },
      heartbeatMs: c.heartbeatMs,
      logger: this.logger,
    }));
    // State-changing calls report how many live replicas have applied their record.
    this.#fleet?.setConvergenceProbe((revision) => {
      const live = fleet.snapshot(false).replicas;
      return { live: live.length, converged: live.filter((r) => r.status.policyRevision >= revision).length };
    });
    this.#fleetStarting = fleet.start().catch((err: unknown) => {
      this.logger.warn('the fleet view could not start; GetFleet will not list the fleet', { err: errorMessage(err), topic: c.topics.status });
    });
  }

  #checkNotStopped(): void {
    if (this.#fatal !== undefined) throw new ControlError('unavailable', this.#fatal);
    if (this.#draining) throw new ControlError('aborted', 'stopped during start-up');
  }

  /**
   * Drains and stops: no new records, in-flight ones decided, acknowledged, logged and
   * committed within drainTimeoutMs; then the log, the pool and the rest close. Idempotent.
   * `clean` is false when the drain ran out of time (the rest is redelivered: nothing lost).
   */
  stop(opts: { timeoutMs?: number } = {}): Promise<{ clean: boolean }> {
    this.#stopping ??= this.#shutdown(opts.timeoutMs ?? this.settings.drainTimeoutMs);
    return this.#stopping;
  }

  async #shutdown(timeoutMs: number): Promise<{ clean: boolean }> {
    const started = Date.now();
    const left = () => Math.max(500, timeoutMs - (Date.now() - started));
    this.#draining = true;
    this.#startupAbort.abort();
    this.#setHealth('NOT_SERVING');
    this.#lag?.stop();
    this.#storeStats?.stop();
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    // Leave the fleet first: a tombstone, so other replicas stop listing this one at once.
    if (this.#fleetStarting) await Promise.race([this.#fleetStarting, new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.#fleetView?.stop({ tombstone: true });
    this.#status.stop();
    let clean = true;
    // A consumer kafkajs gave up on cannot be stopped cleanly; the rest must still close.
    if (this.#processor) {
      clean = await this.#processor.stop(timeoutMs).catch((err: unknown) => {
        this.logger.warn('stream processor stop failed', { err });
        return false;
      });
    }
    await this.#feedback?.stop().catch((err: unknown) => this.logger.warn('outcome consumer stop failed', { err }));
    await this.#controlTopic?.stop();
    await this.#controlHistory?.close(Math.min(2000, left()));
    if (this.#log) {
      const r = await this.#log.close({ timeout: left() }).catch((err: unknown) => {
        this.logger.warn('decision log close failed', { err });
        return { unwritten: -1, settled: 0 };
      });
      if (r.unwritten !== 0) clean = false;
    }
    await this.#pool?.close({ timeout: Math.min(5000, left()) }).catch((err: unknown) => this.logger.warn('router pool close failed', { err }));
    this.#core?.shutdown();
    await this.#admin?.disconnect().catch(() => {});
    await this.#pg?.end().catch(() => {});
    await this.#db?.close().catch((err: unknown) => this.logger.warn('embedded Postgres close failed', { err }));
    await this.#http?.close();
    this.logger.info('tiny-dancer stopped', { clean, ms: Date.now() - started });
    this.#emitEvent({ type: 'stopped', clean });
    return { clean };
  }

  // ---- health -------------------------------------------------------------------------------

  /** Readiness (docs/contracts.md §2): in the group with partitions, engine loaded, log accepting writes. */
  readiness(): ReadinessReport {
    const log = this.#log;
    const port = this.#logPort;
    return serviceReadiness({
      processor: this.#processor,
      engineLoaded: this.#pool !== undefined && this.#core !== undefined,
      log: log && port ? { backlog: () => log.backlog(), maxBuffered: log.maxBuffered, underPressure: port.underPressure() } : undefined,
      draining: this.#draining,
      startup: this.#patience?.checks(),
    });
  }

  #refreshHealth(): void {
    this.#setHealth(this.readiness().ready ? 'SERVING' : 'NOT_SERVING');
  }

  #setHealth(s: HealthStatus): void {
    if (s === this.#health) return;
    this.#health = s;
    this.#emitEvent({ type: 'health', status: s });
    for (const l of [...this.#healthListeners]) l(s);
  }

  /** What the control plane's views are assembled from (service-views.ts). */
  #views(withStore: boolean): ServiceParts {
    return {
      settings: this.settings,
      startedAt: this.#startedAt,
      core: this.#core,
      pool: this.#pool,
      processor: this.#processor,
      log: this.#log,
      logFailedBatches: this.#logFailedBatches,
      lag: this.#lag,
      feedback: this.#feedback,
      fleet: this.#fleetView,
      desired: this.#desired,
      database: this.#db,
      // Only GetStats reads (and so refreshes) the Postgres aggregates.
      ...(withStore ? { store: this.#storeStats?.read() } : {}),
    };
  }


  // ---- introspection for the CLI, tests and the demo ----------------------------------------

  /** The HTTP server's base URL (when started). */
  get httpUrl(): string | undefined {
    return this.#http?.url;
  }

  get modelVersion(): string | undefined {
    return this.#pool?.modelVersion;
  }

  /** Consumer state: joined, assignment, paused, in flight. */
  processorStatus() {
    return this.#processor?.status();
  }

  /** Lifetime stream counters. */
  streamCounters() {
    return this.#processor?.counters;
  }

  /** The database the log writes to (password masked) and whether it is the embedded one. */
  database(): { url: string; embedded: boolean } | undefined {
    return this.#db ? { url: redactUrl(this.#db.url), embedded: this.#db.embedded } : undefined;
  }

  /** Decision-log backlog (rows accepted, not yet durable). */
  logBacklog(): number {
    return this.#log?.backlog() ?? 0;
  }
}

/** Builds an App (not started). */
export function createApp(opts: AppOptions): App {
  return new App(opts);
}
