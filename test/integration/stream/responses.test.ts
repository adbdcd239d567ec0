// The responses topic (docs/contracts.md §12) against `serve` child processes on the real broker:
// kcat writes requests and reads back one ranked answer per request, whose top k are exactly the
// ranks of its decisions, every decision saying how many siblings it has; in exactly-once mode a
// read_committed consumer (librdkafka, ./judge.ts) sees every response once across a SIGKILL; and
// with the topic unset nothing is written there.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RoutingDecision, RoutingResponse } from '../../../src/wire/types.js';
import { decodeResponse } from '../../../src/wire/client.js';
import { encodingOf } from '../../../src/wire/headers.js';
import { serveChildren, startServe, type ServeChild } from './child.js';
import { readCommitted } from './judge.js';
import {
  deleteTopics,
  dropSchema,
  envFor,
  kafkaBrokers,
  makeRequest,
  names,
  produce,
  produceWaves,
  record,
  rowCounts,
  testKafka,
  uniqueName,
  waitFor,
} from './helpers.js';
import { kcatAvailable, kcatConsume, kcatProduce, type KcatRecord } from './kcat.js';

const dir = mkdtempSync(join(tmpdir(), 'td-responses-'));
const started: ServeChild[] = [];
const kcat = names('resp');
const off = names('respoff');

afterAll(async () => {
  for (const c of started) {
    c.kill('SIGTERM');
    await c.exited;
  }
  for (const n of [kcat, off]) {
    await dropSchema(n.schema);
    await deleteTopics(n);
  }
  rmSync(dir, { recursive: true, force: true });
});

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

/** kcat's %h ("a=1,b=2") as a map. */
function headerMap(h: string): Map<string, string> {
  return new Map(h.split(',').filter((p) => p.includes('=')).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
}

describe('the responses topic', () => {
  it('kcat reads one response per request: its top k are the ranks of its decisions; every decision counts its siblings', async (ctx) => {
    if (!(await kcatAvailable())) {
      process.stderr.write('responses kcat test skipped: kcat is not installed (apt-get install kcat)\n');
      ctx.skip();
    }
    const serve = await startServe(envFor(kcat, { TD_TOPIC_RESPONSES: kcat.responses, TD_RESPONSE_TOP_K: '5' }), join(dir, 'serve.log'));
    started.push(serve);
    const big = makeRequest('resp-100', 100, 16);
    const own = { ...makeRequest('resp-own-k', 12, 16), metadata: { domain: 'test', 'td-top-k': '3' } };
    const small = makeRequest('resp-2', 2, 16);
    await kcatProduce(kcat.requests, [big, own, small].map((r) => `${r.request_id}\t${JSON.stringify(r)}`), { 'content-type': 'application/json', traceparent: TRACEPARENT });
    await kcatProduce(kcat.requests, ['resp-bad\tnot json at all'], { 'content-type': 'application/json' });
    // A protobuf request gets a protobuf response (kcat cannot send its bytes through a line).
    const proto = makeRequest('resp-proto', 7, 16);
    await produce(kcat.requests, [record(proto, 'protobuf')]);

    const requests = [big, own, small, proto];
    const decisionsWanted = requests.reduce((s, r) => s + r.candidates.length, 0);
    let light: KcatRecord[] = [];
    let heavy: KcatRecord[] = [];
    let responses: KcatRecord[] = [];
    await waitFor(async () => {
      [light, heavy, responses] = await Promise.all([kcatConsume(kcat.lightweight), kcatConsume(kcat.heavyweight), kcatConsume(kcat.responses)]);
      return light.length + heavy.length >= decisionsWanted && responses.length >= requests.length;
    }, 90_000, 'every decision and response');
    // The DLQ record is the bad request's answer; it has no response.
    await waitFor(async () => (await kcatConsume(kcat.dlq)).length >= 1, 30_000, 'the DLQ record');
    await waitFor(async () => (await rowCounts(kcat.schema)).rows >= decisionsWanted, 30_000, 'the rows (the offsets are committed after them)');
    responses = await kcatConsume(kcat.responses);
    expect(responses.map((r) => r.key).sort()).toEqual(requests.map((r) => r.request_id).sort());

    // Decisions by request, JSON ones read as kcat printed them.
    const byRequest = new Map<string, RoutingDecision[]>();
    for (const rec of [...light, ...heavy]) {
      if (rec.key === proto.request_id) continue;
      const d = JSON.parse(rec.value) as RoutingDecision;
      byRequest.set(d.request_id, [...(byRequest.get(d.request_id) ?? []), d]);
    }
    for (const req of [big, own, small]) {
      const ds = byRequest.get(req.request_id)!;
      expect(ds).toHaveLength(req.candidates.length);
      const lightweight = ds.filter((d) => d.use_lightweight).length;
      for (const d of ds) {
        expect(d.candidate_count).toBe(req.candidates.length);
        expect(d.lightweight_count).toBe(lightweight);
      }
      const rec = responses.find((r) => r.key === req.request_id)!;
      const h = headerMap(rec.headers);
      expect(h.get('content-type')).toBe('application/json');
      expect(h.get('td-model-version')).toMatch(/^fastgrnn-/);
      expect(h.get('traceparent')).toBe(TRACEPARENT);
      const response = JSON.parse(rec.value) as RoutingResponse;
      expect(response).toMatchObject({ request_id: req.request_id, model_version: h.get('td-model-version'), policy: 'global', candidates_processed: req.candidates.length });
      const k = req === own ? 3 : Math.min(5, req.candidates.length);
      const ranked = [...ds].sort((a, b) => a.rank - b.rank).slice(0, k);
      expect(response.decisions.map((d) => [d.rank, d.candidate_id, d.confidence, d.use_lightweight])).toEqual(ranked.map((d) => [d.rank, d.candidate_id, d.confidence, d.use_lightweight]));
      expect(response.decisions.every((d) => d.candidate_count === req.candidates.length && d.lightweight_count === lightweight)).toBe(true);
    }
    // The protobuf request's response is protobuf, read from kcat's bytes.
    const pb = responses.find((r) => r.key === proto.request_id)!;
    expect(headerMap(pb.headers).get('content-type')).toBe('application/x-protobuf');
    const answer = decodeResponse(pb.bytes, 'protobuf');
    expect(answer).toMatchObject({ request_id: proto.request_id, candidates_processed: 7 });
    expect(answer.decisions.map((d) => d.rank)).toEqual([0, 1, 2, 3, 4]);
    expect(answer.decisions.every((d) => d.candidate_count === 7)).toBe(true);
  });

  it('unset: serve writes nothing to a responses topic', async () => {
    const admin = testKafka().admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic: off.responses, numPartitions: 1 }], waitForLeaders: true });
      const serve = await startServe(envFor(off), join(dir, 'serve-off.log'));
      started.push(serve);
      const reqs = Array.from({ length: 5 }, (_, i) => makeRequest(`off-${i}`, 4, 16));
      await produce(off.requests, reqs.map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));
      await waitFor(async () => (await rowCounts(off.schema)).rows >= 20, 60_000, 'every decision as a row');
      const offsets = await admin.fetchTopicOffsets(off.responses);
      expect(offsets.map((o) => o.high)).toEqual(['0']);
    } finally {
      await admin.disconnect();
    }
  });
});

