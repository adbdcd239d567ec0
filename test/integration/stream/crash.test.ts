// The real `serve` process: SIGKILL mid-stream loses nothing (redelivery + idempotent log, so
// no duplicate row), and SIGTERM drains, commits and exits 0 within a bounded time.
import { describe, expect, it } from 'vitest';
import { serveChildren } from './child.js';
import {
  collect,
  decision,
  makeRequest,
  produce,
  query,
  record,
  rowCounts,
  testKafka,
  waitFor,
} from './helpers.js';

const children = serveChildren('crash');
const { n } = children;

describe('serve as a process', () => {
  it('SIGKILL mid-stream, restart: every request decided, no duplicate row; then SIGTERM drains and exits 0', async () => {
    const env = { TD_DRAIN_TIMEOUT_MS: '10000', TD_LOG_LEVEL: 'info' };
    const first = await children.start(env);

    const requests = Array.from({ length: 600 }, (_, i) => makeRequest(`k-${i}`, 4, 16));
    const total = requests.length * 4;
    // Produced in waves so the kill lands while records are still arriving and being decided.
    const producing = (async () => {
      for (let i = 0; i < requests.length; i += 100) {
        await produce(n.requests, requests.slice(i, i + 100).map((r, j) => record(r, j % 2 ? 'json' : 'protobuf')));
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    await waitFor(async () => (await rowCounts(n.schema).catch(() => ({ rows: 0 }))).rows >= 400, 45_000, 'some progress before the kill');
    first.kill('SIGKILL');
    const killed = await first.exited;
    expect(killed.signal).toBe('SIGKILL');
    const rowsAtKill = (await rowCounts(n.schema)).rows;
    expect(rowsAtKill).toBeLessThan(total); // it really died mid-stream
    await producing;

    const second = await children.start(env);
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 60_000, 'every row after the restart');
    // Exactly one row per decision: the replayed requests inserted nothing twice.
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });

    // Every decision reached Kafka (at least once: the replay may repeat some records).
    const out = await collect([n.lightweight, n.heavyweight]);
    try {
      await out.until((rs) => new Set(rs.map((r) => `${r.message.key}/${decision(r.message).candidate_id}`)).size >= total, 45_000, 'all decisions on Kafka');
    } finally {
      await out.stop();
    }

    // SIGTERM mid-stream: drain, commit, exit 0 within the drain timeout (plus slack) — and no
    // offset is ever committed ahead of its rows: every request below a committed offset is in
    // Postgres.
    const more = Array.from({ length: 400 }, (_, i) => makeRequest(`t-${i}`, 4, 16));
    const producingMore = produce(n.requests, more.map((r) => record(r, 'protobuf')));
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total + 200, 45_000, 'progress before SIGTERM');
    const t0 = Date.now();
    second.kill('SIGTERM');
    const stopped = await second.exited;
    expect(stopped).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(15_000);
    await producingMore;

    const inputs = await collect([n.requests]);
    const admin = testKafka().admin();
    await admin.connect();
    try {
      await inputs.until((rs) => rs.length >= requests.length + more.length, 30_000, 'the request records');
      const [committed] = await admin.fetchOffsets({ groupId: n.group, topics: [n.requests] });
      const logged = new Set(
        (await query<{ request_id: string }>(`SELECT DISTINCT request_id FROM "${n.schema}".routing_decisions`)).map((r) => r.request_id),
      );
      let below = 0;
      for (const { partition, message } of inputs.records) {
        const c = BigInt(committed!.partitions.find((p) => p.partition === partition)!.offset);
        if (BigInt(message.offset) < c) {
          below++;
          expect(logged.has(message.key!.toString()), `${message.key} at ${partition}/${message.offset} committed but not logged`).toBe(true);
        }
      }
      expect(below).toBeGreaterThan(requests.length); // the drain committed what it finished
    } finally {
      await admin.disconnect();
      await inputs.stop();
    }
  });
});
