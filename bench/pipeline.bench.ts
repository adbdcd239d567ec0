// Pipeline benchmark: `tiny-dancer serve` end to end through the real broker and the real
// Postgres, against a no-op passthrough (consume, produce the same bytes, commit after the
// acknowledgement — the same kafkajs settings as the processor) in the same run.
//
//   npm run bench:pipeline                 (≈ 1–3 minutes)
//   BENCH_QUICK=1 npm run bench:pipeline   (smaller N, for a smoke run)
//
// Workload: requests of 10 candidates × 384 dims, protobuf and JSON, and of 100 candidates
// (protobuf), generated from a fixed seed. The modes: the passthrough; serve at-least-once (the
// default); serve exactly-once (TD_EXACTLY_ONCE=true: the latency consumer reads committed, so
// its latency includes the commit interval); serve decoding on the workers. Each mode runs as
// its own child process (so its RSS is its own) on fresh topics:
//   throughput  N requests are produced first; the child is started; the time from its joining
//               the group to the group's committed offsets reaching the end of the input is
//               measured (for serve that means: decisions acknowledged by Kafka AND rows
//               durable in Postgres — it commits only then).
//   latency     with the child running, requests are produced at a fixed rate; a consumer of
//               the output topics takes, per request, the first output record's arrival time
//               minus the time the request was sent.
//   RSS         the child's VmRSS (/proc), sampled every 100 ms; the log backlog from serve's
//               /metrics (td_decision_log_backlog), sampled every 250 ms.
// Environment: KAFKA_BROKERS (default: the local broker, started if needed), DATABASE_URL
// (default postgres://postgres@127.0.0.1:5432/postgres), BENCH_N_PROTOBUF, BENCH_N_JSON,
// BENCH_N_PROTOBUF_100, BENCH_RATE_PROTOBUF, BENCH_RATE_JSON, BENCH_RATE_PROTOBUF_100,
// BENCH_LATENCY_SECONDS, BENCH_ROUNDS, BENCH_MODES (passthrough,serve,eos,workers),
// BENCH_ENCODINGS, BENCH_CANDIDATES (10,100), BENCH_SERVE_NODE_ARGS (node flags for the serve
// child, e.g. --cpu-prof).
// Tracing cost: BENCH_MODES=passthrough,workers,untraced runs serve as deployed (decoding on the
// workers) with TD_TRACING on and off, interleaved; BENCH_TRACEPARENT=1 gives every request
// record a traceparent and tracestate of its own, so the traced path does its full work (no SDK
// is registered in serve: the cost measured is that of the API's no-op spans and the headers).
// Responses topic cost: BENCH_MODES=passthrough,workers,responses runs serve as deployed with the
// responses topic off and on (TD_TOPIC_RESPONSES, every decision in each response unless
// BENCH_RESPONSE_TOP_K sets TD_RESPONSE_TOP_K), interleaved.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Admin, Kafka } from 'kafkajs';
import pg from 'pg';
import type { RoutingRequest } from '../src/wire/types.js';
import { CONTENT_TYPES, encodeRequest, type Encoding } from '../src/wire/index.js';
import { Rng } from '../src/train/rng.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const DIM = 384;

// =============================================================================================
// Children

async function childServe(): Promise<void> {
  const { main } = await import('../src/cli/index.js');
  process.exitCode = await main(['serve']);
}

