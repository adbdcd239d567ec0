// Exactly-once against a zombie. Two `serve` processes (the built CLI) in one group, both with
// TD_EXACTLY_ONCE=true, get a burst of requests sent as fast as the client can, so both hold
// open transactions. One is frozen (SIGSTOP) while it holds them, until the group moves its
// partitions to the other, then resumed (SIGCONT): it wakes up believing it still owns them,
// with decisions ready to commit. A read_committed consumer from another library (librdkafka)
// must then see every decision exactly once, and Postgres must hold one row for each.
//
// The fencing under test is the per-partition transactional id: whoever takes a partition
// fences the previous owner's producer for it. TD_ZOMBIE_PER_INSTANCE_IDS=1 gives each instance
// an id prefix of its own instead (fencing per instance, the way that does not fence a zombie),
// to see the test fail.
import { describe, expect, it } from 'vitest';
import { AssignerProtocol } from 'kafkajs';
import { SERVE_BUILT, serveChildren } from './child.js';
import { duplicates, readCommitted } from './judge.js';
import { kafkaBrokers, makeRequest, record, rowCounts, testKafka, waitFor, withProducer } from './helpers.js';

const children = serveChildren('zombie');
const { n } = children;
const perInstance = process.env.TD_ZOMBIE_PER_INSTANCE_IDS === '1';

/** Members of the group and the partitions each holds, once the group is stable. */
async function members(): Promise<number[][] | undefined> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([n.group]);
    const g = groups[0];
    if (!g || g.state !== 'Stable') return undefined;
    return g.members.map((m) => AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment[n.requests] ?? []);
  } finally {
    await admin.disconnect();
  }
}

describe('exactly-once with a zombie', () => {
  it('a frozen instance that held open transactions adds no duplicate once it wakes up', async () => {
    const env = (name: string) => ({
      TD_EXACTLY_ONCE: 'true',
      TD_REQUEST_PARTITIONS: '6',
      TD_WORKERS: '1',
      ...(perInstance ? { TD_TRANSACTIONAL_ID: `${n.group}-${name}` } : {}),
    });
    const a = await children.start(env('a'), SERVE_BUILT);
    const b = await children.start(env('b'), SERVE_BUILT);
    await waitFor(async () => {
      const ms = await members().catch(() => undefined);
      return ms?.length === 2 && ms.every((ps) => ps.length > 0);
    }, 60_000, 'both instances holding partitions');

    const CANDIDATES = 5;
    const requests = Array.from({ length: 4000 }, (_, i) => makeRequest(`z-${i}`, CANDIDATES, 16));
    const total = requests.length * CANDIDATES;
    // As fast as the client can: big sends, no pause, so both instances hold a backlog.
    await withProducer(async (p) => {
      for (let i = 0; i < requests.length; i += 1000) {
        await p.send({ topic: n.requests, acks: -1, messages: requests.slice(i, i + 1000).map((r, j) => record(r, j % 3 ? 'protobuf' : 'json')) });
      }
    });
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total * 0.15, 60_000, 'both at work');
    a.kill('SIGSTOP');
    const rowsAtFreeze = (await rowCounts(n.schema)).rows;
    expect(rowsAtFreeze, 'frozen while it still had work').toBeLessThan(total * 0.8);
    try {
      await waitFor(async () => (await members().catch(() => undefined))?.length === 1, 60_000, 'the frozen instance leaving the group');
      // Let the new owner take the frozen instance's partitions up (and commit some of them).
      const rowsAtMove = (await rowCounts(n.schema)).rows;
      await waitFor(async () => (await rowCounts(n.schema)).rows > rowsAtMove, 60_000, 'progress after the move');
    } finally {
      a.kill('SIGCONT');
    }

    await waitFor(async () => (await rowCounts(n.schema)).distinct >= total, 120_000, 'a row for every decision');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });

    const committed = await readCommitted(kafkaBrokers(), [n.lightweight, n.heavyweight], total, { settleMs: 5000, timeoutMs: 90_000 });
    const { keys, duplicated } = duplicates(committed);
    expect(duplicated, 'decisions seen more than once by read_committed').toBe(0);
    expect(new Set(keys).size).toBe(total);

    a.kill('SIGTERM');
    b.kill('SIGTERM');
    expect(await a.exited).toEqual({ code: 0, signal: null });
    expect(await b.exited).toEqual({ code: 0, signal: null });
  }, 300_000);
});
