// The service's partitioner must put every record exactly where kafkajs's default (Java's
// murmur2 partitioner) puts it — consumers and other producers rely on key → partition — while
// hashing a run of records with one key only once.
import fc from 'fast-check';
import kafkajs, { type PartitionerArgs } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { partitioner } from '../../../src/stream/kafka.js';

const { Partitioners } = kafkajs;

function metadata(count: number, down: number[] = []): PartitionerArgs['partitionMetadata'] {
  return Array.from({ length: count }, (_, p) => ({ partitionId: p, leader: down.includes(p) ? -1 : 0, replicas: [0], isr: [0], partitionErrorCode: 0 }));
}

describe('partitioner', () => {
  it('agrees with kafkajs DefaultPartitioner on every keyed record, repeated keys and counts included', () => {
    const record = fc.record({
      key: fc.oneof(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a))),
      repeat: fc.integer({ min: 1, max: 12 }),
      count: fc.constantFrom(1, 3, 6, 7, 12, 64),
      topic: fc.constantFrom('light', 'heavy'),
    });
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 40 }), (records) => {
        const ours = partitioner();
        const theirs = Partitioners.DefaultPartitioner();
        for (const r of records) {
          const partitionMetadata = metadata(r.count);
          for (let k = 0; k < r.repeat; k++) {
            const args = { topic: r.topic, partitionMetadata, message: { key: r.key, value: 'v' } };
            expect(ours(args)).toBe(theirs(args));
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('hashes a run of one key once', () => {
    let calls = 0;
    const counting = { key: 'request-1', value: 'v' } as { key: string; value: string };
    const spy = new Proxy(counting, { get: (t, p) => { if (p === 'key') calls++; return t[p as keyof typeof t]; } });
    const ours = partitioner();
    const partitionMetadata = metadata(6);
    const first = ours({ topic: 't', partitionMetadata, message: spy });
    const readsForOne = calls;
    for (let k = 0; k < 9; k++) expect(ours({ topic: 't', partitionMetadata, message: { key: 'request-1', value: 'v' } })).toBe(first);
    // The default partitioner reads the key twice per record (test, hash); the runs above did
    // not go through it (no extra reads of the proxied key, and the same answer).
    expect(readsForOne).toBeGreaterThan(0);
    expect(calls).toBe(readsForOne);
  });

  it('leaves explicit partitions and keyless records to the default', () => {
    const ours = partitioner();
    const partitionMetadata = metadata(6, [2]);
    expect(ours({ topic: 't', partitionMetadata, message: { key: 'k', value: 'v', partition: 4 } })).toBe(4);
    const seen = new Set<number>();
    for (let k = 0; k < 50; k++) seen.add(ours({ topic: 't', partitionMetadata, message: { value: 'v' } }));
    expect(seen.has(2)).toBe(false); // round robin over partitions with a leader, as the default does
    expect(seen.size).toBe(5);
  });
});