/** The baseline: consume, produce the same bytes, commit after the acknowledgement. */
async function childPassthrough(): Promise<void> {
  const { loadConfig } = await import('../src/config.js');
  const { createLogger } = await import('../src/observe/logger.js');
  const { createKafka, partitioner } = await import('../src/stream/kafka.js');
  const c = loadConfig(process.env);
  const logger = createLogger({ level: 'info' });
  const kafka = createKafka(c, logger);
  const out = process.env.BENCH_PASSTHROUGH_OUT!;
  const retry = { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 10_000 };
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation: false, retry, createPartitioner: partitioner });
  const consumer = kafka.consumer({
    groupId: c.groupId,
    sessionTimeout: c.sessionTimeoutMs,
    heartbeatInterval: 3000,
    maxBytesPerPartition: c.fetchMaxBytesPerPartition,
    maxBytes: c.fetchMaxBytes,
    maxWaitTimeInMs: 100,
    allowAutoTopicCreation: false,
  });
  consumer.on(consumer.events.GROUP_JOIN, () => logger.info('joined consumer group'));
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: [c.topics.requests], fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: c.partitionsConcurrency,
    eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary, heartbeat }) => {
      const messages = batch.messages.map((m) => ({ key: m.key, value: m.value, headers: m.headers }));
      if (messages.length === 0) return;
      await producer.sendBatch({ topicMessages: [{ topic: out, messages }], acks: -1 });
      const last = batch.messages[batch.messages.length - 1]!.offset;
      resolveOffset(last);
      await commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: (BigInt(last) + 1n).toString() }] }] });
      await heartbeat();
    },
  });
  const stop = async () => {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

// =============================================================================================
// Orchestrator

/** `count` encoded requests with ids `${prefix}-${i}`; with BENCH_TRACEPARENT=1 each in a trace of its own. */
function makeRecords(prefix: string, count: number, encoding: Encoding, seed: number, candidates: number): { key: string; value: Buffer; headers: Record<string, string> }[] {
  // Trace ids from a generator of their own: the requests are the same with or without them.
  const ids = process.env.BENCH_TRACEPARENT === '1' ? new Rng(seed + 1_000_003) : undefined;
  const rng = new Rng(seed);
  const r = (): number => rng.next();
  const now = Math.floor(Date.now() / 1000);
  const vec = () => {
    const v = new Float32Array(DIM);
    for (let j = 0; j < DIM; j++) v[j] = r() * 2 - 1;
    return v;
  };
  const out = [];
  for (let i = 0; i < count; i++) {
    const req: RoutingRequest = {
      request_id: `${prefix}-${i}`,
      query_embedding: vec(),
      candidates: Array.from({ length: candidates }, (_, c) => ({
        id: `c${c}`,
        embedding: vec(),
        metadata: { model: c % 2 ? 'small' : 'large' },
        created_at: now - Math.floor(r() * 86_400),
        access_count: Math.floor(r() * 1000),
        success_rate: r(),
      })),
      metadata: { domain: 'bench' },
    };
    const headers: Record<string, string> = { 'content-type': CONTENT_TYPES[encoding] };
    if (ids) {
      const hex = (digits: number) => Array.from({ length: digits / 8 }, () => Math.floor(ids.next() * 2 ** 32).toString(16).padStart(8, '0')).join('');
      headers.traceparent = `00-${hex(32)}-${hex(16)}-01`;
      headers.tracestate = 'bench=1';
    }
    out.push({ key: req.request_id, value: encodeRequest(req, encoding), headers });
  }
  return out;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system, all threads) the process has used so far; NaN if unreadable. */
function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may contain spaces): utime and stime are 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // clock ticks; USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

interface Child {
  proc: ChildProcess;
  joined: Promise<number>;
  exited: Promise<number | null>;
  lines: string[];
}

const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of liveChildren) c.kill('SIGKILL');
});

/** Newest modification time (ms) of the files under a directory. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** The node flags `npm start` gives serve (package.json), so the benchmark runs it the same way. */
function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = pkg.scripts.start.split(/\s+/);
  return words.slice(1, words.indexOf('bin/tiny-dancer.js')).filter((w) => w.startsWith('--'));
}

interface ServeEntry {
  args: string[];
  label: string;
  /** False when serve runs from the sources through tsx. */
  compiled: boolean;
}

