// JSON and protobuf through the real broker and the real Postgres: every candidate decided on
// the right topic, keyed by request id, in the request's encoding with the right headers, and
// every decision a row.
import { describe, expect, it } from 'vitest';
import { decision, header, makeRequest, produce, query, record, rowCounts, serveFixture, testConfig, waitFor } from './helpers.js';

// The decisions are produced from the producer thread (the default) except in the last case,
// which keeps the consuming thread's own producer (TD_PRODUCER_THREAD=false) tested too.
describe.each([
  { where: 'the consuming thread', decodeInWorkers: false, producerThread: true },
  { where: 'the worker threads (auto, the default)', decodeInWorkers: 'auto' as const, producerThread: true },
  { where: 'the worker threads, produced from the consuming thread', decodeInWorkers: true, producerThread: false },
])('serve: request topic → decisions + Postgres rows (decoded on $where)', ({ decodeInWorkers, producerThread }) => {
  const serve = serveFixture('rt', (n) => ({ config: testConfig(n, { decodeInWorkers, producerThread }) }));
  const { n } = serve;

  it('decides JSON and protobuf requests, one record per candidate, in the request encoding', async () => {
    const json = Array.from({ length: 15 }, (_, i) => makeRequest(`json-${i}`, 3 + (i % 3)));
    const proto = Array.from({ length: 15 }, (_, i) => makeRequest(`proto-${i}`, 3 + (i % 4)));
    const expected = new Map<string, { encoding: 'json' | 'protobuf'; ids: string[] }>();
    for (const r of json) expected.set(r.request_id, { encoding: 'json', ids: r.candidates.map((c) => c.id) });
    for (const r of proto) expected.set(r.request_id, { encoding: 'protobuf', ids: r.candidates.map((c) => c.id) });
    const total = [...expected.values()].reduce((s, e) => s + e.ids.length, 0);

    await produce(n.requests, [...json.map((r) => record(r, 'json')), ...proto.map((r) => record(r, 'protobuf'))]);
    await serve.out.until((rs) => rs.length >= total, 45_000, `${total} decisions`);

    const seen = new Map<string, Set<string>>();
    for (const { topic, message } of serve.out.records) {
      const rid = message.key!.toString();
      const exp = expected.get(rid);
      expect(exp, `unexpected key ${rid}`).toBeDefined();
      const ct = header(message, 'content-type');
      expect(ct).toBe(exp!.encoding === 'json' ? 'application/json' : 'application/x-protobuf');
      const d = decision(message);
      expect(d.request_id).toBe(rid);
      expect(exp!.ids).toContain(d.candidate_id);
      expect(topic).toBe(d.use_lightweight ? n.lightweight : n.heavyweight);
      expect(header(message, 'td-model-version')).toBe(d.model_version);
      expect(d.model_version).toBe(serve.app.modelVersion);
      expect(header(message, 'td-correlation-id')).toMatch(new RegExp(`^${n.requests.replace(/\./g, '\\.')}/\\d+/\\d+$`));
      expect(['model', 'uncertain', 'below_threshold']).toContain(d.reason);
      expect(d.confidence).toBeGreaterThanOrEqual(0);
      expect(d.confidence).toBeLessThanOrEqual(1);
      expect(d.metadata.slot).toBe(d.candidate_id.split('-c').pop());
      const s = seen.get(rid) ?? new Set<string>();
      s.add(d.candidate_id);
      seen.set(rid, s);
    }
    // Every candidate of every request, each exactly once (no failure happened: no replay).
    expect(serve.out.records).toHaveLength(total);
    for (const [rid, exp] of expected) expect([...(seen.get(rid) ?? [])].sort()).toEqual([...exp.ids].sort());

    // Every decision is a row, and the rows say what the records say.
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 20_000, 'all rows');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: expected.size });
    const rows = await query<{ request_id: string; candidate_id: string; use_lightweight: boolean; reason: string; source_topic: string; features: number[] | null }>(
      `SELECT request_id, candidate_id, use_lightweight, reason, source_topic, features FROM "${n.schema}".routing_decisions`,
    );
    // The feature vectors retraining needs, whichever thread decoded the request (the pool
    // returns the ones it scored with): five finite values, the first a cosine.
    for (const row of rows) {
      expect(row.features).toHaveLength(5);
      expect(row.features!.every((x) => Number.isFinite(x))).toBe(true);
      expect(Math.abs(row.features![0]!)).toBeLessThanOrEqual(1);
    }
    const byKey = new Map(serve.out.records.map(({ message }) => {
      const d = decision(message);
      return [`${d.request_id}/${d.candidate_id}`, d];
    }));
    for (const row of rows) {
      const d = byKey.get(`${row.request_id}/${row.candidate_id}`)!;
      expect(row.use_lightweight).toBe(d.use_lightweight);
      expect(row.reason).toBe(d.reason);
      expect(row.source_topic).toBe(n.requests);
    }
  });

  it('is ready, and the metrics and stats show the traffic', async () => {
    const ready = await fetch(`${serve.app.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${serve.app.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/td_requests_total\{encoding="json",outcome="decided"\} 15/);
    expect(metrics).toMatch(/td_requests_total\{encoding="protobuf",outcome="decided"\} 15/);
    expect(metrics).toMatch(/td_model_info\{version="[^"]+"\} 1/);
    expect(metrics).toMatch(/td_end_to_end_seconds_count 30/);
    const stats = serve.app.control.stats();
    expect(stats.stream?.consumed).toBe(30);
    expect(stats.totals.requests).toBe(30);
    expect(stats.stream?.assignedPartitions).toBe(3);
    expect(stats.breaker.state).toBe('closed');
  });
});
