// Faults one after another in one run, under a steady feed: two at-least-once `serve` instances
// (the built command) in one group, on a broker of the test's own and a Postgres behind a TCP
// proxy. One instance is SIGKILLed and restarted, Postgres is cut for 20 s, the broker is
// restarted. Afterwards every candidate is decided (one row each, every decision on Kafka),
// nothing is on the DLQ, and both instances still run and drain cleanly.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Kafka } from 'kafkajs';
import { ownBroker, type OwnBroker } from '../../support/own-broker.js';
import { TcpProxy } from '../store/tcp-proxy.js';
import { spawnServe, waitReady, type ServeChild } from './child.js';
import { databaseUrl, decision, dropSchema, envFor, makeRequest, names, record, rowCounts, waitFor } from './helpers.js';
import type { RoutingRequest } from '../../../src/engine/types.js';

const n = names('faults');
const logFile = join(tmpdir(), `td-faults-${n.group}.log`);
const children: ServeChild[] = [];
let broker: OwnBroker | undefined;
let proxy: TcpProxy | undefined;

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await proxy?.close().catch(() => {});
  await broker?.dispose().catch(() => {});
  await dropSchema(n.schema);
});

const CANDIDATES = 5;

/** Produces waves of requests until stopped; a wave that fails is sent again until acknowledged. */
function feed(kafka: Kafka): { sent: RoutingRequest[]; stop(): Promise<void>; errors: number } {
  const sent: RoutingRequest[] = [];
  let stopping = false;
  const state = { errors: 0 };
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const done = (async () => {
    await producer.connect();
    for (let wave = 0; !stopping; wave++) {
      const requests = Array.from({ length: 30 }, (_, i) => makeRequest(`f-${wave}-${i}`, CANDIDATES, 16));
      for (;;) {
        try {
          await producer.send({ topic: n.requests, acks: -1, messages: requests.map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')) });
          break;
        } catch {
          state.errors++;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      sent.push(...requests);
      await new Promise((r) => setTimeout(r, 400));
    }
    await producer.disconnect();
  })();
  return {
    sent,
    get errors() {
      return state.errors;
    },
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

describe('two at-least-once instances through a SIGKILL, a Postgres cut and a broker restart', () => {
  it('decides every candidate once in Postgres, publishes every decision, puts nothing on the DLQ', async () => {
    broker = await ownBroker('td-faults');
    await broker.up();
    const target = new URL(databaseUrl());
    proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
    await proxy.start();
    const via = new URL(databaseUrl());
    via.hostname = '127.0.0.1';
    via.port = String(proxy.port);
    const env = envFor(n, { KAFKA_BROKERS: broker.brokers, DATABASE_URL: via.toString(), TD_DRAIN_TIMEOUT_MS: '10000' });

    const start = async () => {
      const c = await spawnServe(env, logFile, { dist: true });
      children.push(c);
      await waitReady(c, logFile, 120_000);
      return c;
    };
    let a = await start();
    const b = await start();
    const kafka = broker.kafka();
    const traffic = feed(kafka);
    const rows = async () => (await rowCounts(n.schema)).rows;

    // 1. SIGKILL one instance mid-stream and start it again.
    await waitFor(async () => (await rows()) >= 1000, 90_000, 'progress before the kill');
    a.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    a = await start();
    const afterKill = await rows();

    // 2. Postgres unreachable for 20 s.
    await waitFor(async () => (await rows()) >= afterKill + 500, 90_000, 'progress before the Postgres cut');
    await proxy.refuse();
    await new Promise((r) => setTimeout(r, 20_000));
    await proxy.restore();
    const afterCut = await rows();

    // 3. The broker stops and starts again.
    await waitFor(async () => (await rows()) >= afterCut + 500, 120_000, 'progress before the broker restart');
    await broker.down();
    await broker.up();
    const afterRestart = await rows();
    await waitFor(async () => (await rows()) >= afterRestart + 500, 180_000, 'progress after the broker restart');
    await traffic.stop();

    const total = traffic.sent.length * CANDIDATES;
    await waitFor(async () => (await rows()) >= total, 180_000, `all ${total} rows`);
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: traffic.sent.length });

    // Every decision on Kafka (at least once), nothing on the DLQ.
    const seen = new Set<string>();
    const consumer = kafka.consumer({ groupId: `${n.group}-check`, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topics: [n.lightweight, n.heavyweight], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(`${message.key}/${decision(message).candidate_id}`);
      },
    });
    try {
      await waitFor(() => seen.size >= total, 120_000, `all ${total} decisions on Kafka`);
    } finally {
      await consumer.disconnect();
    }
    for (const r of traffic.sent) for (const c of r.candidates) expect(seen.has(`${r.request_id}/${c.id}`)).toBe(true);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const dlq = await admin.fetchTopicOffsets(n.dlq);
      expect(dlq.reduce((s, p) => s + Number(p.high), 0)).toBe(0);
    } finally {
      await admin.disconnect();
    }

    // Both instances lived through it all and drain cleanly.
    for (const c of [a, b]) c.kill('SIGTERM');
    expect(await a.exited).toEqual({ code: 0, signal: null });
    expect(await b.exited).toEqual({ code: 0, signal: null });
  }, 900_000);
});
