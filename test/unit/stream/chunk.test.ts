// The chunk stage on its own: outcomes in, records, rows and counts out. No broker, no database.
import { describe, expect, it } from 'vitest';
import { FEATURE_COUNT } from '../../../src/engine/features.js';
import type { RoutingDecision, RoutingResponse } from '../../../src/engine/types.js';
import { buildChunk, type ChunkMessage, type Outcome, type RejectKind } from '../../../src/stream/chunk.js';
import { decodeDecision } from '../../../src/wire/client.js';
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

  it('refuses an empty chunk', () => {
    expect(() => buildChunk('req', 0, [], new MessageLists())).toThrow(RangeError);
  });
});
