// The service, wired: config → decision log (Postgres, migrated) → the fleet's desired state
// (control topic) → router pool → circuit breaker → Kafka processor → metrics/health HTTP.
// `App` is also the control plane's target (src/control/target.ts): routing, thresholds and the
// breaker are the shared ControlCore (src/control/core.ts, the same one `serve --control-only`
// uses); a reload or threshold change is written to the control topic (FleetControl) and comes
// into force here, as on every replica, when the topic delivers it.
//
// Start-up order puts the cheap, failure-prone parts first (HTTP port, database, model), and
// Kafka last, so a bad setting fails fast and no request is consumed before every part that
// decides or logs it is ready. Shutdown runs the other way: stop consuming and drain (decisions
// acknowledged, rows durable, offsets committed), then close the log, the pool and the rest.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { Admin, Kafka } from 'kafkajs';
import type pg from 'pg';
import { decodesInWorkers, describeConfig, type Config } from './config.js';
import { DEFAULT_THRESHOLDS } from './engine/decide.js';
import { RouterPool } from './engine/pool/pool.js';
import { PolicyTable, type TenantPolicies } from './engine/policy.js';
import type { RoutingRequest, RoutingResponse } from './wire/types.js';
import { errorMessage, oneLine } from './errors.js';
import { ControlTopic } from './control/control-topic.js';
import { ControlHistory } from './store/control-history.js';
import { ControlCore, type RoutingPool } from './control/core.js';
import { DesiredState, type ApplyErrorView, type PoliciesListener } from './control/desired-state.js';
import { FleetControl, type ConvergenceProbe } from './control/fleet-control.js';
import { prepareModel, type PreparedModel } from './control/reload.js';
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
  type StoreAggregatesView,
  type TenantPolicyView,
  type ThresholdsUpdate,
} from './control/target.js';
import { startHttpServer, type HttpServer, type ReadinessReport } from './observe/http.js';
import { FleetView } from './control/fleet-view.js';
import type { FleetViewSnapshot } from './control/fleet-table.js';
import type { ReplicaSample } from './observe/heartbeat.js';
import { VERSION } from './version.js';
import { createLogger, type Logger } from './observe/logger.js';
import { costFigures, registerCostMetrics } from './observe/cost.js';
import { StatusTracker } from './observe/status.js';
import { statusRoutes } from './observe/status-page.js';
import { createMetrics, setModelVersion, type Metrics } from './observe/metrics.js';
import {
  DecisionLog,
  createPool,
  decisionStats,
  migrate,
  redactUrl,
  resolveDatabase,
  type ResolvedDatabase,
} from './store/index.js';
import type { Scorer } from './resilience/breaker.js';
import { createKafka, ensureTopics } from './stream/kafka.js';
import { preflightKafka } from './stream/preflight.js';
import { securityFailure } from './stream/security-errors.js';
import { decisionLogPort } from './stream/log-port.js';
import { isRetriableKafkaError } from './stream/kafka-errors.js';
import { StartupPatience } from './startup.js';
import { classifyPgError } from './store/errors.js';
import { Processor, type DecisionLogPort, type ProcessorEvent, type ProcessorOptions } from './stream/processor.js';
// FEEDBACK (issue 8): outcomes consumer, calibration monitor, model registry.
import { FeedbackService, type FeedbackSettings } from './feedback/service.js';

export type { Scorer } from './resilience/breaker.js';

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
  /** Where a Postgres is looked for when DATABASE_URL is not set (default SPEC §2's; tests point it at a closed port). */
  defaultDatabaseUrl?: string;
  /** Use this pool instead of creating one (closed with the app). */
  pool?: RoutingPool;
  /** Processor tuning (chunk size, heartbeat period, session timeout). */
  processor?: Pick<ProcessorOptions, 'chunkSize' | 'heartbeatIntervalMs' | 'sessionTimeoutMs' | 'createProducerThread'>;
  /** FEEDBACK (issue 8): the feedback loop's settings (feedbackSettingsFromEnv); default: its defaults. */
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

