// `serve` (the built command, as an operator runs it) started while a dependency is down: it
// waits, not ready (/readyz 503 saying why, gRPC health NOT_SERVING as Python grpcio sees it),
// logs one line per window of attempts, and serves once the dependency answers, losing
// nothing; it gives up with exit 1 and the reason only after TD_STARTUP_TIMEOUT_MS, and a bad
// TD_STARTUP_TIMEOUT_MS exits 2 at once. A consumer kafkajs will not restart ends serve with
// exit 1 and the reason instead of leaving it alive and idle.
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { ownBroker, type OwnBroker } from '../../support/own-broker.js';
import { proxyToPostgres, type TcpProxy } from '../store/tcp-proxy.js';
import { spawnServe, waitReady, type ServeChild } from './child.js';
import { grpcHealth, grpcioMissing } from './grpc-health.js';
import { createTopics, testKafka } from '../../support/infra.js';
import {
  collect,
  databaseUrl,
  decision,
  deleteTopics,
  dropSchema,
  envFor,
  makeRequest,
  names,
  produce,
  record,
  rowCounts,
  waitFor,
  type Names,
} from './helpers.js';

const why = grpcioMissing();
if (why) process.stderr.write(`startup test: gRPC health not checked with Python: ${why}\n`);

const children: ServeChild[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const f of cleanups.reverse()) await f().catch(() => {});
});

function logFileFor(n: Names): string {
  return join(tmpdir(), `td-startup-${n.group}.log`);
}

async function readiness(child: ServeChild): Promise<{ status: number; checks: Record<string, unknown> }> {
  try {
    const r = await fetch(`${child.httpUrl}/readyz`);
    return { status: r.status, checks: ((await r.json()) as { checks: Record<string, unknown> }).checks };
  } catch {
    return { status: 0, checks: {} };
  }
}

async function healthIs(child: ServeChild, want: string): Promise<boolean> {
  return why !== undefined || (await grpcHealth(child.grpcAddr)) === want;
}

/** A proxy to the test Postgres that starts out accepting and closing every connection. */
async function postgresDown(): Promise<{ proxy: TcpProxy; url: string }> {
  const down = await proxyToPostgres(databaseUrl());
  await down.proxy.slam();
  cleanups.push(() => down.proxy.close());
  return down;
}

function linesMatching(file: string, re: RegExp): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => re.test(l));
}

