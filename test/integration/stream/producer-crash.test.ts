// The producer thread crashes mid-stream inside serve: the chunks it held are sent again by a new
// thread (the pack is intact), nothing is committed before that, and every candidate of every
// request is decided and logged exactly once in Postgres.
import { describe, expect, it } from 'vitest';
import { ProducerThread } from '../../../src/stream/send/thread.js';
import { decision, makeRequest, produce, record, rowCounts, serveFixture, testConfig } from './helpers.js';

describe('serve: the producer thread crashes mid-stream', () => {
  const threads: ProducerThread[] = [];
  const serve = serveFixture('pc', (n) => ({
    config: testConfig(n, { producerThread: true }),
    options: { processor: { chunkSize: 8, createProducerThread: (opts) => threads[threads.push(new ProducerThread(opts)) - 1]! } },
  }));
  const { n } = serve;

  it('loses nothing: every candidate decided, every row written once, the stream goes on', async () => {
    expect(threads).toHaveLength(1);
    const thread = threads[0]!;
    const requests = Array.from({ length: 240 }, (_, i) => makeRequest(`crash-${i}`, 4));
    const total = requests.length * 4;
    // Crash the thread repeatedly while the requests flow, so some crashes land on sends in flight.
    let kills = 0;
    let sawPending = false;
    const killer = setInterval(() => {
      if (thread.pending > 0) sawPending = true;
      kills++;
      void thread.kill();
    }, 40);
    try {
      for (let i = 0; i < requests.length; i += 40) {
        await produce(n.requests, requests.slice(i, i + 40).map((r) => record(r, i % 80 === 0 ? 'json' : 'protobuf')));
        await new Promise((r) => setTimeout(r, 60));
      }
      await serve.out.until((rs) => new Set(rs.map((g) => `${g.message.key}/${decision(g.message).candidate_id}`)).size >= total, 60_000, `${total} distinct decisions`);
    } finally {
      clearInterval(killer);
    }
    expect(kills).toBeGreaterThan(5);
    expect(sawPending).toBe(true);
    // Some crashes hit sends in flight: the processor retried them (produce stage).
    const retried = (await serve.app.metrics.errors.get()).values.find((v) => v.labels.stage === 'produce')?.value ?? 0;
    expect(retried).toBeGreaterThan(0);
    const exits = (await serve.app.metrics.producerThreadExits.get()).values[0]?.value ?? 0;
    expect(exits).toBeGreaterThan(0);
    expect(await (await fetch(`${serve.app.httpUrl}/metrics`)).text()).toMatch(/^td_producer_thread_exits_total [1-9]/m);
    // At least once on Kafka (a crash after the broker's ack re-sends the chunk); exactly once in Postgres.
    const distinct = new Set(serve.out.records.map((g) => `${g.message.key}/${decision(g.message).candidate_id}`));
    for (const r of requests) for (const c of r.candidates) expect(distinct.has(`${r.request_id}/${c.id}`)).toBe(true);
    await expect.poll(async () => (await rowCounts(n.schema)).rows, { timeout: 20_000 }).toBe(total);
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: requests.length });
    // The service is still healthy and everything got committed.
    expect(serve.app.readiness().ready).toBe(true);
    await expect.poll(() => serve.app.processorStatus()?.inFlight, { timeout: 20_000 }).toBe(0);
  });
});
