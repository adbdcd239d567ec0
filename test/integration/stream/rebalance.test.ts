// Two instances in one consumer group share the request partitions; stopping one mid-stream
// hands its partitions to the other, and nothing is lost or logged twice.
import { afterAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/app.js';
import {
  collect,
  decision,
  deleteTopics,
  dropSchema,
  makeRequest,
  names,
  produce,
  record,
  rowCounts,
  startApp,
  testConfig,
  waitFor,
} from './helpers.js';

const n = names('rebal');
const apps: App[] = [];

afterAll(async () => {
  await Promise.all(apps.map((a) => a.stop({ timeoutMs: 5000 })));
  await dropSchema(n.schema);
  await deleteTopics(n);
});

const partitionsOf = (a: App) => Object.values(a.processorStatus()?.assignment ?? {}).flat().length;

describe('two instances, one group', () => {
  it('share the partitions, and a rebalance (one stops mid-stream) loses nothing', async () => {
    const config = testConfig(n, { requestPartitions: 6 });
    const a = await startApp(config);
    apps.push(a);
    const b = await startApp(config);
    apps.push(b);
    await waitFor(() => partitionsOf(a) === 3 && partitionsOf(b) === 3 && a.processorStatus()!.joined && b.processorStatus()!.joined, 30_000, 'a 3/3 split');
    const assigned = [...Object.values(a.processorStatus()!.assignment).flat(), ...Object.values(b.processorStatus()!.assignment).flat()].sort();
    expect(assigned).toEqual([0, 1, 2, 3, 4, 5]);

    const requests = Array.from({ length: 600 }, (_, i) => makeRequest(`rb-${i}`, 3, 16));
    const total = requests.length * 3;
    const producing = (async () => {
      for (let i = 0; i < requests.length; i += 50) {
        await produce(n.requests, requests.slice(i, i + 50).map((r, j) => record(r, j % 2 ? 'json' : 'protobuf')));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total / 4, 45_000, 'progress on both');
    expect(a.streamCounters()!.decided).toBeGreaterThan(0);
    expect(b.streamCounters()!.decided).toBeGreaterThan(0);

    // A leaves mid-stream: it drains its in-flight work, commits, and leaves the group.
    const stopped = await a.stop({ timeoutMs: 10_000 });
    expect(stopped.clean).toBe(true);
    await waitFor(() => partitionsOf(b) === 6, 30_000, 'B to take all six partitions');
    await producing;

    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 60_000, 'every row');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });
    // B took over from A's commits: A's clean drain committed everything it finished, so the
    // only records consumed twice are chunks B itself had in flight when the group rebalanced
    // (their commits belong to the old generation): at most TD_MAX_IN_FLIGHT of them.
    const consumed = a.streamCounters()!.consumed + b.streamCounters()!.consumed;
    expect(consumed).toBeGreaterThanOrEqual(requests.length);
    expect(consumed).toBeLessThanOrEqual(requests.length + config.maxInFlight);

    const out = await collect([n.lightweight, n.heavyweight]);
    try {
      await out.until((rs) => new Set(rs.map((r) => `${r.message.key}/${decision(r.message).candidate_id}`)).size >= total, 45_000, 'every decision on Kafka');
    } finally {
      await out.stop();
    }
    expect((await fetch(`${b.httpUrl}/readyz`)).status).toBe(200);
  });
});
