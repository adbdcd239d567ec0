// The chunk stage on its own: outcomes in, records, rows and counts out. No broker, no database.
import { describe, expect, it } from 'vitest';
import { FEATURE_COUNT } from '../../../src/engine/features.js';
import type { RoutingDecision, RoutingResponse } from '../../../src/wire/types.js';
import { buildChunk, type ChunkMessage, type Outcome, type RejectKind } from '../../../src/stream/chunk.js';
import { decodeDecision, decodeResponse } from '../../../src/wire/client.js';
import { DecodeError } from '../../../src/wire/errors.js';
import { DLQ_HEADERS } from '../../../src/stream/dlq.js';
import { MessageLists, RecordPacker, ROUTE, unpackRecords } from '../../../src/stream/records.js';

const TOPICS = ['light', 'heavy', 'dlq'] as const;

function message(offset: number, headers: ChunkMessage['headers'] = {}): ChunkMessage {
  return { offset: String(offset), key: Buffer.from(`k${offset}`), value: Buffer.from(`v${offset}`), headers, timestamp: String(1_000_000 + offset) };
}

function response(requestId: string, lightweight: boolean[], withFeatures = false): RoutingResponse {
  const decisions: RoutingDecision[] = lightweight.map((lw, rank) => ({
    request_id: requestId,
    candidate_id: `${requestId}-c${rank}`,
    confidence: lw ? 0.9 : 0.2,
    uncertainty: 0.1,
    use_lightweight: lw,
    rank,
    model_version: 'm1',
    reason: lw ? 'model' : 'below_threshold',
    metadata: {},
    inference_time_us: 5,
  }));
  const r: RoutingResponse = { decisions, inference_time_us: 5, feature_time_us: 1, candidates_processed: decisions.length };
  if (withFeatures) r.features = new Float32Array(decisions.length * FEATURE_COUNT).map((_, i) => i);
  return r;
}

function decided(offset: number, lightweight: boolean[], opts: { fallback?: boolean; features?: boolean; correlation?: string } = {}): Outcome {
  const headers = opts.correlation ? { 'td-correlation-id': opts.correlation } : {};
  return {
    ok: true,
    message: message(offset, headers),
    encoding: 'protobuf',
    scored: { response: response(`r${offset}`, lightweight, opts.features), fallback: opts.fallback ?? false, engineSeconds: 0.001 },
  };
}