/** Starts (or finds) the local development broker: `up()` of scripts/kafka.mjs. */
export async function startLocalBroker(): Promise<{ brokers: string; started: boolean }> {
  const url = new URL('../scripts/kafka.mjs', import.meta.url);
  let mod: { up: () => Promise<{ brokers: string; started: boolean }> };
  try {
    mod = (await import(url.href)) as typeof mod;
  } catch (err) {
    throw new ControlError(
      'failed_precondition',
      `KAFKA_BROKERS is not set and the local broker script (${url.pathname}) cannot be loaded: ${errorMessage(err)}; set KAFKA_BROKERS`,
    );
  }
  return mod.up();
}

const STORE_STATS_TTL_MS = 5000;

export class App extends EventEmitter implements ControlTarget {
  readonly mode = 'serve';
  /** The validated, frozen configuration (config() is the control plane's redacted view). */
  readonly settings: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
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
  /** FEEDBACK (issue 8). */
  #feedback: FeedbackService | undefined;
  #lagTimer: NodeJS.Timeout | undefined;
  /** The fleet view: this replica's heartbeats, and every replica's from the status topic. */
  #fleetView: FleetView | undefined;
  #fleetStarting: Promise<void> | undefined;
  /** Lag per partition of the requests topic, as last sampled. */
  #lagByPartition = new Map<number, number>();
  #healthTimer: NodeJS.Timeout | undefined;
  /** Waits for Postgres and the broker at start; aborted by a stop during start-up. */
  readonly #startupAbort = new AbortController();
  #patience: StartupPatience | undefined;
  /** Why the service cannot go on, once it cannot (start-up stops at the next step). */
  #fatal: string | undefined;

