// `tiny-dancer demo`: the whole service plus a synthetic client, so a newcomer sees decisions
// flowing and statistics moving within a minute. The traffic is the seeded synthetic workload
// the shipped model was trained on (src/train/synthetic.ts: 384-d embeddings in clustered
// topics, 4–16 candidates), sent in JSON and protobuf, with a small share of broken records so
// the dead-letter path is visible too. A summary line goes to stdout every few seconds.
import type { Producer } from 'kafkajs';
import type { App } from '../../app.js';
import { loadConfig } from '../../config.js';
import type { RoutingRequest } from '../../wire/types.js';
import { createLogger } from '../../observe/logger.js';
import { encodeRequest } from '../../wire/client.js';
import { CONTENT_TYPES, type Encoding } from '../../wire/headers.js';
import { createKafka, partitioner } from '../../stream/kafka.js';
import { intArg, numberArg, parseCommandArgs } from '../args.js';
import { UsageError } from '../../errors.js';

export const summary = 'run the service with synthetic traffic and a live summary (a first look)';
export const usage = `usage: tiny-dancer demo [--rate N] [--seconds S] [--encoding json|protobuf|mixed] [--bad-rate P]

Starts everything \`tiny-dancer serve\` starts (the local broker and an embedded Postgres too
when KAFKA_BROKERS / DATABASE_URL are not set), then produces synthetic routing requests to
the request topic and prints a summary line every few seconds: requests sent and decided,
lightweight share, dead-lettered records, end-to-end latency, log backlog, breaker state.
Ctrl-C stops it cleanly.

  --rate N          requests per second (default 20)
  --seconds S       stop after S seconds (default: run until Ctrl-C)
  --encoding E      json, protobuf or mixed (default mixed)
  --bad-rate P      share of deliberately broken records, 0..1 (default 0.02)
  --every MS        summary interval in milliseconds (default 3000)`;

export interface DemoOptions {
  rate: number;
  seconds?: number;
  encoding: 'json' | 'protobuf' | 'mixed';
  badRate: number;
  summaryEveryMs: number;
}

interface Outgoing {
  key: string;
  value: Buffer;
  headers: Record<string, string>;
}

/** Broken records of every kind the DLQ should catch. */
function badRecord(i: number, good: RoutingRequest): Outgoing {
  const key = `bad-${i}`;
  const json = CONTENT_TYPES.json;
  switch (i % 5) {
    case 0:
      return { key, value: Buffer.from('{"request_id": "oops", "query_embedding": [1, 2'), headers: { 'content-type': json } };
    case 1:
      return { key, value: Buffer.from([0xff, 0xfe, 0x00, 0x41]), headers: { 'content-type': json } };
    case 2: {
      const dup = { ...good, request_id: key, candidates: [good.candidates[0]!, good.candidates[0]!] };
      return { key, value: encodeRequest(dup, 'json'), headers: { 'content-type': json } };
    }
    case 3: {
      const short = { ...good, request_id: key, query_embedding: Array.from(good.query_embedding).slice(0, 17) };
      return { key, value: encodeRequest(short, 'json'), headers: { 'content-type': json } };
    }
    default:
      return { key, value: Buffer.from('definitely not protobuf'), headers: { 'content-type': CONTENT_TYPES.protobuf } };
  }
}

