// Hostile input of every kind ends on the DLQ with the original bytes and a reason; the valid
// requests around it are decided; the service stays ready.
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/app.js';
import { encodeRequest } from '../../../src/wire/index.js';
import {
  collect,
  deleteTopics,
  dropSchema,
  header,
  makeRequest,
  names,
  produce,
  record,
  rowCounts,
  startApp,
  testConfig,
  waitFor,
  type Collector,
  type Outgoing,
} from './helpers.js';


const JSON_CT = { 'content-type': 'application/json' };
const PB_CT = { 'content-type': 'application/x-protobuf' };

function bad(key: string, value: Buffer | null, headers: Outgoing['headers'] = JSON_CT): Outgoing {
  return { key, value, headers };
}

// Both decoding paths: on the consuming thread, and on the pool's workers (TD_DECODE_IN_WORKERS).
describe.each([
  { where: 'the consuming thread', decodeInWorkers: false },
  { where: 'the worker threads', decodeInWorkers: true },
])('bad input → DLQ, the stream goes on (decoded on $where)', ({ decodeInWorkers }) => {
  const n = names('dlq');
  let app: App;
  let dlq: Collector;
  let decisions: Collector;
  let requests: Collector;

  beforeAll(async () => {
    app = await startApp(testConfig(n, { maxMessageBytes: 64 * 1024, decodeInWorkers }));
    dlq = await collect([n.dlq]);
    decisions = await collect([n.lightweight, n.heavyweight]);
    requests = await collect([n.requests]);
  });

  afterAll(async () => {
    await Promise.all([dlq?.stop(), decisions?.stop(), requests?.stop()]);
    await app?.stop({ timeoutMs: 5000 });
    await dropSchema(n.schema);
    await deleteTopics(n);
  });

  it('dead-letters every class of bad record with the docs/contracts.md §2 headers; decides the valid ones beside them', async () => {
    const good = makeRequest('template', 3, 8);
    const json = (v: unknown) => Buffer.from(JSON.stringify(v));
    const nanPb = makeRequest('nan-pb', 2, 4);
    (nanPb.query_embedding as number[])[2] = Number.NaN;
    const unknownWire = protobuf.Writer.create().uint32((1 << 3) | 3).finish(); // group start: unsupported
    const cases: { record: Outgoing; reason: RegExp }[] = [
      { record: bad('not-utf8', Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), reason: /not valid UTF-8/ },
      { record: bad('not-json', Buffer.from('{"request_id": "x", "query_embedding": [1,')), reason: /^not JSON/ },
      { record: bad('not-object', json([1, 2, 3])), reason: /not a JSON object: the request is an array/ },
      { record: bad('empty', null), reason: /empty message/ },
      { record: bad('no-id', json({ ...good, request_id: undefined })), reason: /^request_id: is required/ },
      { record: bad('long-id', json({ ...good, request_id: 'x'.repeat(300) })), reason: /request_id: is 300 bytes, the limit is 256/ },
      { record: bad('no-query', json({ ...good, request_id: 'no-query', query_embedding: [] })), reason: /query_embedding: has 0 values/ },
      { record: bad('huge-dim', json({ ...good, request_id: 'huge-dim', query_embedding: new Array(4097).fill(0.5) })), reason: /query_embedding: has 4097 values/ },
      {
        record: bad('dim-mismatch', json({ ...good, request_id: 'dim-mismatch', candidates: [{ ...good.candidates[0], embedding: [1, 2, 3] }] })),
        reason: /candidates\[0\] \(id "template-c0"\): embedding has 3 values, query has 8/,
      },
      { record: bad('non-finite', encodeRequest(nanPb, 'protobuf'), PB_CT), reason: /query_embedding: embedding\[2\] is NaN/ },
      {
        record: bad('dup-ids', json({ ...good, request_id: 'dup-ids', candidates: [good.candidates[0], good.candidates[0]] })),
        reason: /duplicate id/,
      },
      {
        record: bad('too-many', json({ request_id: 'too-many', query_embedding: [1], candidates: Array.from({ length: 1001 }, (_, i) => ({ id: `c${i}`, embedding: [1] })) })),
        reason: /candidates: has 1001 entries/,
      },
      { record: bad('no-candidates', json({ ...good, request_id: 'no-candidates', candidates: [] })), reason: /candidates: has 0 entries/ },
      { record: bad('bad-success', json({ ...good, request_id: 'bad-success', candidates: [{ ...good.candidates[0], success_rate: 3 }] })), reason: /success_rate must be in \[0, 1\]/ },
      { record: bad('bad-meta', json({ ...good, request_id: 'bad-meta', metadata: { a: 1 } })), reason: /metadata\["a"\] must be a string/ },
      { record: bad('garbage-pb', Buffer.from('this is not protobuf at all'), PB_CT), reason: /not a valid protobuf RoutingRequest/ },
      { record: bad('json-as-pb', encodeRequest(good, 'json'), PB_CT), reason: /not a valid protobuf RoutingRequest/ },
      { record: bad('pb-wire-type', Buffer.from(unknownWire), PB_CT), reason: /wire type 3/ },
      { record: bad('too-large', Buffer.alloc(70 * 1024, 0x20)), reason: /70 bytes|71680 bytes, the limit is 65536/ },
    ];
    const valid = Array.from({ length: 10 }, (_, i) => makeRequest(`ok-${i}`, 2, 8));
    // Interleave: each bad record sits between valid ones.
    const all: Outgoing[] = [];
    cases.forEach((c, i) => {
      const v = valid[i % valid.length]!;
      if (i < valid.length) all.push(record(v, i % 2 ? 'json' : 'protobuf'));
      all.push(c.record);
    });
    await produce(n.requests, all);

    await dlq.until((rs) => rs.length >= cases.length, 45_000, `${cases.length} DLQ records`);
    await decisions.until((rs) => rs.length >= valid.length * 2, 45_000, 'decisions of the valid requests');
    await requests.until((rs) => rs.length >= all.length, 20_000, 'the request records');
    const source = new Map(requests.records.map((r) => [r.message.key?.toString(), r]));

    expect(dlq.records).toHaveLength(cases.length);
    for (const c of cases) {
      const key = c.record.key as string;
      const got = dlq.records.find((r) => r.message.key?.toString() === key);
      expect(got, `DLQ record for ${key}`).toBeDefined();
      const m = got!.message;
      // The original bytes, byte for byte.
      if (c.record.value === null) expect(m.value).toBeNull();
      else expect(Buffer.compare(m.value!, c.record.value)).toBe(0);
      const reason = header(m, 'td-error')!;
      expect(reason, key).toMatch(c.reason);
      expect(reason).not.toMatch(/\n/);
      const src = source.get(key)!;
      expect(header(m, 'td-source-topic')).toBe(n.requests);
      expect(header(m, 'td-source-partition')).toBe(String(src.partition));
      expect(header(m, 'td-source-offset')).toBe(src.message.offset);
      // Original headers kept (content-type above all), so a fixed record can be replayed.
      expect(header(m, 'content-type')).toBe(String(c.record.headers['content-type']));
    }

    // The valid requests beside them were decided, and logged.
    const decided = new Set(decisions.records.map((r) => r.message.key!.toString()));
    for (const v of valid) expect(decided.has(v.request_id)).toBe(true);
    await waitFor(async () => (await rowCounts(n.schema)).rows >= valid.length * 2, 20_000, 'rows');
    expect(await rowCounts(n.schema)).toEqual({ rows: valid.length * 2, distinct: valid.length * 2, requests: valid.length });

    // Still ready; the counters say what happened.
    expect((await fetch(`${app.httpUrl}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${app.httpUrl}/metrics`)).text();
    const dlqTotal = [...metrics.matchAll(/^td_dlq_total\{reason="[a-z0-9_]+"\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    expect(dlqTotal).toBe(cases.length);
    expect(metrics).toMatch(/td_dlq_total\{reason="protobuf"\} 3/);
    expect(metrics).toMatch(/td_dlq_total\{reason="too_large"\} 1/);
    expect(app.streamCounters()?.dlq).toBe(cases.length);
  });
});