  /** Per-tenant thresholds (the workers hold the same table; this one labels breaker fallbacks). */
  #policies: PolicyTable;
  #startedAt = Date.now();
  #started = false;
  #draining = false;
  #stopping: Promise<{ clean: boolean }> | undefined;
  #health: HealthStatus = 'NOT_SERVING';
  readonly #healthListeners = new Set<(s: HealthStatus) => void>();
  #lag: { total: number; at: number } | undefined;
  #store: StoreAggregatesView | undefined;
  #storeRefreshing = false;
  #logFailedBatches = 0;
  readonly #status = new StatusTracker({
    stats: () => this.stats(),
    counters: () => {
      const r = this.#routeCounts();
      return { decisions: r.lightweight + r.heavyweight, lightweight: r.lightweight, dlq: this.#processor?.counters.dlq ?? 0 };
    },
    meta: () => ({ mode: this.mode, health: this.#health }),
  });

  constructor(opts: AppOptions) {
    super();
    this.#opts = opts;
    this.settings = opts.config;
    this.logger = opts.logger ?? createLogger({ level: opts.config.logLevel, secrets: [opts.config.adminToken] });
    this.metrics = createMetrics();
    const prices = opts.config.cost;
    if (prices) registerCostMetrics(this.metrics.registry, prices, () => this.#routeCounts());
    this.#desired = new DesiredState({ logger: this.logger.child({ component: 'desired-state' }) });
    this.#policies = new PolicyTable(opts.config.tenantKey);
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
    this.#log.on('pressure', (b) => log.warn('decision log under pressure', { backlog: b.backlog, maxBuffered: b.maxBuffered }));
    this.#log.on('relief', (b) => log.info('decision log pressure relieved', { backlog: b.backlog }));
    this.#log.on('retry', (r) => {
      this.#logFailedBatches++;
      if (r.attempt === 1 || r.attempt % 10 === 0) {
        log.warn('decision log write failed; retrying', { err: r.error, code: r.code, kind: r.kind, attempt: r.attempt, rows: r.rows });
      }
    });
    this.#log.on('rejected', (r) => log.error('decision row refused by Postgres (bad data); set aside', { err: r.error, code: r.code, request_id: r.row.request_id, candidate_id: r.row.candidate_id }));
    this.#log.on('breaker', (s) => log.info(`decision log breaker ${s}`));

    this.#checkNotStopped();
    // The fleet's desired state, read to the end of the control topic before the engine starts,
    // so this replica starts with the model and thresholds the fleet runs.
    this.#kafka = createKafka(c, log);
    await this.#waitForBroker();
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
    const prepared = await this.#startupModel(log);
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
        tenantPolicies: this.#policies.size > 0 ? new Map(this.#policies.entries()) : undefined,
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
      policyOf: (req) => this.#policies.choose(req.metadata, DEFAULT_THRESHOLDS).policy,
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
    // FEEDBACK (issue 8): the outcomes topic in its own group, the calibration monitor (metrics
    // on this registry, a section of GetStats) and the registry's record of the serving model.
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
    this.onPoliciesChanged((policies) => {
      this.setTenantPolicies(policies).catch((err: unknown) => log.warn('tenant policies not applied', { err: errorMessage(err) }));
    });
    this.#lagTimer = setInterval(() => void this.#sampleLag(), c.lagIntervalMs);
    this.#lagTimer.unref();
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
      source: { sample: () => this.#replicaSample() },
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

  /** The heartbeat's sample of this replica. */
  #replicaSample(): ReplicaSample {
    const st = this.#processor?.status();
    const k = this.#processor?.counters;
    const r = this.#core?.routeTotals() ?? { requests: 0, decisions: 0, lightweight: 0 };
    const partitions = st?.assignment[this.settings.topics.requests] ?? [];
    let lag: number | undefined;
    if (this.#lag) {
      lag = 0;
      for (const p of partitions) lag += this.#lagByPartition.get(p) ?? 0;
    }
    const d = this.#desired;
    return {
      modelVersion: this.#pool?.modelVersion ?? '',
      policyRevision: Math.max(0, d.revision),
      lastApplyError: d.lastApplyError?.message,
      partitions: [...partitions],
      requests: (k?.decided ?? 0) + r.requests,
      decisions: (k?.decisions ?? 0) + r.decisions,
      lightweight: (k?.lightweight ?? 0) + r.lightweight,
      consumerLag: lag,
      logBacklog: this.#log?.backlog() ?? 0,
      breaker: this.#core?.breaker.state ?? 'closed',
      ready: this.readiness().ready,
    };
  }

  /**
   * Start-up's patience with the broker: a client with no retries of its own and no logs asks
   * for the cluster's metadata until it answers, so the wait is one backoff and one log line per
   * window (kafkajs would log every failed connection).
   */
  async #waitForBroker(): Promise<void> {
    const c = this.settings;
    await this.#patience!.until(
      'kafka',
      `the Kafka broker at ${c.brokers.join(',')}`,
      async () => {
        // A secured cluster is checked first, so a wrong CA or mechanism fails at once, in words.
        await preflightKafka(c.brokers, c.kafkaSecurity, this.logger);
        const probe = createKafka(c, this.logger, { logLevel: 0 /* NOTHING */, retry: { retries: 0 } }).admin();
        try {
          await probe.connect();
          await probe.listTopics();
        } catch (err) {
          throw securityFailure(err, c.brokers) ?? err;
        } finally {
          await probe.disconnect().catch(() => {});
        }
      },
      isRetriableKafkaError,
    );
  }

  /**
   * The model `serve` starts with: the fleet's active model from the control topic — what the
   * last ReloadModel, `retrain --promote` or `admin rollback` made current through any replica,
   * already validated (hash, parse, features) when it was read; otherwise TD_MODEL_PATH, or
   * models/default.safetensors. The Postgres registry is the audit history, not consulted here.
   */
  async #startupModel(log: Logger): Promise<PreparedModel> {
    const c = this.settings;
    const desired = this.#desired.model;
    if (desired) {
      if (c.modelPath !== undefined) {
        log.warn('TD_MODEL_PATH is set, but the fleet\'s control topic names the active model; serving the fleet\'s', { modelPath: c.modelPath, version: desired.prepared.model.version });
      }
      log.info('serving the fleet\'s active model (control topic)', { version: desired.prepared.model.version, sha256: desired.sha256, by: desired.meta.writtenBy });
      return desired.prepared;
    }
    const { defaultModelPath } = await import('./engine/model.js');
    return prepareModel({ path: c.modelPath ?? defaultModelPath() });
  }

  #checkNotStopped(): void {
    if (this.#fatal !== undefined) throw new ControlError('unavailable', this.#fatal);
    if (this.#draining) throw new ControlError('aborted', 'stopped during start-up');
  }

  async #sampleLag(): Promise<void> {
    const admin = this.#admin;
    if (!admin || this.#draining) return;
    const topic = this.settings.topics.requests;
    try {
      const [committed, ends] = await Promise.all([
        admin.fetchOffsets({ groupId: this.settings.groupId, topics: [topic] }),
        admin.fetchTopicOffsets(topic),
      ]);
      const byPartition = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
      let total = 0;
      for (const e of ends) {
        const c = byPartition.get(e.partition) ?? -1;
        const start = c >= 0 ? c : Number(e.low);
        const lag = Math.max(0, Number(e.high) - start);
        total += lag;
        this.#lagByPartition.set(e.partition, lag);
        this.metrics.consumerLag.set({ topic, partition: String(e.partition) }, lag);
      }
      this.#lag = { total, at: Date.now() };
    } catch (err) {
      this.logger.debug('consumer lag sample failed', { err });
    }
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
    if (this.#lagTimer) clearInterval(this.#lagTimer);
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
    await this.#feedback?.stop().catch((err: unknown) => this.logger.warn('outcome consumer stop failed', { err })); // FEEDBACK (issue 8)
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

  /** Readiness (SPEC §2): in the group with partitions, engine loaded, log accepting writes. */
  readiness(): ReadinessReport {
    const checks: Record<string, true | string> = {};
    const st = this.#processor?.status();
    checks.consumer = st?.joined ? true : this.#processor ? 'not (yet) a member of the consumer group' : 'not started';
    checks.engine = this.#pool && this.#core ? true : 'model not loaded';
    if (!this.#log || !this.#logPort) checks.decisionLog = 'not started';
    else checks.decisionLog = this.#logPort.underPressure() ? `full: backlog ${this.#log.backlog()} of at most ${this.#log.maxBuffered} rows` : true;
    if (this.#draining) checks.draining = 'draining';
    Object.assign(checks, this.#patience?.checks());
    return { ready: Object.values(checks).every((v) => v === true), checks };
  }

  health(): HealthStatus {
    return this.#health;
  }

  onHealthChange(listener: (status: HealthStatus) => void): () => void {
    this.#healthListeners.add(listener);
    return () => this.#healthListeners.delete(listener);
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

  // ---- control plane ------------------------------------------------------------------------

  #require<T>(v: T | undefined, what: string): T {
    if (v === undefined) throw new ControlError('unavailable', `${what} is not running (the service is starting or stopped)`);
    return v;
  }

  #coreOrFail(): ControlCore {
    return this.#require(this.#core, 'the router');
  }

  #fleetOrFail(): FleetControl {
    if (this.#draining) throw new ControlError('failed_precondition', 'the service is draining; no changes now');
    return this.#require(this.#fleet, 'the control topic');
  }

  /** Validated, written to the control topic, returned once in force here (see FleetControl). */
  reload(source: ModelSource, opts: ChangeOptions = {}): Promise<ReloadResult> {
    return this.#fleetOrFail().reload(source, opts);
  }

  breaker(): BreakerView {
    return this.#coreOrFail().breakerView();
  }

  resetBreaker(): BreakerView {
    return this.#coreOrFail().resetBreaker();
  }

  /** Opens the breaker by hand (every candidate heavyweight until reset or the reset timeout). */
  tripBreaker(): BreakerView {
    return this.#coreOrFail().tripBreaker();
  }

  config(): ConfigSnapshot {
    const c = this.settings;
    const snap: ConfigSnapshot = {
      thresholds: this.#core?.thresholds() ?? { confidence: c.thresholds.confidence ?? 0, maxUncertainty: c.thresholds.maxUncertainty ?? 0 },
      breaker: {
        timeoutMs: c.breaker.timeoutMs,
        errorThresholdPercentage: c.breaker.errorThresholdPercentage,
        volumeThreshold: c.breaker.volumeThreshold,
        resetTimeoutMs: c.breaker.resetTimeoutMs,
        rollingWindowMs: c.breaker.rollingCountTimeoutMs,
      },
      settings: {
        ...describeConfig(c),
        mode: 'serve',
        database: this.#db ? redactUrl(this.#db.url) : undefined,
        embeddedDatabase: this.#db?.embedded ?? false,
        workers: this.#pool?.stats().workers,
        controlRevision: this.#desired.revision,
        controlApplyError: this.#desired.lastApplyError?.message,
      },
    };
    const path = this.#core?.modelView().source ?? c.modelPath;
    if (path !== undefined && path !== 'bytes' && path !== 'control-topic') snap.modelPath = path;
    return snap;
  }

  setThresholds(update: ThresholdsUpdate, opts: ChangeOptions = {}): Promise<SetThresholdsResult> {
    return this.#fleetOrFail().setThresholds(update, opts);
  }

  setPolicy(policy: TenantPolicyView, opts: ChangeOptions = {}): Promise<PolicyChangeResult> {
    return this.#fleetOrFail().setPolicy(policy, opts);
  }

  deletePolicy(tenant: string, opts: ChangeOptions = {}): Promise<PolicyChangeResult> {
    return this.#fleetOrFail().deletePolicy(tenant, opts);
  }

  listPolicies(): TenantPolicyView[] {
    return this.#require(this.#fleet, 'the control topic').listPolicies();
  }

  /**
   * Replaces the per-tenant policies (tenant → thresholds) on every worker; requests decided
   * after it resolves use them. The desired-state store calls it with the fleet's table.
   * InvalidInputError for a bad policy (nothing changes).
   */
  async setTenantPolicies(policies: TenantPolicies): Promise<void> {
    if (this.#draining) throw new ControlError('failed_precondition', 'the service is draining; tenant policies are not changed now');
    const table = new PolicyTable(this.settings.tenantKey, policies);
    const pool = this.#pool as (RoutingPool & { setTenantPolicies?: (p: TenantPolicies, key?: string) => Promise<void> }) | undefined;
    if (pool) {
      if (!pool.setTenantPolicies) throw new ControlError('failed_precondition', 'this router pool does not support tenant policies');
      await pool.setTenantPolicies(policies, table.tenantKey);
    }
    this.#policies = table;
    this.logger.info('tenant policies changed', { tenants: table.size });
  }

  /** The per-tenant policies in force. */
  tenantPolicies(): PolicyTable {
    return this.#policies;
  }

  /** Routes one request through the same breaker as the stream (not logged, not published). */
  route(request: RoutingRequest | unknown): Promise<RoutingResponse> {
    return this.#coreOrFail().route(request);
  }

  // ---- the fleet's desired state: hooks for the fleet view and the per-tenant decision path ----

  /** Offset of the last control record this replica processed (its "policy revision"). */
  get controlRevision(): number {
    return this.#desired.revision;
  }

  /** The last control record this replica refused or could not apply. */
  get lastApplyError(): ApplyErrorView | undefined {
    return this.#desired.lastApplyError;
  }

  /** Tenant policies in force; `listener` is called at once with them and on every change. */
  onPoliciesChanged(listener: PoliciesListener): () => void {
    listener(this.#desired.policies);
    return this.#desired.onPoliciesChanged(listener);
  }

  /** How state-changing calls learn how many live replicas have applied a revision. */
  setConvergenceProbe(probe: ConvergenceProbe | undefined): void {
    this.#require(this.#fleet, 'the control topic').setConvergenceProbe(probe);
  }

  /** Decisions by route, from the stream and from Route calls. */
  #routeCounts(): { lightweight: number; heavyweight: number } {
    const k = this.#processor?.counters;
    const r = this.#core?.routeTotals();
    const lightweight = (k?.lightweight ?? 0) + (r?.lightweight ?? 0);
    return { lightweight, heavyweight: (k?.decisions ?? 0) + (r?.decisions ?? 0) - lightweight };
  }

  stats(): ControlStats {
    const core = this.#require(this.#core, 'the engine');
    const k = this.#processor?.counters;
    const r = core.routeTotals();
    const reasons: Record<string, number> = { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 };
    for (const src of [k?.reasons ?? {}, r.reasons]) for (const [key, v] of Object.entries(src)) reasons[key] = (reasons[key] ?? 0) + v;
    const routes = this.#routeCounts();
    const lightweight = routes.lightweight;
    const decisions = routes.lightweight + routes.heavyweight;
    const st = this.#processor?.status();
    const stats: ControlStats = {
      startedAt: this.#startedAt,
      model: core.modelView(),
      thresholds: core.thresholds(),
      totals: {
        requests: (k?.decided ?? 0) + r.requests,
        decisions,
        lightweight,
        heavyweight: decisions - lightweight,
        failed: r.failed,
        rejected: (k?.rejected ?? 0) + r.rejected,
        reasons,
      },
      engineLatency: core.engineLatency.summary(),
      endToEndLatency: core.endToEndLatency.summary(),
      breaker: core.breakerView(),
    };
    if (this.#pool) stats.pool = { ...this.#pool.stats() };
    if (k && st) {
      stats.stream = {
        connected: st.joined,
        assignedPartitions: Object.values(st.assignment).reduce((n, ps) => n + ps.length, 0),
        consumed: k.consumed,
        produced: k.produced,
        dlq: k.dlq,
        inFlight: st.inFlight,
        pausedPartitions: st.paused ? Object.values(st.assignment).reduce((n, ps) => n + ps.length, 0) : 0,
        ...(this.#lag ? { consumerLag: this.#lag.total, lagSampledAt: this.#lag.at } : {}),
      };
    }
    if (this.#log) {
      const m = this.#log.metrics();
      stats.decisionLog = { backlog: m.backlog, written: m.inserted + m.duplicates, failedBatches: this.#logFailedBatches, healthy: m.breaker === 'closed' };
    }
    this.#refreshStoreStats();
    if (this.#store) stats.store = { ...this.#store };
    if (this.#feedback) stats.feedback = this.#feedback.snapshot(); // FEEDBACK (issue 8)
    if (this.settings.cost) stats.cost = costFigures(this.settings.cost, routes);
    if (this.#fleetView) stats.fleet = this.#fleetView.totals();
    return stats;
  }

  /** Postgres aggregates, refreshed in the background at most every few seconds. */
  #refreshStoreStats(): void {
    const pgPool = this.#pg;
    if (!pgPool || this.#storeRefreshing || this.#draining) return;
    if (this.#store && Date.now() - this.#store.computedAt < STORE_STATS_TTL_MS) return;
    this.#storeRefreshing = true;
    const computedAt = Date.now();
    decisionStats(pgPool, { schema: this.settings.dbSchema })
      .then((s) => {
        const windowSeconds = s.window.from ? (s.window.to.getTime() - s.window.from.getTime()) / 1000 : 0;
        this.#store = {
          available: true,
          windowSeconds,
          decisions: s.decisions,
          requests: s.requests,
          lightweightShare: s.lightweightShare,
          reasons: { ...s.byReason },
          modelVersions: Object.fromEntries(s.byModelVersion.map((v) => [v.modelVersion, v.decisions])),
          meanConfidence: s.meanConfidence,
          meanUncertainty: s.meanUncertainty,
          p50InferenceUs: s.latencyUs?.p50 ?? 0,
          p95InferenceUs: s.latencyUs?.p95 ?? 0,
          p99InferenceUs: s.latencyUs?.p99 ?? 0,
          ...(s.lastDecidedAt ? { lastDecidedAt: s.lastDecidedAt.getTime() } : {}),
          computedAt,
        };
      })
      .catch((err: unknown) => {
        this.#store = {
          available: false,
          error: oneLine(redactUrl(errorMessage(err)), 300),
          windowSeconds: 0,
          decisions: 0,
          requests: 0,
          lightweightShare: 0,
          reasons: {},
          modelVersions: {},
          meanConfidence: 0,
          meanUncertainty: 0,
          p50InferenceUs: 0,
          p95InferenceUs: 0,
          p99InferenceUs: 0,
          computedAt,
        };
      })
      .finally(() => {
        this.#storeRefreshing = false;
      });
  }

  /** Every replica of the fleet (GetFleet): any replica answers for all. */
  fleet(opts: { includeStale: boolean }): FleetViewSnapshot {
    return this.#require(this.#fleetView, 'the fleet view').snapshot(opts.includeStale);
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
