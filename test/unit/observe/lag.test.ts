// LagSampler against a fake admin client: committed offsets against the partitions' ends, a
// partition without a commit counted from its low mark, the gauge set, lag of owned partitions.
import { describe, expect, it } from 'vitest';
import type { Admin } from 'kafkajs';
import { createLogger } from '../../../src/observe/logger.js';
import { LagSampler } from '../../../src/observe/lag.js';
import { createMetrics } from '../../../src/observe/metrics.js';

function fakeAdmin(fail = false): Admin {
  return {
    fetchOffsets: async () => {
      if (fail) throw new Error('broker gone');
      return [{ topic: 'req', partitions: [{ partition: 0, offset: '90' }, { partition: 1, offset: '-1' }] }];
    },
    fetchTopicOffsets: async () => [
      { partition: 0, offset: '100', high: '100', low: '0' },
      { partition: 1, offset: '40', high: '40', low: '10' },
      { partition: 2, offset: '5', high: '5', low: '5' },
    ],
  } as unknown as Admin;
}

describe('LagSampler', () => {
  it('samples lag per partition, sets the gauge and sums owned partitions', async () => {
    const metrics = createMetrics();
    const lines: string[] = [];
    const s = new LagSampler({ admin: () => fakeAdmin(), groupId: 'g', topic: 'req', gauge: metrics.consumerLag, logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }), intervalMs: 60_000 });
    expect(s.latest).toBeUndefined();
    expect(s.lagOf([0, 1])).toBeUndefined();
    await s.sample();
    expect(s.latest?.total).toBe(10 + 30 + 0);
    expect(s.lagOf([1])).toBe(30);
    expect(s.lagOf([0, 1, 7])).toBe(40);
    expect(s.lagOf([])).toBe(0);
    const gauge = await metrics.consumerLag.get();
    expect(gauge.values.find((v) => v.labels.partition === '1')?.value).toBe(30);
  });

  it('keeps the last sample when one fails, and samples nothing once stopped or without an admin', async () => {
    let admin: Admin | undefined;
    const lines: string[] = [];
    const s = new LagSampler({ admin: () => admin, groupId: 'g', topic: 'req', gauge: createMetrics().consumerLag, logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }), intervalMs: 60_000 });
    await s.sample();
    expect(s.latest).toBeUndefined();
    admin = fakeAdmin();
    await s.sample();
    const first = s.latest;
    admin = fakeAdmin(true);
    await s.sample();
    expect(s.latest).toBe(first);
    expect(lines.join('\n')).toMatch(/consumer lag sample failed/);
    s.start();
    s.stop();
    admin = fakeAdmin();
    await s.sample();
    expect(s.latest).toBe(first);
  });
});
