// Shared set-up for the stream's integration tests: a config with topics, group and schema of
// its own (on the real broker and the real Postgres), request builders, and readers that
// collect what the service wrote to Kafka and Postgres.
import type { IHeaders, KafkaMessage, Producer } from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { createApp, type App, type AppOptions } from '../../../src/app.js';
import { feedbackSettingsFromEnv } from '../../../src/feedback/service.js';
import { loadConfig, withConfig, type Config } from '../../../src/config.js';
import type { RoutingDecision, RoutingRequest } from '../../../src/wire/types.js';
import { createLogger, type Logger } from '../../../src/observe/logger.js';
import { CONTENT_TYPES, decodeDecision, encodeRequest, encodingOf, type Encoding } from '../../../src/wire/index.js';
import { databaseUrl, kafkaBrokers, removeTopics, testKafka, uniqueName, uniqueSchema } from '../../support/infra.js';

export { databaseUrl, kafkaBrokers, testKafka, uniqueName, uniqueSchema };

export interface Names {
  requests: string;
  lightweight: string;
  heavyweight: string;
  dlq: string;
  outcomes: string;
  control: string;
  /** A responses topic (TD_TOPIC_RESPONSES) for the tests that turn it on; envFor leaves it off. */
  responses: string;
  group: string;
  schema: string;
}

export function names(prefix = 'st'): Names {
  const id = uniqueName(prefix);
  return {
    requests: `${id}.requests`,
    lightweight: `${id}.light`,
    heavyweight: `${id}.heavy`,
    dlq: `${id}.dlq`,
    outcomes: `${id}.outcomes`,
    control: `${id}.control`,
    responses: `${id}.responses`,
    group: `${id}.group`,
    schema: uniqueSchema('td_stream'),
  };
}

/** The environment a child `serve` process gets for these names. */
export function envFor(n: Names, extra: Record<string, string> = {}): Record<string, string> {
  return {
    KAFKA_BROKERS: kafkaBrokers().join(','),
    DATABASE_URL: databaseUrl(),
    TD_DB_SCHEMA: n.schema,
    TD_TOPIC_REQUESTS: n.requests,
    TD_TOPIC_LIGHTWEIGHT: n.lightweight,
    TD_TOPIC_HEAVYWEIGHT: n.heavyweight,
    TD_TOPIC_DLQ: n.dlq,
    TD_TOPIC_OUTCOMES: n.outcomes,
    TD_TOPIC_CONTROL: n.control,
    TD_GROUP_ID: n.group,
    TD_WORKERS: '1',
    TD_REQUEST_PARTITIONS: '3',
    TD_DECISION_PARTITIONS: '2',
    TD_LAG_INTERVAL_MS: '1000',
    // A killed member holds its partitions this long; keep restarts in tests quick.
    TD_SESSION_TIMEOUT_MS: '8000',
    // The feedback loop (outcomes consumer) has its own tests; keep these about the stream.
    TD_FEEDBACK: 'false',
    ...extra,
  };
}

export function testConfig(n: Names, overrides: Partial<Config> = {}, env: Record<string, string> = {}): Config {
  const base = loadConfig(envFor(n, env));
  // Port 0: any free port (loadConfig refuses 0 for operators; tests may).
  return withConfig(base, { httpAddr: { host: '127.0.0.1', port: 0 }, ...overrides });
}

/** Logs to a buffer (printed by the test on failure when wanted). */
export function bufferLogger(level: 'debug' | 'info' | 'warn' = 'info'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({
    level,
    write: (l) => {
      lines.push(l);
      if (process.env.TD_TEST_LOGS === '1') process.stderr.write(l);
    },
  });
  return { logger, lines };
}

export async function startApp(config: Config, opts: Omit<AppOptions, 'config'> = {}): Promise<App> {
  const app = createApp({ config, logger: opts.logger ?? bufferLogger().logger, feedback: feedbackSettingsFromEnv({ TD_FEEDBACK: 'false' }), ...opts });
  await app.start();
  return app;
}

/** An in-process serve on names of its own, with a collector on its two decision topics. */
export interface ServeFixture {
  readonly n: Names;
  /** Set by the fixture's beforeAll. */
  readonly app: App;
  readonly out: Collector;
}

/**
 * Registers the usual set-up and tear-down of a test file (vitest hooks, in this order): start
 * serve with the config and options `setup` gives for fresh names, collect its decisions; then
 * stop both, drop the schema and delete the topics.
 */
export function serveFixture(prefix: string, setup: (n: Names) => { config: Config; options?: Omit<AppOptions, 'config'> } = (n) => ({ config: testConfig(n) })): ServeFixture {
  const state: { n: Names; app?: App; out?: Collector } = { n: names(prefix) };
  beforeAll(async () => {
    const { config, options } = setup(state.n);
    state.app = await startApp(config, options);
    state.out = await collect([state.n.lightweight, state.n.heavyweight]);
  });
  afterAll(async () => {
    await state.out?.stop();
    await state.app?.stop({ timeoutMs: 5000 });
    await dropSchema(state.n.schema);
    await deleteTopics(state.n);
  });
  return {
    n: state.n,
    get app() {
      if (!state.app) throw new Error('serveFixture: serve is not started (used outside a test?)');
      return state.app;
    },
    get out() {
      if (!state.out) throw new Error('serveFixture: the collector is not started (used outside a test?)');
      return state.out;
    },
  };
}

