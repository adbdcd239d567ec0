// The service configuration: read from the environment ONCE, at the edge (the `serve`/`demo`
// commands), validated with messages that name the variable and the bad value, then frozen and
// handed down. Nothing below src/cli reads process.env.
//
// Secrets: TD_ADMIN_TOKEN is wrapped in a Secret whose JSON/inspect/string forms are
// "[redacted]", and the password of DATABASE_URL is masked whenever the config is printed, so a
// config dump in a log line or a gRPC GetConfig cannot leak them.
import { availableParallelism, hostname } from 'node:os';
import { inspect } from 'node:util';
import { ConfigError } from './errors.js';
import { LIMITS } from './wire/types.js';
import { loadKafkaSecurity, loadPgTls, type KafkaSecurity, type PgTlsSettings } from './config-security.js';

const REDACTED = '[redacted]';

/** A value that never prints itself. `reveal()` is the only way to read it. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
    Object.freeze(this);
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}

export interface HostPort {
  host: string;
  port: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface BreakerConfig {
  /** A scoring call slower than this counts as a failure. */
  timeoutMs: number;
  /** Open when this share (%) of calls in the rolling window failed... */
  errorThresholdPercentage: number;
  /** ...and at least this many calls were made in the window. */
  volumeThreshold: number;
  /** Stay open this long, then let one trial call through (half-open). */
  resetTimeoutMs: number;
  /** Length of the rolling statistics window. */
  rollingCountTimeoutMs: number;
}

export interface TopicsConfig {
  requests: string;
  lightweight: string;
  heavyweight: string;
  dlq: string;
  outcomes: string;
  /** The fleet's desired state (compacted, one partition). */
  control: string;
  /** Replica heartbeats (compacted, keyed by instance id): the fleet view. */
  status: string;
  /**
   * One RoutingResponse per decided request (docs/contracts.md §12), when set
   * (TD_TOPIC_RESPONSES); absent: no responses are written.
   */
  responses?: string;
}

export interface Config {
  brokers: string[];
  /** False when KAFKA_BROKERS was not set: `serve` may then start the local development broker. */
  brokersFromEnv: boolean;
  /** TLS and SASL for every Kafka client (KAFKA_SSL_*, KAFKA_SASL_*); prints without secrets. */
  kafkaSecurity: KafkaSecurity;
  clientId: string;
  topics: TopicsConfig;
  exactlyOnce: boolean;
  /**
   * Prefix of the exactly-once producers' transactional ids (one per owned request partition,
   * `<prefix>-<topic>-<partition>`); the same on every instance of the group.
   */
  transactionalId: string;
  /** Exactly-once: how long a partition's transaction gathers decisions before it commits. */
  eosCommitIntervalMs: number;
  /**
   * TD_RESPONSE_TOP_K: decisions kept in a response on the responses topic (a request's own
   * td-top-k wins); undefined keeps all.
   */
  responseTopK: number | undefined;
  groupId: string;
  databaseUrl: string;
  /** False when DATABASE_URL was not set: the embedded Postgres may stand in if nothing answers. */
  databaseUrlFromEnv: boolean;
  /** TD_PG_SSL_CA_FILE: the CA for Postgres TLS (sslmode in DATABASE_URL). */
  pgTls: PgTlsSettings;
  /** Where the embedded Postgres keeps its data when it is used. */
  pgliteDir: string;
  grpcAddr: HostPort;
  adminToken: Secret | undefined;
  httpAddr: HostPort;
  modelPath: string | undefined;
  /** Worker threads of the RouterPool; undefined lets the pool choose. */
  workers: number | undefined;
  /**
   * Decode and validate request records on the pool's worker threads (pool.routeEncoded)
   * instead of the consuming thread: true, false, or 'auto' (the default) — on the workers for
   * both encodings whenever the engine runs on worker threads. The consuming thread is serve's
   * bottleneck, so whatever moves off it raises throughput (README, benchmarks).
   */
  decodeInWorkers: boolean | 'auto';
  /**
   * At-least-once mode: produce decisions from a thread of its own (TD_PRODUCER_THREAD, default
   * true), which takes kafkajs's request building off the consuming thread. Exactly-once mode
   * always produces on the consuming thread (its transactions carry the consumed offsets).
   */
  producerThread: boolean;
  /** Bound on requests being decoded/scored/published at once (whole process). */
  maxInFlight: number;
  /** Partitions fetched and processed concurrently by one consumer. */
  partitionsConcurrency: number;
  /** Partitions given to topics `serve` creates. */
  requestPartitions: number;
  decisionPartitions: number;
  replicationFactor: number;
  /** Upper bound on fetched bytes held per partition and per fetch (memory bound). */
  fetchMaxBytesPerPartition: number;
  fetchMaxBytes: number;
  /** Messages larger than this go to the DLQ without being parsed. */
  maxMessageBytes: number;
  breaker: BreakerConfig;
  thresholds: { confidence?: number; maxUncertainty?: number };
  /** Price per decision on each route (any unit); undefined: no cost is reported. */
  cost: { lightweight: number; heavyweight: number } | undefined;
  /** Postgres schema of the decision log (migrated at start). */
  dbSchema: string;
  /** Decision log: rows per insert, rows buffered at most (consumption pauses before that), */
  logBatchSize: number;
  logMaxBuffered: number;
  /** ...how long a partial batch may wait, and inserts running at once. */
  logFlushIntervalMs: number;
  logConcurrency: number;
  /** Consumer group session timeout: how long a dead member holds its partitions. */
  sessionTimeoutMs: number;
  /** SIGTERM: stop fetching, finish in-flight work and commit within this time, then exit. */
  drainTimeoutMs: number;
  /** How long start-up waits for Postgres and the broker to answer; 0 waits forever. */
  startupTimeoutMs: number;
  /** Consumer lag is sampled this often. */
  lagIntervalMs: number;
  /** TD_TRACING: one OpenTelemetry span per request (on, the default) or none (off). */
  tracing: boolean;
  /** /healthz fails when the event loop was blocked longer than this. */
  maxEventLoopDelayMs: number;
  logLevel: LogLevel;
  /** The request metadata key naming the tenant whose policy decides it (TD_TENANT_KEY). */
  tenantKey: string;
  /** This replica's name in the fleet view (TD_INSTANCE_ID; default host-pid). */
  instanceId: string;
  /** A heartbeat on the status topic this often (TD_HEARTBEAT_MS); stale after 3 missed. */
  heartbeatMs: number;
}

