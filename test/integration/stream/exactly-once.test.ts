// TD_EXACTLY_ONCE=true: consume-transform-produce in Kafka transactions. Even across a SIGKILL
// mid-stream and a restart, a read_committed consumer sees every decision (and every DLQ
// record) exactly once, and Postgres has exactly one row per decision. The judge is librdkafka
// (./judge.ts), not kafkajs.
import { describe, expect, it } from 'vitest';
import { serveChildren } from './child.js';
import { duplicates, readCommitted } from './judge.js';
import {
  kafkaBrokers,
  makeRequest,
  produceWaves,
  rowCounts,
  uniqueName,
  waitFor,
} from './helpers.js';

const children = serveChildren('eos');
const { n } = children;

describe('exactly-once mode', () => {
  it('a read_committed consumer sees each decision exactly once, across a SIGKILL and a restart', async () => {
    const env = { TD_EXACTLY_ONCE: 'true', TD_TRANSACTIONAL_ID: uniqueName('eos-tx') };
    const first = await children.start(env);

    const requests = Array.from({ length: 400 }, (_, i) => makeRequest(`e-${i}`, 3, 16));
    const total = requests.length * 3;
    const producing = produceWaves(n.requests, requests);
    const badKeys = Array.from({ length: Math.ceil(requests.length / 50) }, (_, i) => `bad-${i}`);
    await waitFor(async () => (await rowCounts(n.schema).catch(() => ({ rows: 0 }))).rows >= 300, 45_000, 'progress before the kill');
    first.kill('SIGKILL');
    await first.exited;
    const rowsAtKill = (await rowCounts(n.schema)).rows;
    expect(rowsAtKill).toBeLessThan(total);
    await producing;

    const second = await children.start(env);
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 60_000, 'every row');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });

    const committed = await readCommitted(kafkaBrokers(), [n.lightweight, n.heavyweight, n.dlq], total + badKeys.length);
    const decisions = committed.filter((r) => r.topic !== n.dlq);
    const { keys, duplicated } = duplicates(decisions);
    expect(duplicated).toBe(0); // exactly once: no duplicates
    expect(new Set(keys).size).toBe(total);
    const dlq = committed.filter((r) => r.topic === n.dlq);
    expect(dlq.map((r) => r.key!).sort()).toEqual([...badKeys].sort());

    second.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
  });
});
