// The producer thread on the real broker: packed records arrive byte for byte, on the
// partition kafkajs's default partitioner picks for their key; a crash fails the sends it held
// and the next send starts a new thread; a corrupt pack is refused and the thread goes on.
import kafkajs, { type Admin } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noKafkaSecurity } from '../../../src/config-security.js';
import { RecordPacker, ROUTE, type Route, type RouteTopics } from '../../../src/stream/records.js';
import { ProducerThread, ProducerThreadError } from '../../../src/stream/send/thread.js';
import { bufferLogger, collect, kafkaBrokers, testKafka, uniqueName } from './helpers.js';

const PARTITIONS = 4;

describe('ProducerThread (real broker)', () => {
  const id = uniqueName('pt');
  const topics = [`${id}.light`, `${id}.heavy`, `${id}.dlq`, `${id}.responses`] as const satisfies RouteTopics;
  let admin: Admin;
  const { logger, lines } = bufferLogger('info');
  let thread: ProducerThread;

  beforeAll(async () => {
    admin = testKafka().admin();
    await admin.connect();
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: PARTITIONS })), waitForLeaders: true });
    thread = new ProducerThread({ brokers: kafkaBrokers(), clientId: id, kafkaSecurity: noKafkaSecurity(), topics, logger });
    await thread.start();
  });

  afterAll(async () => {
    await thread?.close(5000);
    await admin.deleteTopics({ topics: [...topics] }).catch(() => {});
    await admin.disconnect();
  });

  /** n requests × k decisions each: a shared key and headers per request, as serve writes them. */
  function pack(tag: string, n: number, k: number): { pack: RecordPacker; expected: Map<string, { route: Route; key: string; value: string; model: string }> } {
    const p = new RecordPacker(256);
    const expected = new Map<string, { route: Route; key: string; value: string; model: string }>();
    for (let r = 0; r < n; r++) {
      const key = `${tag}-req-${r}`;
      const headers = { 'content-type': 'application/x-protobuf', 'td-model-version': `v${r % 3}`, 'td-correlation-id': `src/0/${r}` };
      for (let c = 0; c < k; c++) {
        const route = ((r + c) % 4) as Route;
        const value = `${key}/cand-${c}/${'x'.repeat(c * 7)}`;
        p.add(route, key, Buffer.from(value), headers);
        expected.set(value, { route, key, value, model: `v${r % 3}` });
      }
    }
    return { pack: p, expected };
  }

  it('delivers every packed record to its route, keyed, with its headers, on the default partitioner’s partition', async () => {
    const { pack: p, expected } = pack('a', 60, 10);
    const reader = await collect([...topics]);
    try {
      await thread.send(p.finish());
      await reader.until((rs) => rs.filter((r) => r.message.key?.toString().startsWith('a-')).length >= expected.size, 30_000, 'all records');
      const mine = reader.records.filter((r) => r.message.key?.toString().startsWith('a-'));
      expect(mine).toHaveLength(expected.size);
      const partitionOf = kafkajs.Partitioners.DefaultPartitioner();
      const partitionMetadata = Array.from({ length: PARTITIONS }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
      for (const got of mine) {
        const value = got.message.value!.toString();
        const want = expected.get(value);
        expect(want, value).toBeDefined();
        expect(got.topic).toBe(topics[want!.route]);
        expect(got.message.key!.toString()).toBe(want!.key);
        expect(got.message.headers!['td-model-version']!.toString()).toBe(want!.model);
        expect(got.message.headers!['content-type']!.toString()).toBe('application/x-protobuf');
        expect(got.partition).toBe(partitionOf({ topic: got.topic, partitionMetadata, message: { key: want!.key, value } }));
      }
    } finally {
      await reader.stop();
    }
  });

  it('a crash fails the sends the thread held (retriable); the next send starts a new thread and delivers', async () => {
    const { pack: first } = pack('b', 50, 10);
    const held = thread.send(first.finish());
    await thread.kill();
    const err = await held.then(
      () => undefined,
      (e: unknown) => e,
    );
    // Killed before the broker could answer: the send fails, retriably (the pack is intact, so
    // the processor sends the same bytes again).
    expect(err).toBeInstanceOf(ProducerThreadError);
    expect((err as ProducerThreadError).retriable).toBe(true);
    expect(String((err as Error).message)).toMatch(/exited/);
    const { pack: second, expected } = pack('c', 20, 5);
    const reader = await collect([...topics]);
    try {
      await thread.send(second.finish());
      await reader.until((rs) => rs.filter((r) => r.message.key?.toString().startsWith('c-')).length >= expected.size, 30_000, 'records after the restart');
    } finally {
      await reader.stop();
    }
    expect(lines.some((l) => l.includes('producer thread exited'))).toBe(true);
  });

  it('refuses a corrupt pack without retrying it, and goes on', async () => {
    const p = new RecordPacker();
    p.add(ROUTE.dlq, null, Buffer.from('v'), {});
    const { buffer, length } = p.finish();
    new Uint8Array(buffer)[0] = 9;
    const err = await thread.send({ buffer, length, records: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProducerThreadError);
    expect((err as ProducerThreadError).retriable).toBe(false);
    expect(String((err as Error).message)).toMatch(/route 9/);
    const { pack: next } = pack('d', 3, 2);
    await expect(thread.send(next.finish())).resolves.toBeUndefined();
  });

  it('after close(), sends are refused (not retriable)', async () => {
    const t = new ProducerThread({ brokers: kafkaBrokers(), clientId: `${id}-2`, kafkaSecurity: noKafkaSecurity(), topics, logger });
    await t.start();
    await t.close(5000);
    const { pack: p } = pack('e', 1, 1);
    await expect(t.send(p.finish())).rejects.toMatchObject({ retriable: false, message: expect.stringMatching(/closed/) });
  });
});