function fmtMs(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(us >= 100_000 ? 0 : 1)}ms` : `${Math.round(us)}µs`;
}

/** Starts the synthetic client against a started App; `onDone` fires after --seconds. */
export async function startDemoTraffic(app: App, opts: DemoOptions, onDone: () => void): Promise<{ stop(): Promise<void> }> {
  const { generateTraffic } = await import('../../train/synthetic.js');
  const config = app.settings;
  const kafka = createKafka({ brokers: config.brokers, clientId: 'tiny-dancer-demo', kafkaSecurity: config.kafkaSecurity }, app.logger.child({ component: 'demo' }));
  // A plain client producer (acks=-1 per send): the demo stands for someone else's application.
  const producer: Producer = kafka.producer({ createPartitioner: partitioner });
  await producer.connect();
  const started = Date.now();
  const seed = started % 100_000;
  const traffic = generateTraffic({ requests: Number.MAX_SAFE_INTEGER, seed, dim: 384, topics: 8, minCandidates: 4, maxCandidates: 12, now: Math.floor(started / 1000) });
  let sent = 0;
  let bad = 0;
  let sending = false;
  let stopped = false;

  const next = (): Outgoing => {
    const r = traffic.next().value as RoutingRequest & { now?: number };
    const request: RoutingRequest = {
      request_id: `demo-${seed}-${sent}`,
      query_embedding: r.query_embedding,
      candidates: r.candidates.map((c) => ({
        id: c.id,
        embedding: c.embedding,
        metadata: c.metadata ?? {},
        created_at: c.created_at ?? 0,
        access_count: c.access_count ?? 0,
        success_rate: c.success_rate ?? 0,
      })),
      metadata: r.metadata ?? {},
    };
    if (Math.random() < opts.badRate) {
      bad++;
      return badRecord(bad, request);
    }
    const encoding: Encoding = opts.encoding === 'mixed' ? (sent % 2 === 0 ? 'protobuf' : 'json') : opts.encoding;
    return { key: request.request_id, value: encodeRequest(request, encoding), headers: { 'content-type': CONTENT_TYPES[encoding] } };
  };

  // Send in ticks of 100 ms; a slow tick is skipped rather than queued (bounded).
  let credit = 0;
  const tick = setInterval(() => {
    if (sending || stopped) return;
    credit += opts.rate / 10;
    const n = Math.floor(credit);
    if (n === 0) return;
    credit -= n;
    const messages = Array.from({ length: Math.min(n, 1000) }, () => {
      const m = next();
      sent++;
      return m;
    });
    sending = true;
    producer
      .send({ topic: config.topics.requests, acks: -1, messages })
      .catch((err: unknown) => app.logger.warn('demo: send failed', { err }))
      .finally(() => {
        sending = false;
      });
  }, 100);

  const line = () => {
    const s = app.control.stats();
    const t = s.totals;
    const k = app.streamCounters();
    const share = t.decisions > 0 ? Math.round((100 * t.lightweight) / t.decisions) : 0;
    const e2e = s.endToEndLatency;
    const secs = Math.round((Date.now() - started) / 1000);
    process.stdout.write(
      `demo ${String(secs).padStart(4)}s | sent ${sent} (${bad} broken) | decided ${k?.decided ?? 0} requests, ${t.decisions} decisions: ` +
        `${share}% lightweight | dlq ${k?.dlq ?? 0} | e2e p50 ${fmtMs(e2e?.p50 ?? 0)} p99 ${fmtMs(e2e?.p99 ?? 0)} | ` +
        `log backlog ${s.decisionLog?.backlog ?? 0}${s.store?.available ? `, ${s.store.decisions} rows (24h)` : ''} | breaker ${s.breaker.state}\n`,
    );
  };
  const summaryTimer = setInterval(line, opts.summaryEveryMs);
  const endTimer = opts.seconds !== undefined ? setTimeout(onDone, opts.seconds * 1000) : undefined;
  process.stdout.write(
    `demo: sending ~${opts.rate} synthetic requests/s (${opts.encoding}) to ${config.topics.requests}; decisions on ${config.topics.lightweight} / ${config.topics.heavyweight}, broken records on ${config.topics.dlq}` +
      `${app.httpUrl ? `; status page ${app.httpUrl}/ (metrics ${app.httpUrl}/metrics)` : ''}. Ctrl-C to stop.\n`,
  );

  return {
    async stop() {
      stopped = true;
      clearInterval(tick);
      clearInterval(summaryTimer);
      if (endTimer) clearTimeout(endTimer);
      line();
      await producer.disconnect().catch(() => {});
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    rate: { type: 'string' },
    seconds: { type: 'string' },
    encoding: { type: 'string' },
    'bad-rate': { type: 'string' },
    every: { type: 'string' },
  });
  const encoding = values.encoding ?? 'mixed';
  if (encoding !== 'json' && encoding !== 'protobuf' && encoding !== 'mixed') {
    throw new UsageError(`--encoding must be json, protobuf or mixed, got '${encoding}'`);
  }
  const demo: DemoOptions = {
    rate: numberArg('rate', values.rate, 20, 0.1, 100_000),
    encoding,
    badRate: numberArg('bad-rate', values['bad-rate'], 0.02, 0, 1),
    summaryEveryMs: intArg('every', values.every, 3000, 200, 600_000),
    ...(values.seconds !== undefined ? { seconds: numberArg('seconds', values.seconds, 0, 1, 86_400 * 365) } : {}),
  };
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, secrets: [config.adminToken] });
  const { runService } = await import('../service.js');
  return runService({ config, logger, onStarted: (app, stop) => startDemoTraffic(app, demo, () => stop('demo finished')) });
}