export const CONFIG_DEFAULTS = Object.freeze({
  brokers: 'localhost:9092',
  topics: Object.freeze({
    requests: 'routing.requests',
    lightweight: 'routing.lightweight',
    heavyweight: 'routing.heavyweight',
    dlq: 'routing.dlq',
    outcomes: 'routing.outcomes',
    control: 'routing.control',
    status: 'routing.status',
  }),
  groupId: 'tiny-dancer',
  databaseUrl: 'postgres://postgres@127.0.0.1:5432/postgres',
  grpcAddr: '127.0.0.1:50051',
  httpAddr: '127.0.0.1:9464',
});

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  if (v === undefined) return undefined;
  const t = v.trim();
  return t === '' ? undefined : t;
}

function show(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 79)}…` : value);
}

function bad(name: string, value: string, expected: string): never {
  throw new ConfigError(`${name}=${show(value)} is invalid: ${expected}`);
}

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!/^[+-]?\d+$/.test(v)) bad(name, v, `expected a whole number in [${min}, ${max}]`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) bad(name, v, `expected a whole number in [${min}, ${max}]`);
  return n;
}

function optionalIntVar(env: Env, name: string, min: number, max: number): number | undefined {
  return raw(env, name) === undefined ? undefined : intVar(env, name, 0, min, max);
}

function numberVar(env: Env, name: string, min: number, max: number): number | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) bad(name, v, `expected a number in [${min}, ${max}]`);
  return n;
}

/**
 * TD_COST_LIGHTWEIGHT and TD_COST_HEAVYWEIGHT: both or neither (then undefined). The heavyweight
 * price may not be below the lightweight one: savings against all-heavyweight are a counter.
 */
export function costPrices(env: Env): { lightweight: number; heavyweight: number } | undefined {
  const price = (name: string): number | undefined => {
    const v = raw(env, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) bad(name, v, 'expected a cost per decision: a number, 0 or more');
    return n;
  };
  const light = price('TD_COST_LIGHTWEIGHT');
  const heavy = price('TD_COST_HEAVYWEIGHT');
  if (light === undefined && heavy === undefined) return undefined;
  if (heavy === undefined) throw new ConfigError('TD_COST_HEAVYWEIGHT is required when TD_COST_LIGHTWEIGHT is set: give the price of both routes');
  if (light === undefined) throw new ConfigError('TD_COST_LIGHTWEIGHT is required when TD_COST_HEAVYWEIGHT is set: give the price of both routes');
  if (light > heavy) bad('TD_COST_LIGHTWEIGHT', raw(env, 'TD_COST_LIGHTWEIGHT')!, `must not exceed TD_COST_HEAVYWEIGHT (${heavy})`);
  return { lightweight: light, heavyweight: heavy };
}

/** A boolean; with fallback 'auto' the variable may also say `auto`. */
function boolVar<F extends boolean | 'auto' = boolean>(env: Env, name: string, fallback: F): boolean | F {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  const l = v.toLowerCase();
  if (fallback === 'auto' && l === 'auto') return fallback;
  if (['true', '1', 'yes', 'on'].includes(l)) return true;
  if (['false', '0', 'no', 'off'].includes(l)) return false;
  return bad(name, v, fallback === 'auto' ? 'expected true, false or auto' : 'expected true or false');
}

/** A switch spelled `on` or `off`. */
function onOffVar(env: Env, name: string, fallback: boolean): boolean {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  const l = v.toLowerCase();
  if (l === 'on') return true;
  if (l === 'off') return false;
  return bad(name, v, 'expected on or off');
}

function hostPort(name: string, value: string): HostPort {
  // host:port, [v6]:port; the host may be a name or an address.
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(value);
  if (!m) bad(name, value, 'expected host:port');
  const port = Number(m[3]);
  if (port < 1 || port > 65535) bad(name, value, 'the port must be in 1..65535');
  return { host: (m[1] ?? m[2])!, port };
}

// Kafka's legal topic name: 1..249 of [a-zA-Z0-9._-], not "." or "..".
function topicVar(env: Env, name: string, fallback: string): string {
  const v = raw(env, name) ?? fallback;
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(v) || v === '.' || v === '..') {
    bad(name, v, 'a Kafka topic name is 1..249 characters of letters, digits, ".", "_" and "-"');
  }
  return v;
}

/**
 * TD_TOPIC_RESPONSES: unset is off. It must not name another of the service's topics: responses
 * on the request topic would come back as requests, and mixed into a decision topic they would
 * break its readers.
 */
function responsesTopicVar(env: Env, topics: TopicsConfig): string | undefined {
  if (raw(env, 'TD_TOPIC_RESPONSES') === undefined) return undefined;
  const v = topicVar(env, 'TD_TOPIC_RESPONSES', '');
  const names: [keyof TopicsConfig, string][] = [
    ['requests', 'TD_TOPIC_REQUESTS'],
    ['lightweight', 'TD_TOPIC_LIGHTWEIGHT'],
    ['heavyweight', 'TD_TOPIC_HEAVYWEIGHT'],
    ['dlq', 'TD_TOPIC_DLQ'],
    ['outcomes', 'TD_TOPIC_OUTCOMES'],
    ['control', 'TD_TOPIC_CONTROL'],
    ['status', 'TD_TOPIC_STATUS'],
  ];
  for (const [key, name] of names) if (topics[key] === v) bad('TD_TOPIC_RESPONSES', v, `it is already ${name}; give the responses a topic of their own`);
  return v;
}

function topicsVar(env: Env): TopicsConfig {
  const topics: TopicsConfig = {
    requests: topicVar(env, 'TD_TOPIC_REQUESTS', CONFIG_DEFAULTS.topics.requests),
    lightweight: topicVar(env, 'TD_TOPIC_LIGHTWEIGHT', CONFIG_DEFAULTS.topics.lightweight),
    heavyweight: topicVar(env, 'TD_TOPIC_HEAVYWEIGHT', CONFIG_DEFAULTS.topics.heavyweight),
    dlq: topicVar(env, 'TD_TOPIC_DLQ', CONFIG_DEFAULTS.topics.dlq),
    outcomes: topicVar(env, 'TD_TOPIC_OUTCOMES', CONFIG_DEFAULTS.topics.outcomes),
    control: topicVar(env, 'TD_TOPIC_CONTROL', CONFIG_DEFAULTS.topics.control),
    status: topicVar(env, 'TD_TOPIC_STATUS', CONFIG_DEFAULTS.topics.status),
  };
  const responses = responsesTopicVar(env, topics);
  if (responses !== undefined) topics.responses = responses;
  return topics;
}

/** Masks the password in a URL-shaped connection string ("postgres://u:pw@h" -> "postgres://u:***@h"). */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@');
}

function databaseUrlVar(env: Env): string {
  const v = raw(env, 'DATABASE_URL') ?? CONFIG_DEFAULTS.databaseUrl;
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    // Never echo the value: it may hold a password.
    throw new ConfigError(`DATABASE_URL=${show(redactUrl(v))} is invalid: expected postgres://user[:password]@host[:port]/database`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConfigError(`DATABASE_URL=${show(redactUrl(v))} is invalid: the scheme must be postgres:// or postgresql://`);
  }
  return v;
}

