import fc from 'fast-check';
import type { Message, TopicMessages } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { MessageLists, RecordPackError, RecordPacker, ROUTE, unpackRecords, type RecordHeaders, type Route, type RouteTopics } from '../../../src/stream/records.js';

const TOPICS: RouteTopics = ['light', 'heavy', 'dead'];

/** A record as bytes: what the broker would store, whatever JS type carried it. */
function wire(m: Message) {
  const bytes = (v: string | Buffer | null | undefined) => (v == null ? null : Buffer.from(v).toString('hex'));
  const headers: Record<string, (string | null)[]> = {};
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    if (v === undefined) continue;
    headers[k] = (Array.isArray(v) ? v : [v]).map(bytes);
  }
  return { key: bytes(m.key), value: bytes(m.value), headers };
}

function byTopic(t: TopicMessages[]) {
  return Object.fromEntries(t.map((x) => [x.topic, x.messages.map(wire)]));
}

interface Rec {
  route: Route;
  key: string | Buffer | null;
  value: Buffer | null;
  headers: RecordHeaders;
}

const bytes = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
const headerValue = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 20 }), bytes);
const headers = fc.dictionary(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((k) => k !== '__proto__'),
  fc.oneof(headerValue, fc.array(headerValue, { minLength: 2, maxLength: 3 })),
  { maxKeys: 4 },
);
const record: fc.Arbitrary<Rec> = fc.record({
  route: fc.constantFrom<Route>(0, 1, 2),
  key: fc.oneof(fc.constant(null), fc.string({ unit: 'grapheme', maxLength: 40 }), bytes),
  value: fc.oneof(fc.constant(null), bytes),
  headers,
});
/** Runs of records sharing a key and a headers object, as a request's decisions do. */
const records = fc
  .array(fc.tuple(record, fc.integer({ min: 1, max: 4 })), { maxLength: 30 })
  .map((runs) => runs.flatMap(([r, n]) => Array.from({ length: n }, (_, i) => ({ ...r, route: ((r.route + i) % 3) as Route }))));

const copyInto = (buf: Buffer, pos: number, v: Buffer) => pos + v.copy(buf, pos);

describe('RecordPacker / unpackRecords', () => {
  it('round-trips any records to the same bytes as kafkajs Messages would carry, in order per topic', () => {
    fc.assert(
      fc.property(records, fc.integer({ min: 1, max: 4096 }), (recs, capacity) => {
        const packer = new RecordPacker(capacity);
        const lists = new MessageLists();
        for (const [i, r] of recs.entries()) {
          // Every other value through addWritten, as decisions are written (with a loose bound).
          if (r.value !== null && i % 2 === 0) {
            packer.addWritten(r.route, r.key, r.headers, r.value.length + 5, copyInto, r.value);
            lists.addWritten(r.route, r.key, r.headers, r.value.length + 5, copyInto, r.value);
          } else {
            packer.add(r.route, r.key, r.value, r.headers);
            lists.add(r.route, r.key, r.value, r.headers);
          }
        }
        const pack = packer.finish();
        expect(pack.records).toBe(recs.length);
        for (const route of [0, 1, 2] as Route[]) expect(packer.count(route)).toBe(lists.count(route));
        expect(byTopic(unpackRecords(pack.buffer, pack.length, TOPICS))).toEqual(byTopic(lists.topicMessages(TOPICS)));
      }),
      { numRuns: 300 },
    );
  });

  it('writes a shared key and headers once and unpacks them as one string and one object', () => {
    const shared = { 'content-type': 'application/x-protobuf', 'td-model-version': 'v1' };
    const once = new RecordPacker();
    once.add(ROUTE.lightweight, 'req-1', Buffer.from('a'), shared);
    const ten = new RecordPacker();
    for (let i = 0; i < 10; i++) ten.add(i % 2 === 0 ? ROUTE.lightweight : ROUTE.heavyweight, 'req-1', Buffer.from('a'), shared);
    // The nine repeats cost their flags, value length and value only.
    expect(ten.finish().length - once.finish().length).toBe(9 * (2 + 4 + 1));
    const [light, heavy] = unpackRecords(ten.finish().buffer, ten.finish().length, TOPICS);
    const all = [...light!.messages, ...heavy!.messages];
    expect(all.every((m) => m.key === 'req-1' && m.headers === all[0]!.headers)).toBe(true);
    expect(Buffer.from(all[0]!.headers!['td-model-version'] as Buffer).toString()).toBe('v1');
  });

  it('keeps headers named like Object.prototype members (a DLQ record carries whatever headers came in)', () => {
    const hostile = JSON.parse('{"__proto__":"p","constructor":"c","toString":["a","b"]}') as RecordHeaders;
    const p = new RecordPacker();
    p.add(ROUTE.dlq, Buffer.from([0xff]), null, hostile);
    const [dead] = unpackRecords(p.finish().buffer, p.finish().length, TOPICS);
    const h = dead!.messages[0]!.headers!;
    expect(Object.keys(h).sort()).toEqual(['__proto__', 'constructor', 'toString']);
    expect(String(h['__proto__'])).toBe('p');
    expect(String(h['constructor'])).toBe('c');
    expect((h['toString'] as Buffer[]).map(String)).toEqual(['a', 'b']);
  });

  it('refuses a value writer that writes past its bound', () => {
    const p = new RecordPacker(64);
    expect(() => p.addWritten(ROUTE.lightweight, 'k', {}, 3, copyInto, Buffer.from('four'))).toThrow(/wrote 4 bytes, outside its bound of 3/);
  });

  it('gives values as views of the pack, not copies', () => {
    const p = new RecordPacker();
    p.add(ROUTE.dlq, null, Buffer.from('payload'), {});
    const { buffer, length } = p.finish();
    const [dead] = unpackRecords(buffer, length, TOPICS);
    const v = dead!.messages[0]!.value as Buffer;
    expect(v.buffer).toBe(buffer);
    expect(dead!.topic).toBe('dead');
  });

  it('refuses a truncated or corrupt pack with RecordPackError instead of reading past it', () => {
    const p = new RecordPacker();
    p.add(ROUTE.heavyweight, 'k', Buffer.alloc(100, 7), { h: 'v' });
    const { buffer, length } = p.finish();
    for (let cut = 1; cut < length; cut++) {
      expect(() => unpackRecords(buffer, cut, TOPICS)).toThrow(RecordPackError);
    }
    const bad = new Uint8Array(buffer.slice(0, length));
    bad[0] = 7; // no such route
    expect(() => unpackRecords(bad.buffer, length, TOPICS)).toThrow(/route 7/);
    const sameFirst = new Uint8Array(buffer.slice(0, length));
    sameFirst[1] = 2; // KEY_SAME on the first record
    expect(() => unpackRecords(sameFirst.buffer, length, TOPICS)).toThrow(/previous/);
    expect(() => unpackRecords(buffer, length + 1_000_000, TOPICS)).toThrow(/outside/);
  });
});
