// The service, wired: config → decision log (Postgres, migrated) → router pool → circuit
// breaker → Kafka processor → metrics/health HTTP. `App` is also the control plane's target
// (src/control/target.ts): stats, hot reload, breaker, config view, thresholds, unary Route and
// health all go through it, so the gRPC server knows nothing about Kafka or Postgres.
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
import type { LoadedModel } from './engine/model.js';
import { RouterPool } from './engine/pool/pool.js';
import { PolicyTable, type TenantPolicies } from './engine/policy.js';
import type { RoutingRequest, RoutingResponse } from './engine/types.js';
import { validateRequest } from './engine/validate.js';
import { ModelError, errorMessage, oneLine } from './errors.js';
import { LatencyWindow } from './control/latency.js';
import { modelNotes, modelView, prepareModel, type PreparedModel } from './control/reload.js';
import { ModelRegistry } from './feedback/registry.js';
import type { RoutingPool } from './control/standalone.js';
import {
  ControlError,
  type BreakerView,
  type ConfigSnapshot,
  type ControlStats,
  type ControlTarget,
  type HealthStatus,
  type ModelSource,
  type ModelView,
  type ReloadResult,
  type StoreAggregatesView,
  type ThresholdsUpdate,
  type ThresholdsView,
} from './control/target.js';
import { startHttpServer, type HttpServer, type ReadinessReport } from './observe/http.js';
import { FleetView } from './control/fleet-view.js';
import type { FleetViewSnapshot } from './control/fleet-table.js';
import type { ReplicaSample } from './observe/heartbeat.js';
import { VERSION } from './version.js';
import { createLogger, type Logger } from './observe/logger.js';
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
import { ScoringBreaker, type Scorer } from './stream/breaker.js';
import { createKafka, ensureTopics } from './stream/kafka.js';
import { decisionLogPort } from './stream/log-port.js';
import { isRetriableKafkaError } from './stream/kafka-errors.js';
import { StartupPatience } from './startup.js';
import { classifyPgError } from './store/errors.js';
import { Processor, type DecisionLogPort, type ProcessorEvent, type ProcessorOptions } from './stream/processor.js';
// FEEDBACK (issue 8): outcomes consumer, calibration monitor, model registry.
import { FeedbackService, type FeedbackSettings } from './feedback/service.js';

export type { Scorer } from './stream/breaker.js';

/**
 * What the fleet's desired-state store tells the heartbeat (each getter optional): the model
 * version the replica decides with, the revision of the desired state it applied, and the last
 * record it could not apply.
 */