const cachedEntries = new Map<string, ServeEntry>();
/** serve's entry: BENCH_DIST or dist/, or `dist` (the baseline build of a before/after run). */
function serveEntry(dist?: string): ServeEntry {
  const key = dist ?? '';
  let entry = cachedEntries.get(key);
  if (!entry) cachedEntries.set(key, (entry = findServeEntry(dist)));
  return entry;
}

/**
 * How `serve` runs: compiled (BENCH_DIST, or ./dist when it is newer than every source file)
 * as in production, so that RSS and CPU are the product's; or, when dist/ is stale, from the
 * TypeScript sources through tsx, whose transpiler adds its own memory and threads.
 */
function findServeEntry(baseline?: string): ServeEntry {
  const explicit = baseline ?? process.env.BENCH_DIST;
  const dist = explicit ?? join(ROOT, 'dist');
  const index = join(dist, 'cli', 'index.js');
  const fresh = existsSync(index) && (explicit !== undefined || statSync(join(dist, 'app.js')).mtimeMs >= newestMtime(join(ROOT, 'src')));
  if (fresh) {
    // A launcher file rather than `-e`: worker threads inherit the parent's execArgv.
    const launcher = join(tmpdir(), `td-bench-serve-${process.pid}${baseline ? '-baseline' : ''}.mjs`);
    writeFileSync(launcher, `const { main } = await import(${JSON.stringify(pathToFileURL(index).href)});\nprocess.exitCode = await main(['serve']);\n`);
    process.on('exit', () => rmSync(launcher, { force: true }));
    return { args: [launcher], label: `compiled (${dist}), node flags of npm start: ${startFlags().join(' ') || 'none'}`, compiled: true };
  }
  return { args: ['--import', 'tsx', SELF, '--child=serve'], label: 'TypeScript sources through tsx (dist/ is stale or missing: run npm run build for production RSS)', compiled: false };
}

function spawnChild(kind: 'serve' | 'passthrough', env: Record<string, string>, dist?: string): Child {
  // serve gets npm start's node flags, then BENCH_SERVE_NODE_ARGS (which can override them),
  // e.g. "--cpu-prof --cpu-prof-dir=/tmp/p" or "--max-semi-space-size=4".
  const extra = (process.env.BENCH_SERVE_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const args = kind === 'serve' ? [...startFlags(), ...extra, ...serveEntry(dist).args] : ['--import', 'tsx', SELF, `--child=${kind}`];
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: string[] = [];
  let onJoin!: (t: number) => void;
  const joined = new Promise<number>((r) => (onJoin = r));
  createInterface({ input: proc.stderr! }).on('line', (l) => {
    if (lines.length < 2000) lines.push(l);
    if (l.includes('joined consumer group')) onJoin(performance.now());
    if (process.env.BENCH_VERBOSE === '1') process.stderr.write(`[${kind}] ${l}\n`);
  });
  liveChildren.add(proc);
  const exited = new Promise<number | null>((r) =>
    proc.once('exit', (code) => {
      liveChildren.delete(proc);
      r(code);
    }),
  );
  return { proc, joined, exited, lines };
}

async function committedTotal(admin: Admin, group: string, topic: string): Promise<number> {
  const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return (t?.partitions ?? []).reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
}

async function metricValue(url: string, name: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(url)).text();
    const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

type Mode =
  | 'passthrough'
  | 'serve'
  | 'serve, exactly-once'
  | 'serve, decode in workers'
  | 'serve, decode in workers, tracing off'
  | 'serve, decode in workers, responses on'
  | 'serve, decode in workers, baseline build';

/** `serve` as deployed, built from another commit (BENCH_BASELINE_DIST): the "before" of a before/after run. */
const BASELINE = 'serve, decode in workers, baseline build' as const;

function wantedModes(): string[] {
  return (process.env.BENCH_MODES ?? 'passthrough,serve,eos,workers').split(',').map((m) => m.trim());
}

function baselineDist(): string {
  const dist = process.env.BENCH_BASELINE_DIST;
  if (!dist || !existsSync(join(dist, 'cli', 'index.js'))) {
    throw new Error(`BENCH_MODES has baseline: BENCH_BASELINE_DIST must name a built dist/ directory (with cli/index.js); got ${dist ?? 'nothing'}`);
  }
  return dist;
}

interface Result {
  mode: Mode;
  encoding: Encoding;
  candidates: number;
  n: number;
  seconds: number;
  rate: number;
  latencyRate: number;
  p50ms: number;
  p99ms: number;
  maxRssMb: number;
  /** CPU time of the child (all threads) per request during the throughput phase, ms. */
  cpuMsPerRequest: number;
  /** serve only: peak main-thread JS heap and V8-tracked off-heap memory, MB (0 for the passthrough). */
  maxHeapMb: number;
  maxExternalMb: number;
  maxBacklog?: number;
  rows?: number;
  rowsAtCommit?: number;
}

async function produceAll(kafka: Kafka, topic: string, records: { key: string; value: Buffer; headers: Record<string, string> }[]): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  await producer.connect();
  try {
    // Sends of at most ~800 KB: the broker refuses record batches over 1 MB (message.max.bytes).
    let batch: typeof records = [];
    let bytes = 0;
    for (const r of records) {
      if (batch.length > 0 && bytes + r.value.length > 800_000) {
        await producer.send({ topic, acks: -1, messages: batch });
        batch = [];
        bytes = 0;
      }
      batch.push(r);
      bytes += r.value.length;
    }
    if (batch.length > 0) await producer.send({ topic, acks: -1, messages: batch });
  } finally {
    await producer.disconnect();
  }
}