describe('buildChunk', () => {
  it('turns decided requests into one record per decision on its route, and one row per decision', () => {
    const now = new Date('2026-01-02T03:04:05Z');
    const chunk = buildChunk('req', 4, [decided(10, [true, false]), decided(11, [false], { features: true, correlation: 'corr-11' })], new MessageLists(), {}, now);
    expect(chunk).toMatchObject({ topic: 'req', partition: 4, firstOffset: '10', lastOffset: '11', decided: 2, rejected: 0 });
    expect(chunk.records.count(ROUTE.lightweight)).toBe(1);
    expect(chunk.records.count(ROUTE.heavyweight)).toBe(2);
    expect(chunk.records.count(ROUTE.dlq)).toBe(0);
    const [light, heavy] = chunk.records.lists;
    expect(decodeDecision(light[0]!.value as Buffer, 'protobuf')).toMatchObject({ request_id: 'r10', candidate_id: 'r10-c0', use_lightweight: true });
    expect(heavy.map((m) => String(m.key))).toEqual(['r10', 'r11']);
    // The correlation header: the request's own, else topic/partition/offset of the request.
    expect(heavy.map((m) => (m.headers as Record<string, string>)['td-correlation-id'])).toEqual(['req/4/10', 'corr-11']);
    expect(chunk.rows.map((r) => [r.request_id, r.candidate_id, r.source_topic, r.source_partition, r.source_offset])).toEqual([
      ['r10', 'r10-c0', 'req', 4, '10'],
      ['r10', 'r10-c1', 'req', 4, '10'],
      ['r11', 'r11-c0', 'req', 4, '11'],
    ]);
    expect(chunk.rows.every((r) => r.decided_at === now)).toBe(true);
    // Features shipped with the response go with their row; without them (and no decoded request) none.
    expect(chunk.rows[0]!.features).toBeUndefined();
    expect(Array.from(chunk.rows[2]!.features!).slice(0, 3)).toEqual([0, 1, 2]);
    expect(chunk.timestamps).toEqual([1_000_010, 1_000_011]);
  });

  it('sends a record that could not be decided to the DLQ as it was, with why and where from', () => {
    const bad: Outcome = { ok: false, message: message(7, { 'content-type': 'application/json', 'td-error': 'stale' }), encoding: 'json', error: new DecodeError('json', 'Unexpected token') };
    const broken: Outcome = { ok: false, message: message(9), encoding: 'protobuf', error: new Error('worker died') };
    const kinds: RejectKind[] = [];
    const chunk = buildChunk('req', 0, [bad, decided(8, [true]), broken], new MessageLists(), { rejected: (kind) => kinds.push(kind) });
    expect(chunk).toMatchObject({ firstOffset: '7', lastOffset: '9', decided: 1, rejected: 2 });
    expect(kinds).toEqual(['json', 'internal']);
    const dlq = chunk.records.lists[ROUTE.dlq];
    expect(dlq.map((m) => String(m.value))).toEqual(['v7', 'v9']);
    const h = dlq[0]!.headers as Record<string, string>;
    expect(h[DLQ_HEADERS.error]).toBe('Unexpected token');
    expect(h[DLQ_HEADERS.offset]).toBe('7');
    expect(h['content-type']).toBe('application/json');
    expect((dlq[1]!.headers as Record<string, string>)[DLQ_HEADERS.error]).toMatch(/^internal error while decoding: worker died/);
    expect(chunk.rows.map((r) => r.source_offset)).toEqual(['8']);
  });

  it('tells the observer of each decision, decided request and fallback', () => {
    const seen: string[] = [];
    buildChunk('req', 0, [decided(1, [true, false], { fallback: true })], new MessageLists(), {
      decided: (_enc, scored) => seen.push(`decided fallback=${scored.fallback}`),
      decision: (d) => seen.push(`decision ${d.candidate_id}`),
    });
    expect(seen).toEqual(['decision r1-c0', 'decision r1-c1', 'decided fallback=true']);
  });

  it('writes the same records into a pack for the producer thread', () => {
    const outcomes = [decided(1, [true, false, false]), decided(2, [true])];
    const lists = buildChunk('req', 0, outcomes, new MessageLists()).records.topicMessages(TOPICS);
    const pack = buildChunk('req', 0, outcomes, new RecordPacker(1024)).records.finish();
    const unpacked = unpackRecords(pack.buffer, pack.length, TOPICS);
    expect(unpacked.map((t) => [t.topic, t.messages.map((m) => String(m.key))])).toEqual(lists.map((t) => [t.topic, t.messages.map((m) => String(m.key))]));
    expect(unpacked.flatMap((t) => t.messages.map((m) => Buffer.from(m.value as Buffer).toString('hex')))).toEqual(
      lists.flatMap((t) => t.messages.map((m) => Buffer.from(m.value as Buffer).toString('hex'))),
    );
  });

  describe('the responses topic', () => {
    const traced = (offset: number, lightweight: boolean[], encoding: 'json' | 'protobuf', topK?: string): Outcome => {
      const o = decided(offset, lightweight, { correlation: `corr-${offset}` }) as Extract<Outcome, { ok: true }>;
      if (topK !== undefined) o.scored.response.top_k = Number(topK);
      return { ...o, encoding, trace: { headers: { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` }, decided: () => {}, rejected: () => {} } as unknown as Extract<Outcome, { ok: true }>['trace'] };
    };

    it('is off unless asked for: no record on its route', () => {
      const chunk = buildChunk('req', 0, [decided(1, [true, false])], new MessageLists());
      expect(chunk.records.count(ROUTE.responses)).toBe(0);
      expect(chunk.records.size).toBe(2);
    });

    it('one response per decided request, keyed by request id, with the headers of its decisions', () => {
      const bad: Outcome = { ok: false, message: message(3), encoding: 'json', error: new DecodeError('json', 'nope') };
      const chunk = buildChunk('req', 2, [traced(1, [true, false, false], 'protobuf'), bad, traced(2, [false], 'json')], new MessageLists(), {}, new Date(), {});
      expect(chunk.records.count(ROUTE.responses)).toBe(2);
      const [light, heavy, , responses] = chunk.records.lists;
      expect(responses.map((m) => String(m.key))).toEqual(['r1', 'r2']);
      // The same header object as the request's decisions: content type, model version, correlation, trace.
      expect(responses[0]!.headers).toBe(light[0]!.headers);
      expect(responses[1]!.headers).toBe(heavy[heavy.length - 1]!.headers);
      expect(responses[0]!.headers).toMatchObject({ 'content-type': 'application/x-protobuf', 'td-model-version': 'm1', 'td-correlation-id': 'corr-1', traceparent: expect.stringMatching(/^00-a{32}-/) as unknown });
      expect(responses[1]!.headers).toMatchObject({ 'content-type': 'application/json' });
      const proto = decodeResponse(responses[0]!.value as Buffer, 'protobuf');
      expect(proto).toMatchObject({ request_id: 'r1', model_version: 'm1', candidates_processed: 3 });
      expect(proto.decisions.map((d) => d.candidate_id)).toEqual(['r1-c0', 'r1-c1', 'r1-c2']);
      expect(decodeResponse(responses[1]!.value as Buffer, 'json')).toMatchObject({ request_id: 'r2', decisions: [{ candidate_id: 'r2-c0', rank: 0 }] });
    });

    it('trims to TD_RESPONSE_TOP_K, and a request’s td-top-k wins', () => {
      const chunk = buildChunk('req', 0, [traced(1, [true, true, false, false], 'json'), traced(2, [true, false, false, false], 'json', '3')], new MessageLists(), {}, new Date(), { topK: 2 });
      const [a, b] = chunk.records.lists[ROUTE.responses].map((m) => decodeResponse(m.value as Buffer, 'json'));
      expect(a!.decisions.map((d) => d.rank)).toEqual([0, 1]);
      expect(b!.decisions.map((d) => d.rank)).toEqual([0, 1, 2]);
      expect(a!.candidates_processed).toBe(4);
      // The decision topics still carry every decision.
      expect(chunk.records.count(ROUTE.lightweight) + chunk.records.count(ROUTE.heavyweight)).toBe(8);
    });

    it('packs for the producer thread as it lists for a producer here', () => {
      const outcomes = [traced(1, [true, false], 'protobuf'), traced(2, [false], 'json')];
      const topics = [...TOPICS, 'responses'] as const;
      const lists = buildChunk('req', 0, outcomes, new MessageLists(), {}, new Date(), {}).records.topicMessages(topics);
      const pack = buildChunk('req', 0, outcomes, new RecordPacker(64), {}, new Date(), {}).records.finish();
      const unpacked = unpackRecords(pack.buffer, pack.length, topics);
      const flat = (ts: typeof lists) => ts.flatMap((t) => t.messages.map((m) => [t.topic, String(m.key), Buffer.from(m.value as Buffer).toString('hex')]));
      expect(flat(unpacked)).toEqual(flat(lists));
      expect(unpacked.find((t) => t.topic === 'responses')!.messages).toHaveLength(2);
      // Without a responses topic, records routed there are refused rather than lost.
      expect(() => unpackRecords(pack.buffer, pack.length, TOPICS)).toThrow(/no topic/);
    });
  });

  it('refuses an empty chunk', () => {
    expect(() => buildChunk('req', 0, [], new MessageLists())).toThrow(RangeError);
  });
});