export interface DesiredStateGetters {
  modelVersion?: () => string;
  policyRevision?: () => number;
  lastApplyError?: () => string | undefined;
}

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
  #breaker: ScoringBreaker | undefined;
  #kafka: Kafka | undefined;
  #admin: Admin | undefined;
  #processor: Processor | undefined;
  /** FEEDBACK (issue 8). */
  #feedback: FeedbackService | undefined;
  #lagTimer: NodeJS.Timeout | undefined;
  /** The fleet view: this replica's heartbeats, and every replica's from the status topic. */
  #fleet: FleetView | undefined;
  #fleetStarting: Promise<void> | undefined;
  #desired: DesiredStateGetters = {};
  /** Lag per partition of the requests topic, as last sampled. */
  #lagByPartition = new Map<number, number>();
  #healthTimer: NodeJS.Timeout | undefined;
  /** Waits for Postgres and the broker at start; aborted by a stop during start-up. */
  readonly #startupAbort = new AbortController();
  #patience: StartupPatience | undefined;
  /** Why the service cannot go on, once it cannot (start-up stops at the next step). */
  #fatal: string | undefined;

  #model: LoadedModel | undefined;
  #modelView: ModelView | undefined;
  #overrides: ThresholdsUpdate;
  /** Per-tenant thresholds (the workers hold the same table; this one labels breaker fallbacks). */
  #policies: PolicyTable;
  #startedAt = Date.now();
  #started = false;
  #draining = false;
  #stopping: Promise<{ clean: boolean }> | undefined;
  #health: HealthStatus = 'NOT_SERVING';
  readonly #healthListeners = new Set<(s: HealthStatus) => void>();
  readonly #engineLatency = new LatencyWindow();
  readonly #e2eLatency = new LatencyWindow();
  #route = { requests: 0, decisions: 0, lightweight: 0, rejected: 0, reasons: {} as Record<string, number> };
  #lag: { total: number; at: number } | undefined;
  #store: StoreAggregatesView | undefined;
  #storeRefreshing = false;
  #logFailedBatches = 0;

  constructor(opts: AppOptions) {
    super();
    this.#opts = opts;
    this.settings = opts.config;
    this.logger = opts.logger ?? createLogger({ level: opts.config.logLevel, secrets: [opts.config.adminToken] });
    this.metrics = createMetrics();
    this.#overrides = { ...opts.config.thresholds };
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
    this.logger.info('tiny-dancer serving', {
      ms: Date.now() - t0,
      brokers: this.settings.brokers,
      requests: this.settings.topics.requests,
      group: this.settings.groupId,
      exactlyOnce: this.settings.exactlyOnce,
      model: this.#model?.version,
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
    this.#pg = createPool({ url: this.#db.url, max: c.logConcurrency + 2, log, applicationName: 'tiny-dancer serve' });
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
    // Engine: validate the model here first, so a bad file fails start-up with a precise message.
    const prepared = await this.#startupModel(log);
    this.#model = prepared.model;
    this.#modelView = modelView(prepared.model, Date.now(), prepared.source);
    if (this.#opts.pool) this.#pool = this.#opts.pool;
    else {
      this.#pool = await RouterPool.create({
        model: { bytes: prepared.bytes, source: prepared.source },
        ...(c.workers === undefined ? {} : { workers: c.workers }),
        ...(c.thresholds.confidence === undefined ? {} : { confidenceThreshold: c.thresholds.confidence }),
        ...(c.thresholds.maxUncertainty === undefined ? {} : { maxUncertainty: c.thresholds.maxUncertainty }),
        // The processor never has more than maxInFlight requests out, plus Route calls.
        maxQueue: c.maxInFlight + 1024,
        // The decision log stores each decision's features (retraining); the workers have them.
        returnFeatures: true,
        tenantKey: c.tenantKey,
        tenantPolicies: this.#policies.size > 0 ? new Map(this.#policies.entries()) : undefined,
      });
    }
    setModelVersion(this.metrics, this.#pool.modelVersion);
    const pool = this.#pool as RoutingPool & { routeEncoded?: (bytes: Uint8Array, contentType: 'json' | 'protobuf') => Promise<RoutingResponse> };
    const routeEncoded = pool.routeEncoded?.bind(pool);
    const scorer: Scorer = (task) =>
      task.kind === 'validated' ? pool.route(task.request) : routeEncoded ? routeEncoded(task.bytes, task.encoding) : Promise.reject(new Error('the pool cannot decode records'));
    this.#breaker = new ScoringBreaker(this.#opts.wrapScorer ? this.#opts.wrapScorer(scorer) : scorer, {
      ...c.breaker,
      logger: log,
      metrics: this.metrics,
      modelVersion: () => pool.modelVersion,
      onStateChange: (state) => this.#emitEvent({ type: 'breaker', state }),
      policyOf: (req) => this.#policies.choose(req.metadata, DEFAULT_THRESHOLDS).policy,
    });

    this.#checkNotStopped();
    // Kafka last: nothing is consumed before the parts that decide and log are up.
    this.#kafka = createKafka(c, log);
    await this.#waitForBroker();
    this.#admin = this.#kafka.admin();
    await this.#admin.connect();
    await ensureTopics(this.#admin, c, log);
    const port = (this.#logPort = decisionLogPort(this.#log, () => !this.#draining));
    this.#processor = new Processor({
      kafka: this.#kafka,
      config: c,
      breaker: this.#breaker,
      log: port,
      logger: log,
      metrics: this.metrics,
      onEngineLatency: (us) => this.#engineLatency.record(us),
      onEndToEnd: (us) => this.#e2eLatency.record(us),
      encodedScoring: routeEncoded === undefined ? undefined : (encoding) => decodesInWorkers(c.decodeInWorkers, encoding),
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
    await this.#feedback.modelLoaded(prepared.model, prepared.bytes, prepared.source, { activate: true, by: 'serve' });
    await this.#feedback.start();
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
    const fleet = (this.#fleet = new FleetView({
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
    this.#fleetStarting = fleet.start().catch((err: unknown) => {
      this.logger.warn('the fleet view could not start; GetFleet will not list the fleet', { err: errorMessage(err), topic: c.topics.status });
    });
  }

  /** The heartbeat's sample of this replica. */
  #replicaSample(): ReplicaSample {
    const st = this.#processor?.status();
    const k = this.#processor?.counters;
    const r = this.#route;
    const partitions = st?.assignment[this.settings.topics.requests] ?? [];
    let lag: number | undefined;
    if (this.#lag) {
      lag = 0;
      for (const p of partitions) lag += this.#lagByPartition.get(p) ?? 0;
    }
    const d = this.#desired;
    return {
      modelVersion: d.modelVersion?.() ?? this.#pool?.modelVersion ?? '',
      policyRevision: d.policyRevision?.() ?? 0,
      lastApplyError: d.lastApplyError?.(),
      partitions: [...partitions],
      requests: (k?.decided ?? 0) + r.requests,
      decisions: (k?.decisions ?? 0) + r.decisions,
      lightweight: (k?.lightweight ?? 0) + r.lightweight,
      consumerLag: lag,
      logBacklog: this.#log?.backlog() ?? 0,
      breaker: this.#breaker?.state ?? 'closed',
      ready: this.readiness().ready,
    };
  }

  /**
   * Where the heartbeat reads the model version, the desired-state revision and the last apply
   * error from (the fleet's desired-state store); unset getters keep their defaults (the pool's
   * model version, revision 0, no error).
   */
  useDesiredState(getters: DesiredStateGetters): void {
    this.#desired = { ...getters };
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
        const probe = createKafka(c, this.logger, { logLevel: 0 /* NOTHING */, retry: { retries: 0 } }).admin();
        try {
          await probe.connect();
          await probe.listTopics();
        } finally {
          await probe.disconnect().catch(() => {});
        }
      },
      isRetriableKafkaError,
    );
  }

  /**
   * The model `serve` starts with: TD_MODEL_PATH when it is set (explicit configuration wins);
   * otherwise the registry's active version — what `retrain --promote` or `admin rollback` last
   * made current, so a restart does not silently go back to the packaged model — read from its
   * stored file and checked against its recorded SHA-256; otherwise (no registry entry, or its
   * file missing or changed: said in a warning) models/default.safetensors.
   */
  async #startupModel(log: Logger): Promise<PreparedModel> {
    const c = this.settings;
    const { defaultModelPath } = await import('./engine/model.js');
    if (c.modelPath === undefined && this.#pg) {
      let version: string | undefined;
      try {
        const registry = new ModelRegistry(this.#pg, c.dbSchema);
        const active = await registry.active();
        version = active?.version;
        if (active?.path) {
          const { entry, bytes } = await registry.readVerifiedFile(active.version);
          const prepared = await prepareModel({ bytes });
          if (prepared.model.version !== entry.version) {
            throw new ModelError(`${entry.path} holds model ${prepared.model.version}, the registry says ${entry.version}`);
          }
          log.info('serving the model registry\'s active version (TD_MODEL_PATH not set)', { version: entry.version, path: entry.path, promotedBy: entry.promoted_by });
          return { ...prepared, source: entry.path! };
        }
      } catch (err) {
        log.warn('the model registry\'s active version cannot be served; starting with the default model', { version, err });
      }
    }
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
    await this.#fleet?.stop({ tombstone: true });
    let clean = true;
    // A consumer kafkajs gave up on cannot be stopped cleanly; the rest must still close.
    if (this.#processor) {
      clean = await this.#processor.stop(timeoutMs).catch((err: unknown) => {
        this.logger.warn('stream processor stop failed', { err });
        return false;
      });
    }
    await this.#feedback?.stop().catch((err: unknown) => this.logger.warn('outcome consumer stop failed', { err })); // FEEDBACK (issue 8)
    if (this.#log) {
      const r = await this.#log.close({ timeout: left() }).catch((err: unknown) => {
        this.logger.warn('decision log close failed', { err });
        return { unwritten: -1, settled: 0 };
      });
      if (r.unwritten !== 0) clean = false;
    }
    await this.#pool?.close({ timeout: Math.min(5000, left()) }).catch((err: unknown) => this.logger.warn('router pool close failed', { err }));
    this.#breaker?.shutdown();
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
    checks.engine = this.#pool && this.#model ? true : 'model not loaded';
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

  #thresholds(): ThresholdsView {
    const m = this.#model?.thresholds ?? {};
    return {
      confidence: this.#overrides.confidence ?? m.confidence ?? DEFAULT_THRESHOLDS.confidence,
      maxUncertainty: this.#overrides.maxUncertainty ?? m.maxUncertainty ?? DEFAULT_THRESHOLDS.maxUncertainty,
    };
  }

  async reload(source: ModelSource): Promise<ReloadResult> {
    if (this.#draining) throw new ControlError('failed_precondition', 'the service is draining; no model reload now');
    const pool = this.#require(this.#pool, 'the router pool');
    const prepared = await prepareModel(source);
    const previousVersion = pool.modelVersion;
    try {
      await pool.reload({ bytes: prepared.bytes });
    } catch (err) {
      throw err instanceof ControlError
        ? err
        : new ControlError('unavailable', `the worker pool could not swap the model: ${errorMessage(err)}`, { cause: err });
    }
    this.#model = prepared.model;
    this.#modelView = modelView(prepared.model, Date.now(), prepared.source);
    setModelVersion(this.metrics, pool.modelVersion);
    this.logger.info('model reloaded', { version: pool.modelVersion, previousVersion, source: prepared.source });
    // FEEDBACK (issue 8): the monitor learns the new calibration, the registry the new version.
    await this.#feedback?.modelLoaded(prepared.model, prepared.bytes, prepared.source, { activate: true, by: 'control-plane reload' });
    this.#emitEvent({ type: 'model', version: pool.modelVersion, previousVersion });
    return { model: { ...this.#modelView }, previousVersion, notes: modelNotes(prepared.model) };
  }

  breaker(): BreakerView {
    const s = this.#require(this.#breaker, 'the circuit breaker').snapshot();
    const view: BreakerView = {
      state: s.state,
      trips: s.trips,
      fallbacks: s.fallbacks,
      window: { successes: s.window.successes, failures: s.window.failures, timeouts: s.window.timeouts, rejects: s.window.rejects, fallbacks: s.window.fallbacks },
      settings: {
        timeoutMs: s.options.timeoutMs,
        errorThresholdPercentage: s.options.errorThresholdPercentage,
        volumeThreshold: s.options.volumeThreshold,
        resetTimeoutMs: s.options.resetTimeoutMs,
        rollingWindowMs: s.options.rollingCountTimeoutMs,
      },
    };
    if (s.openedAt !== undefined) view.openedAt = s.openedAt;
    return view;
  }

  resetBreaker(): BreakerView {
    this.#require(this.#breaker, 'the circuit breaker').reset();
    this.logger.info('circuit breaker reset by an operator');
    return this.breaker();
  }

  /** Opens the breaker by hand (every candidate heavyweight until reset or the reset timeout). */
  tripBreaker(): BreakerView {
    this.#require(this.#breaker, 'the circuit breaker').trip();
    return this.breaker();
  }

  config(): ConfigSnapshot {
    const c = this.settings;
    const snap: ConfigSnapshot = {
      thresholds: this.#thresholds(),
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
      },
    };
    const path = this.#modelView?.source ?? c.modelPath;
    if (path !== undefined && path !== 'bytes') snap.modelPath = path;
    return snap;
  }

  async setThresholds(update: ThresholdsUpdate): Promise<ThresholdsView> {
    if (this.#draining) throw new ControlError('failed_precondition', 'the service is draining; thresholds are not changed now');
    await this.#require(this.#pool, 'the router pool').setThresholds(update);
    if (update.confidence !== undefined) this.#overrides.confidence = update.confidence;
    if (update.maxUncertainty !== undefined) this.#overrides.maxUncertainty = update.maxUncertainty;
    const t = this.#thresholds();
    this.logger.info('thresholds changed', { ...t });
    return t;
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
  async route(request: RoutingRequest | unknown): Promise<RoutingResponse> {
    const breaker = this.#require(this.#breaker, 'the router');
    let req;
    try {
      req = validateRequest(request);
    } catch (err) {
      this.#route.rejected++;
      throw err;
    }
    let scored;
    try {
      scored = await breaker.score({ kind: 'validated', request: req });
    } catch (err) {
      this.#route.rejected++;
      throw err;
    }
    const r = this.#route;
    r.requests++;
    for (const d of scored.response.decisions) {
      r.decisions++;
      if (d.use_lightweight) r.lightweight++;
      r.reasons[d.reason] = (r.reasons[d.reason] ?? 0) + 1;
    }
    if (!scored.fallback) this.#engineLatency.record(scored.response.inference_time_us);
    return scored.response;
  }

  stats(): ControlStats {
    const model = this.#require(this.#modelView, 'the engine');
    const k = this.#processor?.counters;
    const r = this.#route;
    const reasons: Record<string, number> = { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 };
    for (const src of [k?.reasons ?? {}, r.reasons]) for (const [key, v] of Object.entries(src)) reasons[key] = (reasons[key] ?? 0) + v;
    const decisions = (k?.decisions ?? 0) + r.decisions;
    const lightweight = (k?.lightweight ?? 0) + r.lightweight;
    const st = this.#processor?.status();
    const stats: ControlStats = {
      startedAt: this.#startedAt,
      model: { ...model },
      thresholds: this.#thresholds(),
      totals: {
        requests: (k?.decided ?? 0) + r.requests,
        decisions,
        lightweight,
        heavyweight: decisions - lightweight,
        failed: 0,
        rejected: (k?.rejected ?? 0) + r.rejected,
        reasons,
      },
      engineLatency: this.#engineLatency.summary(),
      endToEndLatency: this.#e2eLatency.summary(),
      breaker: this.breaker(),
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
    if (this.#fleet) stats.fleet = this.#fleet.totals();
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
    return this.#require(this.#fleet, 'the fleet view').snapshot(opts.includeStale);
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
