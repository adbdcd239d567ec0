// Exactly-once across a broker restart mid-stream. The test runs a broker of its own
// (scripts/kafka.mjs on a temporary home and free ports: the shared one is never restarted),
// feeds `serve` with TD_EXACTLY_ONCE=true, stops the broker while transactions are open and
// starts it again on the same data. A read_committed consumer from librdkafka must then see
// every decision once, and Postgres must hold one row for each.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { down, up } from '../../../scripts/kafka.mjs';
import { freePort, serveChildren } from './child.js';
import { duplicates, readCommitted } from './judge.js';
import { makeRequest, record, rowCounts, waitFor, type Outgoing } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const children = serveChildren('eosrestart');
const { n } = children;
let brokerEnv: NodeJS.ProcessEnv;
let brokers: string;

beforeAll(async () => {
  const home = mkdtempSync(join(tmpdir(), 'td-kafka-'));
  // The jars of the checkout's own broker cache, when it has them: no second download.
  const cache = join(ROOT, '.cache', 'kafka');
  if (existsSync(cache)) {
    mkdirSync(home, { recursive: true });
    for (const d of readdirSync(cache)) if (d.startsWith('libs-')) symlinkSync(join(cache, d), join(home, d));
  }
  const port = await freePort();
  let controller = await freePort();
  while (controller === port) controller = await freePort();
  brokerEnv = { ...process.env, TD_KAFKA_HOME: home, TD_KAFKA_PORT: String(port), TD_KAFKA_CONTROLLER_PORT: String(controller) };
  brokers = (await up(brokerEnv)).brokers;
}, 180_000);

afterAll(async () => {
  if (brokerEnv) {
    await down(brokerEnv).catch(() => {});
    rmSync(brokerEnv.TD_KAFKA_HOME!, { recursive: true, force: true });
  }
}, 120_000);

async function send(kafka: Kafka, topic: string, messages: Outgoing[]): Promise<void> {
  const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 100, maxRetryTime: 2000 } });
  await p.connect();
  try {
    await p.send({ topic, acks: -1, messages });
  } finally {
    await p.disconnect();
  }
}

describe('exactly-once across a broker restart', () => {
  it('every decision once and one row each, though the broker went away with transactions open', async () => {
    const child = await children.start({ KAFKA_BROKERS: brokers, TD_EXACTLY_ONCE: 'true', TD_REQUEST_PARTITIONS: '3' });
    const kafka = new Kafka({ clientId: 'eos-restart-test', brokers: [brokers], logLevel: logLevel.NOTHING });
    const CANDIDATES = 4;
    const requests = Array.from({ length: 1200 }, (_, i) => makeRequest(`br-${i}`, CANDIDATES, 16));
    const total = requests.length * CANDIDATES;
    const wave = (from: number, to: number) => requests.slice(from, to).map((r, j) => record(r, j % 2 ? 'protobuf' : 'json'));

    // First half: sent in waves, so work is in flight when the broker stops.
    for (let i = 0; i < 600; i += 100) await send(kafka, n.requests, wave(i, i + 100));
    await waitFor(async () => (await rowCounts(n.schema)).rows >= 400, 60_000, 'progress before the restart');
    expect((await rowCounts(n.schema)).rows).toBeLessThan(total);
    await down(brokerEnv);
    await new Promise((r) => setTimeout(r, 3000));
    await up(brokerEnv);
    for (let i = 600; i < requests.length; i += 100) await send(kafka, n.requests, wave(i, i + 100));

    await waitFor(async () => (await rowCounts(n.schema)).distinct >= total, 180_000, 'a row for every decision');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });
    const committed = await readCommitted([brokers], [n.lightweight, n.heavyweight], total, { settleMs: 4000, timeoutMs: 120_000 });
    const { keys, duplicated } = duplicates(committed);
    expect(duplicated, 'decisions seen more than once by read_committed').toBe(0);
    expect(new Set(keys).size).toBe(total);

    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
  }, 300_000);
});