describe('serve started while a dependency is down', () => {
  it('Postgres accepting and dropping every connection: waits not ready, serves when it returns, loses nothing', async () => {
    const n = names('startup-pg');
    cleanups.push(() => dropSchema(n.schema), () => deleteTopics(n));
    const log = logFileFor(n);
    const { proxy, url } = await postgresDown();
    await createTopics([n.requests], 3);
    const requests = Array.from({ length: 300 }, (_, i) => makeRequest(`s-${i}`, 4, 16));
    const total = requests.length * 4;
    // Half waits on the topic before serve starts, half arrives during the outage.
    await produce(n.requests, requests.slice(0, 150).map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));

    const child = await spawnServe(envFor(n, { DATABASE_URL: url, TD_STARTUP_TIMEOUT_MS: '300000' }), log, { dist: true });
    children.push(child);
    const outageFrom = Date.now();
    await waitFor(async () => /waiting for Postgres at .*(Connection terminated|ECONNRESET)/.test(String((await readiness(child)).checks.postgres)), 60_000, '/readyz to say it waits for Postgres');
    expect((await readiness(child)).status).toBe(503);
    expect(await healthIs(child, 'NOT_SERVING')).toBe(true);
    await produce(n.requests, requests.slice(150).map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));

    // It keeps trying and stays alive through an outage longer than the old 30 s patience.
    let exited = false;
    void child.exited.then(() => (exited = true));
    await waitFor(() => Date.now() - outageFrom > 35_000, 60_000, 'the outage to last');
    expect(exited).toBe(false);
    const attempts = proxy.connections;
    expect(attempts).toBeGreaterThanOrEqual(5);
    expect((await readiness(child)).status).toBe(503);
    expect(await rowCounts(n.schema).catch(() => undefined)).toBeUndefined(); // nothing migrated yet

    await proxy.restore();
    const outageMs = Date.now() - outageFrom;
    await waitReady(child, log, 120_000);
    await waitFor(() => healthIs(child, 'SERVING'), 30_000, 'gRPC health SERVING');
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 90_000, 'every row');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });
    const out = await collect([n.lightweight, n.heavyweight]);
    try {
      await out.until((rs) => new Set(rs.map((r) => `${r.message.key}/${decision(r.message).candidate_id}`)).size >= total, 60_000, 'every decision on Kafka');
    } finally {
      await out.stop();
    }

    // One log line per window of attempts (15 s), not one per attempt.
    const waits = linesMatching(log, /Postgres at .* is not answering; start-up waits for it/);
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(waits.length).toBeLessThanOrEqual(Math.ceil(outageMs / 15_000) + 1);
    expect(waits.length).toBeLessThan(attempts);
    expect(linesMatching(log, /Postgres at .* answered; start-up continues/)).toHaveLength(1);

    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
  }, 300_000);

  it('gives up with exit 1 and the reason after TD_STARTUP_TIMEOUT_MS; a bad TD_STARTUP_TIMEOUT_MS exits 2 at once', async () => {
    const n = names('startup-to');
    cleanups.push(() => dropSchema(n.schema), () => deleteTopics(n));
    const log = logFileFor(n);
    const { url } = await postgresDown();

    const t0 = Date.now();
    const child = await spawnServe(envFor(n, { DATABASE_URL: url, TD_STARTUP_TIMEOUT_MS: '6000' }), log, { dist: true });
    children.push(child);
    expect(await child.exited).toEqual({ code: 1, signal: null });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(6000);
    expect(took).toBeLessThan(45_000);
    const reason = linesMatching(log, /^tiny-dancer serve: /);
    expect(reason).toHaveLength(1);
    expect(reason[0]).toMatch(/Postgres at .* did not answer within TD_STARTUP_TIMEOUT_MS=6000 ms .*(Connection terminated|ECONNRESET)/); // the proxy closed the connection

    const badLog = `${log}.bad`;
    const bad = await spawnServe(envFor(n, { DATABASE_URL: url, TD_STARTUP_TIMEOUT_MS: '5 minutes' }), badLog, { dist: true });
    children.push(bad);
    expect(await bad.exited).toEqual({ code: 2, signal: null });
    const text = readFileSync(badLog, 'utf8').trim().split('\n');
    expect(text).toHaveLength(1);
    expect(text[0]).toMatch(/TD_STARTUP_TIMEOUT_MS="5 minutes" is invalid/);
  }, 120_000);

  it('a broker that appears after serve started: waits not ready, then serves', async () => {
    const n = names('startup-kafka');
    const broker: OwnBroker = await ownBroker('td-startup');
    cleanups.push(() => broker.dispose(), () => dropSchema(n.schema));
    const log = logFileFor(n);
    const child = await spawnServe(envFor(n, { KAFKA_BROKERS: broker.brokers, TD_STARTUP_TIMEOUT_MS: '300000' }), log, { dist: true });
    children.push(child);
    await waitFor(async () => /waiting for the Kafka broker at .*ECONNREFUSED/.test(String((await readiness(child)).checks.kafka)), 60_000, '/readyz to say it waits for the broker');
    expect(await healthIs(child, 'NOT_SERVING')).toBe(true);

    await broker.up();
    await waitReady(child, log, 180_000);
    await waitFor(() => healthIs(child, 'SERVING'), 30_000, 'gRPC health SERVING');
    const requests = Array.from({ length: 100 }, (_, i) => makeRequest(`k-${i}`, 3, 16));
    const producer = broker.kafka().producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      await producer.send({ topic: n.requests, acks: -1, messages: requests.map((r) => record(r, 'protobuf')) });
    } finally {
      await producer.disconnect();
    }
    await waitFor(async () => (await rowCounts(n.schema)).rows >= 300, 90_000, 'every row');
    expect(await rowCounts(n.schema)).toEqual({ rows: 300, distinct: 300, requests: 100 });
    expect(linesMatching(log, /the Kafka broker at .* answered; start-up continues/)).toHaveLength(1);
    expect(linesMatching(log, /kafka: .*Connection error/)).toEqual([]); // kafkajs's per-attempt errors stay out of the log

    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
  }, 360_000);

  it('a consumer crash kafkajs will not restart: serve exits 1 with the reason, not alive and idle', async () => {
    const n = names('startup-crash');
    cleanups.push(() => dropSchema(n.schema), () => deleteTopics(n));
    const log = logFileFor(n);
    await createTopics([n.requests], 3);
    // A member of the same group speaking another assignment protocol holds the group, so the
    // broker refuses serve's join with INCONSISTENT_GROUP_PROTOCOL: not retriable for kafkajs.
    const foreign: PartitionAssigner = () => ({
      name: 'td-foreign',
      version: 1,
      assign: async ({ members }) =>
        members.map((m) => ({ memberId: m.memberId, memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: {}, userData: Buffer.alloc(0) }) })),
      protocol: ({ topics }) => ({ name: 'td-foreign', metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) }),
    });
    const holder = testKafka().consumer({ groupId: n.group, partitionAssigners: [foreign], sessionTimeout: 30_000 });
    let joined = false;
    holder.on(holder.events.GROUP_JOIN, () => (joined = true));
    await holder.connect();
    cleanups.push(() => holder.disconnect());
    await holder.subscribe({ topics: [n.requests] });
    await holder.run({ eachMessage: async () => {} });
    await waitFor(() => joined, 30_000, 'the foreign member to hold the group');

    const child = await spawnServe(envFor(n), log, { dist: true });
    children.push(child);
    const exit = await Promise.race([child.exited, new Promise<'alive'>((r) => setTimeout(() => r('alive'), 90_000))]);
    expect(exit).toEqual({ code: 1, signal: null });
    const reason = linesMatching(log, /^tiny-dancer serve: /);
    expect(reason).toHaveLength(1);
    expect(reason[0]).toMatch(/the Kafka consumer stopped and will not restart: .*protocols are incompatible/);
  }, 150_000);
});