const children = serveChildren('respeos');

describe('the responses topic, exactly-once', () => {
  it('a read_committed consumer sees every response exactly once, across a SIGKILL and a restart', async () => {
    const { n } = children;
    const env = { TD_EXACTLY_ONCE: 'true', TD_TRANSACTIONAL_ID: uniqueName('respeos-tx'), TD_TOPIC_RESPONSES: n.responses };
    const first = await children.start(env);
    const requests = Array.from({ length: 300 }, (_, i) => makeRequest(`re-${i}`, 3, 16));
    const total = requests.length * 3;
    // The second half goes out only after the kill, so the restart always has work left to
    // take over, however fast the first instance got through the first half.
    const half = requests.length / 2;
    const producing = produceWaves(n.requests, requests.slice(0, half));
    await waitFor(async () => (await rowCounts(n.schema).catch(() => ({ rows: 0 }))).rows >= 200, 45_000, 'progress before the kill');
    first.kill('SIGKILL');
    await first.exited;
    await producing;
    await produceWaves(n.requests, requests.slice(half));
    expect((await rowCounts(n.schema)).rows).toBeLessThan(total);

    const second = await children.start(env);
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 90_000, 'every row');

    const committed = await readCommitted(kafkaBrokers(), [n.responses], requests.length);
    const keys = committed.map((r) => r.key!);
    expect(keys.length - new Set(keys).size).toBe(0); // no response twice
    expect([...keys].sort()).toEqual(requests.map((r) => r.request_id).sort()); // every request once, no bad one
    for (const r of committed) {
      const response = decodeResponse(r.value!, encodingOf(r.contentType));
      expect(response.request_id).toBe(r.key);
      expect(response.decisions.map((d) => d.rank)).toEqual([0, 1, 2]);
      expect(response.decisions.every((d) => d.candidate_count === 3)).toBe(true);
    }

    second.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
  });
});