function schemaVar(env: Env): string {
  const v = raw(env, 'TD_DB_SCHEMA') ?? 'public';
  // Spliced into DDL by the store, so only plain identifiers.
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(v)) bad('TD_DB_SCHEMA', v, 'use 1-63 characters a-z, 0-9, _ (not starting with a digit)');
  return v;
}

function tenantKeyVar(env: Env): string {
  const v = raw(env, 'TD_TENANT_KEY') ?? 'tenant';
  if (v.length > 256) bad('TD_TENANT_KEY', v, 'at most 256 characters');
  return v;
}

function instanceIdVar(env: Env): string {
  const v = raw(env, 'TD_INSTANCE_ID') ?? `${hostname()}-${process.pid}`;
  // The Kafka key of this replica's heartbeats and its name in `admin fleet`.
  if (!/^[A-Za-z0-9._:@-]{1,200}$/.test(v)) bad('TD_INSTANCE_ID', v, 'use 1-200 characters of letters, digits and . _ : @ -');
  return v;
}

/**
 * Reads and validates the configuration. Throws ConfigError naming the variable and the bad
 * value. The result is deeply frozen; print it with `describeConfig` (or JSON.stringify, which
 * is safe too).
 */
export function loadConfig(env: Env = process.env): Config {
  const brokersRaw = raw(env, 'KAFKA_BROKERS');
  const brokers = (brokersRaw ?? CONFIG_DEFAULTS.brokers).split(',').map((b) => b.trim()).filter((b) => b !== '');
  if (brokers.length === 0) bad('KAFKA_BROKERS', brokersRaw ?? '', 'expected a comma-separated list of host:port');
  for (const b of brokers) {
    try {
      hostPort('KAFKA_BROKERS', b);
    } catch {
      bad('KAFKA_BROKERS', brokersRaw ?? '', `expected a comma-separated list of host:port, '${b}' is not one`);
    }
  }

  const groupId = raw(env, 'TD_GROUP_ID') ?? CONFIG_DEFAULTS.groupId;
  if (groupId.length > 255) bad('TD_GROUP_ID', groupId, 'at most 255 characters');

  const tokenRaw = env.TD_ADMIN_TOKEN;
  let adminToken: Secret | undefined;
  if (tokenRaw !== undefined && tokenRaw !== '') {
    // Never echo a token, not even a bad one.
    if (tokenRaw.trim() !== tokenRaw || /[\s]/.test(tokenRaw)) {
      throw new ConfigError('TD_ADMIN_TOKEN is invalid: it must not contain whitespace (value not shown)');
    }
    if (tokenRaw.length < 8) throw new ConfigError('TD_ADMIN_TOKEN is invalid: use at least 8 characters (value not shown)');
    adminToken = new Secret(tokenRaw);
  }

  const level = (raw(env, 'TD_LOG_LEVEL') ?? 'info').toLowerCase();
  if (!['debug', 'info', 'warn', 'error'].includes(level)) bad('TD_LOG_LEVEL', level, 'expected debug, info, warn or error');

  const confidence = numberVar(env, 'TD_CONFIDENCE_THRESHOLD', 0, 1);
  const maxUncertainty = numberVar(env, 'TD_MAX_UNCERTAINTY', 0, 1);

  const maxInFlight = intVar(env, 'TD_MAX_IN_FLIGHT', 256, 1, 100_000);
  const logBatchSize = intVar(env, 'TD_LOG_BATCH_SIZE', 500, 1, 100_000);
  const logMaxBuffered = intVar(env, 'TD_LOG_MAX_BUFFERED', 50_000, 1, 10_000_000);
  if (logMaxBuffered < logBatchSize) {
    bad('TD_LOG_MAX_BUFFERED', String(logMaxBuffered), `must be at least TD_LOG_BATCH_SIZE (${logBatchSize})`);
  }
  // Fetch bounds: a fetched response stays in memory while any of its records is in flight
  // (record values are views of it), so these bound serve's off-heap memory. Measured (npm run
  // bench:pipeline, protobuf): 8 MiB / 1 MiB peaked at 254 MB RSS, near the 256 MB budget;
  // 2 MiB / 512 KiB at ~220 MB, same throughput. A record larger than either still arrives
  // (the broker always returns at least the first batch).
  const fetchMaxBytesPerPartition = intVar(env, 'TD_FETCH_MAX_BYTES_PER_PARTITION', 512 * 1024, 1024, 256 * 1024 * 1024);
  const fetchMaxBytes = intVar(env, 'TD_FETCH_MAX_BYTES', 2 * 1024 * 1024, 1024, 1024 * 1024 * 1024);

  const config: Config = {
    brokers,
    brokersFromEnv: brokersRaw !== undefined,
    kafkaSecurity: loadKafkaSecurity(env),
    clientId: raw(env, 'TD_CLIENT_ID') ?? 'tiny-dancer',
    topics: topicsVar(env),
    exactlyOnce: boolVar(env, 'TD_EXACTLY_ONCE', false),
    // The prefix of the per-partition transactional ids (`<prefix>-<topic>-<partition>`): the
    // same for every instance of a group, so whoever takes a partition fences its previous owner.
    transactionalId: raw(env, 'TD_TRANSACTIONAL_ID') ?? groupId,
    eosCommitIntervalMs: intVar(env, 'TD_EOS_COMMIT_INTERVAL_MS', 100, 1, 60_000),
    responseTopK: optionalIntVar(env, 'TD_RESPONSE_TOP_K', 1, LIMITS.maxCandidates),
    groupId,
    databaseUrl: databaseUrlVar(env),
    databaseUrlFromEnv: raw(env, 'DATABASE_URL') !== undefined,
    pgTls: loadPgTls(env),
    pgliteDir: raw(env, 'TD_PGLITE_DIR') ?? '.tiny-dancer/pgdata',
    grpcAddr: hostPort('TD_GRPC_ADDR', raw(env, 'TD_GRPC_ADDR') ?? CONFIG_DEFAULTS.grpcAddr),
    adminToken,
    httpAddr: hostPort('TD_HTTP_ADDR', raw(env, 'TD_HTTP_ADDR') ?? CONFIG_DEFAULTS.httpAddr),
    modelPath: raw(env, 'TD_MODEL_PATH'),
    workers: optionalIntVar(env, 'TD_WORKERS', 1, Math.max(64, availableParallelism() * 4)),
    decodeInWorkers: boolVar(env, 'TD_DECODE_IN_WORKERS', 'auto'),
    producerThread: boolVar(env, 'TD_PRODUCER_THREAD', true),
    maxInFlight,
    partitionsConcurrency: intVar(env, 'TD_PARTITIONS_CONCURRENCY', 3, 1, 1000),
    requestPartitions: intVar(env, 'TD_REQUEST_PARTITIONS', 6, 1, 10_000),
    decisionPartitions: intVar(env, 'TD_DECISION_PARTITIONS', 6, 1, 10_000),
    replicationFactor: intVar(env, 'TD_REPLICATION_FACTOR', 1, 1, 32),
    fetchMaxBytesPerPartition,
    fetchMaxBytes,
    maxMessageBytes: intVar(env, 'TD_MAX_MESSAGE_BYTES', 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    breaker: {
      timeoutMs: intVar(env, 'TD_BREAKER_TIMEOUT_MS', 2000, 1, 600_000),
      errorThresholdPercentage: intVar(env, 'TD_BREAKER_ERROR_PERCENT', 50, 1, 100),
      volumeThreshold: intVar(env, 'TD_BREAKER_VOLUME_THRESHOLD', 20, 0, 1_000_000),
      resetTimeoutMs: intVar(env, 'TD_BREAKER_RESET_MS', 10_000, 1, 3_600_000),
      rollingCountTimeoutMs: intVar(env, 'TD_BREAKER_WINDOW_MS', 10_000, 100, 3_600_000),
    },
    thresholds: {
      ...(confidence === undefined ? {} : { confidence }),
      ...(maxUncertainty === undefined ? {} : { maxUncertainty }),
    },
    cost: costPrices(env),
    dbSchema: schemaVar(env),
    logBatchSize,
    logMaxBuffered,
    logFlushIntervalMs: intVar(env, 'TD_LOG_FLUSH_MS', 20, 1, 60_000),
    logConcurrency: intVar(env, 'TD_LOG_CONCURRENCY', 2, 1, 64),
    drainTimeoutMs: intVar(env, 'TD_DRAIN_TIMEOUT_MS', 15_000, 100, 600_000),
    startupTimeoutMs: intVar(env, 'TD_STARTUP_TIMEOUT_MS', 300_000, 0, 86_400_000),
    // Kafka's brokers accept 6 s .. 5 min by default (group.min/max.session.timeout.ms).
    sessionTimeoutMs: intVar(env, 'TD_SESSION_TIMEOUT_MS', 30_000, 6000, 300_000),
    lagIntervalMs: intVar(env, 'TD_LAG_INTERVAL_MS', 5000, 100, 3_600_000),
    tracing: onOffVar(env, 'TD_TRACING', true),
    maxEventLoopDelayMs: intVar(env, 'TD_MAX_EVENT_LOOP_DELAY_MS', 5000, 10, 600_000),
    logLevel: level as LogLevel,
    tenantKey: tenantKeyVar(env),
    instanceId: instanceIdVar(env),
    heartbeatMs: intVar(env, 'TD_HEARTBEAT_MS', 2000, 100, 600_000),
  };
  return freezeConfig(config);
}

/** The config as safe plain data: token redacted, database password masked. */
/**
 * Whether records of `encoding` are decoded on the engine's worker threads (when it has them):
 * TD_DECODE_IN_WORKERS true or auto (the default) say yes for both encodings, false says no.
 */
export function decodesInWorkers(setting: Config['decodeInWorkers'], _encoding: 'json' | 'protobuf'): boolean {
  return setting !== false;
}

export function describeConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    adminToken: config.adminToken === undefined ? null : REDACTED,
    databaseUrl: redactUrl(config.databaseUrl),
    kafkaSecurity: config.kafkaSecurity.describe(),
    pgTls: { caFile: config.pgTls.caFile ?? null },
    grpcAddr: `${config.grpcAddr.host}:${config.grpcAddr.port}`,
    httpAddr: `${config.httpAddr.host}:${config.httpAddr.port}`,
  };
}

/**
 * Freezes a config (deeply) and gives it safe toJSON/inspect forms. Exported so tests and
 * programmatic users can build a config from `loadConfig` plus overrides.
 */
export function freezeConfig(config: Config): Config {
  const out = { ...config };
  Object.defineProperty(out, 'toJSON', { value: () => describeConfig(out), enumerable: false });
  Object.defineProperty(out, inspect.custom, { value: () => describeConfig(out), enumerable: false });
  for (const v of Object.values(out)) {
    if (typeof v === 'object' && v !== null && !(v instanceof Secret)) Object.freeze(v);
  }
  return Object.freeze(out);
}

/** loadConfig with overrides on top (tests, demo): `withConfig(base, { groupId: 'x' })`. */
export function withConfig(base: Config, overrides: Partial<Config>): Config {
  const merged: Config = { ...base, ...overrides };
  // Copy nested objects so freezing the result never touches the base.
  merged.topics = { ...merged.topics };
  merged.breaker = { ...merged.breaker };
  merged.thresholds = { ...merged.thresholds };
  if (merged.cost) merged.cost = { ...merged.cost };
  merged.brokers = [...merged.brokers];
  return freezeConfig(merged);
}