// ---- requests ---------------------------------------------------------------------------------

let seedCounter = 1;
function rand(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** A valid request with `n` candidates of dimension `dim`. */
export function makeRequest(id: string, n = 4, dim = 16): RoutingRequest {
  const r = rand(seedCounter++ * 7919);
  const vec = () => Array.from({ length: dim }, () => Math.fround(r() * 2 - 1));
  const now = Math.floor(Date.now() / 1000);
  return {
    request_id: id,
    query_embedding: vec(),
    candidates: Array.from({ length: n }, (_, i) => ({
      id: `${id}-c${i}`,
      embedding: vec(),
      metadata: { slot: String(i) },
      created_at: now - Math.floor(r() * 86_400),
      access_count: Math.floor(r() * 100),
      success_rate: Math.fround(0.5 + r() / 2),
    })),
    metadata: { domain: 'test' },
  };
}

export interface Outgoing {
  key: string | Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
}

export function record(req: RoutingRequest, encoding: Encoding): Outgoing {
  return { key: req.request_id, value: encodeRequest(req, encoding), headers: { 'content-type': CONTENT_TYPES[encoding] } };
}

export async function withProducer<T>(fn: (p: Producer) => Promise<T>): Promise<T> {
  const producer = testKafka().producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    return await fn(producer);
  } finally {
    await producer.disconnect();
  }
}

export async function produce(topic: string, messages: Outgoing[]): Promise<void> {
  await withProducer(async (p) => {
    for (let i = 0; i < messages.length; i += 200) {
      await p.send({ topic, acks: -1, messages: messages.slice(i, i + 200) });
    }
  });
}

/**
 * Sends the requests as a steady stream, `waveSize` at a time (alternating JSON and protobuf),
 * each wave with one malformed record, so a test can fault serve while it holds work.
 */
export async function produceWaves(topic: string, requests: RoutingRequest[], waveSize = 50, pauseMs = 150): Promise<{ bad: number }> {
  let bad = 0;
  for (let i = 0; i < requests.length; i += waveSize) {
    const wave: Outgoing[] = requests.slice(i, i + waveSize).map((r, j) => record(r, j % 2 ? 'json' : 'protobuf'));
    wave.push({ key: `bad-${bad}`, value: Buffer.from(`not json ${bad}`), headers: { 'content-type': 'application/json' } });
    bad++;
    await produce(topic, wave);
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  return { bad };
}

// ---- reading back -----------------------------------------------------------------------------

export interface Got {
  topic: string;
  partition: number;
  message: KafkaMessage;
}

export interface Collector {
  readonly records: Got[];
  /** Resolves when `pred` holds (checked on every record and every 200 ms), or rejects on timeout. */
  until(pred: (records: Got[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  stop(): Promise<void>;
}

/** Reads the topics from the beginning into memory (read_committed unless told otherwise). */
export async function collect(topics: string[], opts: { readUncommitted?: boolean } = {}): Promise<Collector> {
  const consumer = testKafka().consumer({ groupId: uniqueName('collector'), readUncommitted: opts.readUncommitted ?? false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  const records: Got[] = [];
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      records.push({ topic, partition, message });
    },
  });
  return {
    records,
    async until(pred, timeoutMs = 45_000, what = 'condition') {
      const deadline = Date.now() + timeoutMs;
      while (!pred(records)) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${records.length} records so far)`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    stop: () => consumer.disconnect(),
  };
}

export function header(m: KafkaMessage, name: string): string | undefined {
  const v = m.headers?.[name];
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : first.toString();
}

/** Decodes a decision record in the encoding its content-type says. */
export function decision(m: KafkaMessage): RoutingDecision {
  return decodeDecision(m.value!, encodingOf(header(m, 'content-type')));
}

// ---- Postgres ---------------------------------------------------------------------------------

export async function query<T extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: databaseUrl() });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

export async function rowCounts(schema: string): Promise<{ rows: number; distinct: number; requests: number }> {
  const [r] = await query<{ rows: string; distinct: string; requests: string }>(
    `SELECT count(*) AS rows, count(DISTINCT (request_id, candidate_id)) AS distinct, count(DISTINCT request_id) AS requests FROM "${schema}".routing_decisions`,
  );
  return { rows: Number(r!.rows), distinct: Number(r!.distinct), requests: Number(r!.requests) };
}

export async function waitFor(pred: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
}

export async function deleteTopics(n: Names): Promise<void> {
  await removeTopics([n.requests, n.lightweight, n.heavyweight, n.dlq, n.outcomes, n.control, n.responses]);
}