async function runMode(
  kafka: Kafka,
  admin: Admin,
  mode: Mode,
  encoding: Encoding,
  candidates: number,
  n: number,
  latencyRate: number,
  latencySeconds: number,
  databaseUrl: string,
  brokers: string,
): Promise<Result> {
  const kind = mode === 'passthrough' ? 'passthrough' : 'serve';
  const id = `bench-${kind}-${encoding}-${Date.now().toString(36)}`;
  const topics = { requests: `${id}.in`, lightweight: `${id}.light`, heavyweight: `${id}.heavy`, dlq: `${id}.dlq`, outcomes: `${id}.outcomes`, passthrough: `${id}.out`, responses: `${id}.responses` };
  const responsesOn = mode === 'serve, decode in workers, responses on';
  const schema = `bench_${Date.now().toString(36)}_${kind}`;
  const group = `${id}.group`;
  const outTopics = kind === 'serve' ? [topics.lightweight, topics.heavyweight] : [topics.passthrough];
  // Right after a deletion the broker may briefly answer metadata requests with
  // UNKNOWN_TOPIC_OR_PARTITION; creation is retried until every topic has its leaders.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [topics.requests, topics.lightweight, topics.heavyweight, topics.dlq, topics.outcomes, topics.passthrough, topics.responses].map((topic) => ({ topic, numPartitions: 6 })),
      });
      break;
    } catch (err) {
      if (attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const records = makeRecords(`${id}-t`, n, encoding, 42, candidates);
  await produceAll(kafka, topics.requests, records);

  const httpPort = await freePort();
  const env: Record<string, string> = {
    KAFKA_BROKERS: brokers,
    DATABASE_URL: databaseUrl,
    TD_DB_SCHEMA: schema,
    TD_TOPIC_REQUESTS: topics.requests,
    TD_TOPIC_LIGHTWEIGHT: topics.lightweight,
    TD_TOPIC_HEAVYWEIGHT: topics.heavyweight,
    TD_TOPIC_DLQ: topics.dlq,
    TD_TOPIC_OUTCOMES: topics.outcomes,
    TD_GROUP_ID: group,
    TD_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    TD_GRPC_ADDR: `127.0.0.1:${await freePort()}`,
    TD_FEEDBACK: 'false',
    TD_LOG_LEVEL: 'info',
    BENCH_PASSTHROUGH_OUT: topics.passthrough,
    TD_DECODE_IN_WORKERS: mode === 'serve, decode in workers' || mode === 'serve, decode in workers, tracing off' || mode === BASELINE || responsesOn ? 'true' : 'false',
    TD_EXACTLY_ONCE: mode === 'serve, exactly-once' ? 'true' : 'false',
    TD_TRACING: mode === 'serve, decode in workers, tracing off' ? 'off' : 'on',
    ...(responsesOn ? { TD_TOPIC_RESPONSES: topics.responses } : {}),
    ...(responsesOn && process.env.BENCH_RESPONSE_TOP_K ? { TD_RESPONSE_TOP_K: process.env.BENCH_RESPONSE_TOP_K } : {}),
  };
  const child = spawnChild(kind, env, mode === BASELINE ? baselineDist() : undefined);
  let maxRss = 0;
  let maxBacklog = 0;
  const rssTimer = setInterval(() => (maxRss = Math.max(maxRss, rssBytes(child.proc.pid!))), 100);
  // Where serve's memory is, for the progress line: the JS heap (main thread) and the
  // off-heap memory V8 tracks (Buffers, ArrayBuffers), both from prom-client's defaults.
  let maxHeap = 0;
  let maxExternal = 0;
  const backlogTimer =
    kind === 'serve'
      ? setInterval(() => {
          void metricValue(`http://127.0.0.1:${httpPort}/metrics`, 'td_decision_log_backlog').then((v) => {
            if (v !== undefined) maxBacklog = Math.max(maxBacklog, v);
          });
          void metricValue(`http://127.0.0.1:${httpPort}/metrics`, 'nodejs_heap_size_total_bytes').then((v) => {
            if (v !== undefined) maxHeap = Math.max(maxHeap, v);
          });
          void metricValue(`http://127.0.0.1:${httpPort}/metrics`, 'nodejs_external_memory_bytes').then((v) => {
            if (v !== undefined) maxExternal = Math.max(maxExternal, v);
          });
        }, 250)
      : undefined;
  try {
    const joinedAt = await Promise.race([
      child.joined,
      child.exited.then((code) => {
        throw new Error(`${mode} exited (${code}) before joining:\n${child.lines.slice(-20).join('\n')}`);
      }),
    ]);
    // Throughput: until every input record is committed.
    const cpu0 = cpuSeconds(child.proc.pid!);
    let doneAt = 0;
    for (;;) {
      if ((await committedTotal(admin, group, topics.requests)) >= n) {
        doneAt = performance.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const cpuMsPerRequest = ((cpuSeconds(child.proc.pid!) - cpu0) * 1000) / n;
    const seconds = (doneAt - joinedAt) / 1000;
    let rows: number | undefined;
    let rowsAtCommit: number | undefined;
    if (kind === 'serve') {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      try {
        rowsAtCommit = Number((await c.query(`SELECT count(*) AS n FROM "${schema}".routing_decisions`)).rows[0].n);
      } finally {
        await c.end();
      }
    }

    // Latency at a fixed rate, first output record per request.
    const sentAt = new Map<string, number>();
    const lat: number[] = [];
    const consumer = kafka.consumer({ groupId: `${id}.latency`, maxWaitTimeInMs: 20 });
    await consumer.connect();
    await consumer.subscribe({ topics: outTopics, fromBeginning: false });
    let assigned!: () => void;
    const ready = new Promise<void>((r) => (assigned = r));
    consumer.on(consumer.events.GROUP_JOIN, () => assigned());
    await consumer.run({
      eachMessage: async ({ message }) => {
        const k = message.key?.toString() ?? '';
        const t = sentAt.get(k);
        if (t !== undefined) {
          lat.push(performance.now() - t);
          sentAt.delete(k);
        }
      },
    });
    await ready;
    await new Promise((r) => setTimeout(r, 1000)); // let its first fetch position settle
    const latRecords = makeRecords(`${id}-l`, Math.max(1, Math.round(latencyRate * latencySeconds)), encoding, 7, candidates);
    // Not idempotent: each request is sent on its own (acks=1) so it leaves at its due time.
    const producer = kafka.producer({ maxInFlightRequests: 32 });
    await producer.connect();
    const t0 = performance.now();
    for (let i = 0; i < latRecords.length; i++) {
      const due = t0 + (i * 1000) / latencyRate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const rec = latRecords[i]!;
      sentAt.set(rec.key, performance.now());
      producer.send({ topic: topics.requests, acks: 1, messages: [rec] }).catch((err: unknown) => process.stderr.write(`latency send failed: ${String(err)}\n`));
    }
    const deadline = performance.now() + 30_000;
    while (lat.length < latRecords.length && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await producer.disconnect();
    await consumer.disconnect();

    if (kind === 'serve') {
      const c = new pg.Client({ connectionString: databaseUrl });
      await c.connect();
      try {
        rows = Number((await c.query(`SELECT count(*) AS n FROM "${schema}".routing_decisions`)).rows[0].n);
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await c.end();
      }
    }
    return {
      mode,
      encoding,
      candidates,
      n,
      seconds,
      rate: n / seconds,
      latencyRate,
      p50ms: quantile(lat, 0.5),
      p99ms: quantile(lat, 0.99),
      maxRssMb: maxRss / 1024 / 1024,
      maxHeapMb: maxHeap / 1024 / 1024,
      maxExternalMb: maxExternal / 1024 / 1024,
      cpuMsPerRequest,
      ...(kind === 'serve' ? { maxBacklog, rows, rowsAtCommit } : {}),
    };
  } finally {
    clearInterval(rssTimer);
    if (backlogTimer) clearInterval(backlogTimer);
    child.proc.kill('SIGTERM');
    const code = await Promise.race([child.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
    if (code === 'timeout') child.proc.kill('SIGKILL');
    await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {});
  }
}

async function orchestrate(): Promise<void> {
  let brokers = process.env.KAFKA_BROKERS;
  if (!brokers) {
    const { up } = (await import(new URL('../scripts/kafka.mjs', import.meta.url).href)) as { up: () => Promise<{ brokers: string }> };
    brokers = (await up()).brokers;
  }
  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  // The same TLS/SASL settings (KAFKA_SSL_*, KAFKA_SASL_*) as the serve children it starts.
  const { createKafka } = await import('../src/stream/kafka.js');
  const { loadKafkaSecurity } = await import('../src/config-security.js');
  const { createLogger } = await import('../src/observe/logger.js');
  const kafka = createKafka(
    { clientId: 'bench-pipeline', brokers: brokers.split(','), kafkaSecurity: loadKafkaSecurity(process.env) },
    createLogger({ level: 'error', write: () => {} }),
  );
  const admin = kafka.admin();
  await admin.connect();
  const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  const wantedCandidates = (process.env.BENCH_CANDIDATES ?? '10,100').split(',').map((c) => Number(c.trim()));
  const plan: { encoding: Encoding; candidates: number; n: number; rate: number }[] = [
    { encoding: 'protobuf' as const, candidates: 10, n: num('BENCH_N_PROTOBUF', QUICK ? 1000 : 10_000), rate: num('BENCH_RATE_PROTOBUF', 100) },
    { encoding: 'json' as const, candidates: 10, n: num('BENCH_N_JSON', QUICK ? 300 : 2400), rate: num('BENCH_RATE_JSON', 50) },
    // A request of 100 candidates is ~155 KB of protobuf: fewer of them.
    { encoding: 'protobuf' as const, candidates: 100, n: num('BENCH_N_PROTOBUF_100', QUICK ? 100 : 600), rate: num('BENCH_RATE_PROTOBUF_100', 20) },
  ].filter((x) => wantedCandidates.includes(x.candidates));
  const latencySeconds = num('BENCH_LATENCY_SECONDS', QUICK ? 3 : 5);
  const rounds = num('BENCH_ROUNDS', QUICK ? 1 : 3);
  const allModes = ['passthrough', 'serve', 'serve, exactly-once', 'serve, decode in workers', 'serve, decode in workers, tracing off', 'serve, decode in workers, responses on', BASELINE] as const;
  const modeKey = (m: Mode) =>
    m === 'serve, decode in workers'
      ? 'workers'
      : m === 'serve, exactly-once'
        ? 'eos'
        : m === 'serve, decode in workers, tracing off'
          ? 'untraced'
          : m === 'serve, decode in workers, responses on'
            ? 'responses'
            : m === BASELINE
              ? 'baseline'
              : m;
  // BENCH_MODES=serve,eos (comma list: passthrough, serve, eos, workers, untraced, responses,
  // baseline) and BENCH_ENCODINGS=protobuf narrow a run.
  if (wantedModes().includes('baseline')) {
    baselineDist();
    // a tsx-run serve against a compiled baseline would compare the transpiler, not the code
    if (!serveEntry().compiled) throw new Error('BENCH_MODES has baseline, but dist/ is older than src/ (or missing): run npm run build first');
  }
  const wanted = wantedModes();
  const modes = allModes.filter((m) => wanted.includes(modeKey(m)));
  const encodings = (process.env.BENCH_ENCODINGS ?? 'protobuf,json').split(',').map((e) => e.trim());
  const results: Result[] = [];
  try {
    for (const p of plan.filter((x) => encodings.includes(x.encoding))) {
      // Rounds interleave the modes (baseline, service, service...), so background load on this
      // shared machine hits them alike; the table reports medians over the rounds.
      for (let round = 1; round <= rounds; round++) {
        for (const mode of modes) {
          process.stderr.write(`pipeline bench: round ${round}/${rounds}, ${mode}, ${p.encoding}, ${p.candidates} candidates, N=${p.n} ...\n`);
          const r = await runMode(kafka, admin, mode, p.encoding, p.candidates, p.n, p.rate, latencySeconds, databaseUrl, brokers);
          results.push(r);
          process.stderr.write(`  ${r.rate.toFixed(0)} req/s, CPU ${r.cpuMsPerRequest.toFixed(2)} ms/req, p50 ${r.p50ms.toFixed(1)} ms, p99 ${r.p99ms.toFixed(1)} ms, RSS ${r.maxRssMb.toFixed(0)} MB (heap ${r.maxHeapMb.toFixed(0)}, external ${r.maxExternalMb.toFixed(0)})\n`);
        }
      }
    }
  } finally {
    await admin.disconnect();
  }

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const rows = plan.filter((x) => encodings.includes(x.encoding)).flatMap((p) =>
    modes.map((mode) => {
      const same = (r: Result) => r.encoding === p.encoding && r.candidates === p.candidates;
      const rs = results.filter((r) => r.mode === mode && same(r));
      const base = median(results.filter((r) => r.mode === 'passthrough' && same(r)).map((r) => r.rate)) || NaN;
      const alo = median(results.filter((r) => r.mode === 'serve' && same(r)).map((r) => r.rate)) || NaN;
      const rate = median(rs.map((r) => r.rate));
      return {
        mode,
        encoding: p.encoding,
        candidates: p.candidates,
        n: p.n,
        rounds: rs.length,
        rate,
        rates: rs.map((r) => Math.round(r.rate)),
        ratio: rate / base,
        vsServe: rate / alo,
        latencyRate: p.rate,
        p50ms: median(rs.map((r) => r.p50ms)),
        p99ms: median(rs.map((r) => r.p99ms)),
        maxRssMb: Math.max(...rs.map((r) => r.maxRssMb)),
        cpuMs: median(rs.map((r) => r.cpuMsPerRequest)),
        maxBacklog: rs[0]?.maxBacklog === undefined ? undefined : Math.max(...rs.map((r) => r.maxBacklog ?? 0)),
        rowsOk: rs[0]?.rowsAtCommit === undefined ? undefined : rs.every((r) => r.rowsAtCommit === r.n * r.candidates),
      };
    }),
  );
  const table = [
    `pipeline benchmark — ${DIM}-dim embeddings; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}, node ${process.version}`,
    `serve ran ${serveEntry().label}; the passthrough through tsx. Medians of ${rounds} interleaved round(s).${process.env.BENCH_TRACEPARENT === '1' ? ' Every request carried a traceparent (BENCH_TRACEPARENT=1).' : ''}`,
    '',
    '| mode | encoding | candidates | N | throughput, req/s (rounds) | vs passthrough | vs serve (at-least-once) | CPU ms/req | latency p50 / p99 ms (at rate) | max RSS MB | log backlog max | all rows durable at commit |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |',
    ...rows.map((r) =>
      `| ${r.mode} | ${r.encoding} | ${r.candidates} | ${r.n} | ${r.rate.toFixed(0)} (${r.rates.join(', ')}) | ${(100 * r.ratio).toFixed(0)} % | ${Number.isFinite(r.vsServe) ? `${(100 * r.vsServe).toFixed(0)} %` : '–'} | ${r.cpuMs.toFixed(2)} | ${r.p50ms.toFixed(0)} / ${r.p99ms.toFixed(0)} (${r.latencyRate}/s) | ${r.maxRssMb.toFixed(0)} | ${r.maxBacklog ?? '–'} | ${r.rowsOk === undefined ? '–' : r.rowsOk ? 'yes' : 'NO'} |`,
    ),
    // The responses topic's cost: on against off, both decoding on the workers (as deployed).
    ...rows
      .filter((r) => r.mode === 'serve, decode in workers, responses on')
      .flatMap((on) => {
        const offRow = rows.find((r) => r.mode === 'serve, decode in workers' && r.encoding === on.encoding && r.candidates === on.candidates);
        if (!offRow) return [];
        return [
          '',
          `responses on vs off, ${on.encoding}, ${on.candidates} candidates: throughput ${(100 * (on.rate / offRow.rate)).toFixed(0)} %, CPU ms/req ${on.cpuMs.toFixed(2)} vs ${offRow.cpuMs.toFixed(2)} (${(100 * (on.cpuMs / offRow.cpuMs - 1)).toFixed(0)} %)`,
        ];
      }),
    // Before and after: this build against the baseline build, both as deployed.
    ...rows
      .filter((r) => r.mode === BASELINE)
      .flatMap((before) => {
        const after = rows.find((r) => r.mode === 'serve, decode in workers' && r.encoding === before.encoding && r.candidates === before.candidates);
        if (!after) return [];
        return [
          '',
          `this build vs the baseline build (${baselineDist()}), ${before.encoding}, ${before.candidates} candidates: throughput ${(100 * (after.rate / before.rate)).toFixed(0)} %, CPU ms/req ${after.cpuMs.toFixed(2)} vs ${before.cpuMs.toFixed(2)}, p99 ${after.p99ms.toFixed(0)} vs ${before.p99ms.toFixed(0)} ms, max RSS ${after.maxRssMb.toFixed(0)} vs ${before.maxRssMb.toFixed(0)} MB`,
        ];
      }),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = JSON.stringify(
    { at: new Date().toISOString(), node: process.version, cpus: cpus().length, loadavg: loadavg(), traceparent: process.env.BENCH_TRACEPARENT === '1', rows, runs: results },
    null,
    2,
  );
  writeFileSync(new URL(`./results/pipeline-${stamp}.json`, import.meta.url), json);
  writeFileSync(new URL('./results/pipeline-latest.json', import.meta.url), json);
}

const childArg = process.argv.find((a) => a.startsWith('--child='));
if (childArg === '--child=serve') await childServe();
else if (childArg === '--child=passthrough') await childPassthrough();
else
  await orchestrate().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`pipeline bench failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
