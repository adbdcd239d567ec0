// The records a chunk produces (decisions on the lightweight/heavyweight topics, rejects on the
// DLQ, one response per decided request when the responses topic is on), gathered by one of two
// writers:
// - MessageLists: kafkajs Message objects, for a producer on this thread (exactly-once mode,
//   where the consumed offsets must ride in the same transaction).
// - RecordPacker: one SharedArrayBuffer in a compact binary form, for the producer thread
//   (./send/). Building the kafkajs request from Message objects — an Encoder per record and per
//   header, CRC32C, partition grouping — was about a quarter of the consuming thread's time at
//   full rate; packed, the records cross to another core as one memory block, with no
//   structured-clone walk over objects, and unpackRecords rebuilds them there as views.
//
// Pack format (little endian), one entry per record:
//   u8 route | u8 flags | key? | value? | headers?
//   key     (unless KEY_NULL or KEY_SAME): u32 length, bytes (utf-8 text when KEY_STRING)
//   value   (unless VALUE_NULL):           u32 length, bytes
//   headers (unless HEADERS_SAME):         u16 count, then per header
//                                          u16 name length, name (utf-8), u32 length, value bytes
// KEY_SAME / HEADERS_SAME repeat the previous record's key / headers: a request's decisions
// share both, so they are written once, and the unpacked records share one key string (the
// partitioner's memo hits) and one headers object. A header whose value is an array is written
// as one entry per element and comes back as an array.
//
// The codec is pure and trusts nothing it reads: a truncated or corrupt pack throws
// RecordPackError instead of reading past its end.
import type { Message, TopicMessages } from 'kafkajs';
import { TinyDancerError } from '../errors.js';

/** Where a record goes: index into the [lightweight, heavyweight, dlq, responses] topics. */
export type Route = 0 | 1 | 2 | 3;
export const ROUTE = Object.freeze({ lightweight: 0, heavyweight: 1, dlq: 2, responses: 3 } as const);
const ROUTES = 4;

export type RecordHeaders = Record<string, string | Buffer | (string | Buffer)[]>;

export type ValueWriter<T> = (buf: Buffer, pos: number, arg: T) => number;

/**
 * [lightweight, heavyweight, dlq, responses] topic names; without the responses topic (it is
 * off) a record routed there is refused.
 */
export type RouteTopics = readonly [lightweight: string, heavyweight: string, dlq: string, responses?: string];

export interface RecordWriter {
  /**
   * Adds one record. Records that share headers should pass the same object (and decisions of
   * one request the same key): the packer writes them once.
   */
  add(route: Route, key: string | Buffer | null, value: Buffer | null, headers: RecordHeaders): void;
  /**
   * Adds one record whose value `write(buf, pos, arg)` writes at `buf[pos..]` (at most `bound`
   * bytes), returning where it ends: the packer has it written in place, with no Buffer of its
   * own per value.
   */
  addWritten<T>(route: Route, key: string | Buffer | null, headers: RecordHeaders, bound: number, write: ValueWriter<T>, arg: T): void;
  /** Records added for `route`. */
  count(route: Route): number;
  /** Records added in all. */
  readonly size: number;
}

/** kafkajs Messages per route, for a producer on this thread. */
export class MessageLists implements RecordWriter {
  readonly lists: [Message[], Message[], Message[], Message[]] = [[], [], [], []];
  size = 0;

  add(route: Route, key: string | Buffer | null, value: Buffer | null, headers: RecordHeaders): void {
    this.lists[route].push({ key, value, headers });
    this.size++;
  }

  addWritten<T>(route: Route, key: string | Buffer | null, headers: RecordHeaders, bound: number, write: ValueWriter<T>, arg: T): void {
    const buf = Buffer.allocUnsafe(bound);
    this.add(route, key, buf.subarray(0, write(buf, 0, arg)), headers);
  }

  count(route: Route): number {
    return this.lists[route].length;
  }

  topicMessages(topics: RouteTopics): TopicMessages[] {
    const out: TopicMessages[] = [];
    for (let r = 0; r < ROUTES; r++) {
      const messages = this.lists[r]!;
      if (messages.length === 0) continue;
      const topic = topics[r];
      if (topic === undefined) throw new RecordPackError(`${messages.length} records for route ${r}, which has no topic`);
      out.push({ topic, messages });
    }
    return out;
  }
}

const KEY_NULL = 1;
const KEY_SAME = 2;
const KEY_STRING = 4;
const VALUE_NULL = 8;
const HEADERS_SAME = 16;
const MAX_HEADERS = 0xffff;
const MAX_NAME_BYTES = 0xffff;

export class RecordPackError extends TinyDancerError {}

/** A finished pack: `length` bytes of `buffer` hold `records` records. */
export interface PackedRecords {
  buffer: SharedArrayBuffer;
  length: number;
  records: number;
}

/** Writes records into one growing SharedArrayBuffer (see the format above). */
export class RecordPacker implements RecordWriter {
  #buf: Buffer;
  #sab: SharedArrayBuffer;
  #pos = 0;
  #lastKey: string | undefined;
  #lastHeaders: RecordHeaders | undefined;
  readonly #counts = [0, 0, 0, 0];
  size = 0;

  /** `capacity`: first guess of the bytes needed; the buffer doubles when it is short. */
  constructor(capacity = 64 * 1024) {
    this.#sab = new SharedArrayBuffer(Math.max(256, capacity));
    this.#buf = Buffer.from(this.#sab);
  }

  add(route: Route, key: string | Buffer | null, value: Buffer | null, headers: RecordHeaders): void {
    this.#head(route, key, value === null, headers);
    if (value !== null) this.#bytes32(value);
    this.#tail(route, key, headers);
  }

  addWritten<T>(route: Route, key: string | Buffer | null, headers: RecordHeaders, bound: number, write: ValueWriter<T>, arg: T): void {
    this.#head(route, key, false, headers);
    this.#ensure(4 + bound);
    const start = this.#pos + 4;
    const end = write(this.#buf, start, arg);
    if (!(end >= start && end - start <= bound)) throw new RecordPackError(`a value writer wrote ${end - start} bytes, outside its bound of ${bound}`);
    this.#buf.writeUInt32LE(end - start, this.#pos);
    this.#pos = end;
    this.#tail(route, key, headers);
  }

  /** route, flags and (unless repeated) the key. */
  #head(route: Route, key: string | Buffer | null, valueNull: boolean, headers: RecordHeaders): void {
    let flags = 0;
    const sameKey = typeof key === 'string' && key === this.#lastKey;
    if (key === null) flags |= KEY_NULL;
    else if (sameKey) flags |= KEY_SAME;
    else if (typeof key === 'string') flags |= KEY_STRING;
    if (valueNull) flags |= VALUE_NULL;
    if (headers === this.#lastHeaders) flags |= HEADERS_SAME;
    this.#ensure(2);
    this.#buf[this.#pos++] = route;
    this.#buf[this.#pos++] = flags;
    if (key !== null && !sameKey) {
      if (typeof key === 'string') this.#string32(key);
      else this.#bytes32(key);
    }
  }

  /** The headers (unless repeated), and the bookkeeping. */
  #tail(route: Route, key: string | Buffer | null, headers: RecordHeaders): void {
    if (headers !== this.#lastHeaders) this.#headers(headers);
    this.#lastKey = typeof key === 'string' ? key : undefined;
    this.#lastHeaders = headers;
    this.#counts[route]!++;
    this.size++;
  }

  count(route: Route): number {
    return this.#counts[route]!;
  }

  finish(): PackedRecords {
    return { buffer: this.#sab, length: this.#pos, records: this.size };
  }

  #headers(headers: RecordHeaders): void {
    const countAt = this.#pos;
    this.#ensure(2);
    this.#pos += 2;
    let count = 0;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      if (Array.isArray(v)) {
        for (const one of v) {
          this.#header(name, one);
          count++;
        }
      } else {
        this.#header(name, v);
        count++;
      }
    }
    if (count > MAX_HEADERS) throw new RecordPackError(`a record has ${count} headers, more than ${MAX_HEADERS}`);
    this.#buf.writeUInt16LE(count, countAt);
  }

  #header(name: string, value: string | Buffer): void {
    this.#ensure(2 + name.length * 3);
    const n = this.#buf.write(name, this.#pos + 2, 'utf8');
    if (n > MAX_NAME_BYTES) throw new RecordPackError(`a header name is ${n} bytes, more than ${MAX_NAME_BYTES}`);
    this.#buf.writeUInt16LE(n, this.#pos);
    this.#pos += 2 + n;
    if (typeof value === 'string') this.#string32(value);
    else this.#bytes32(value);
  }

  #string32(s: string): void {
    this.#ensure(4 + s.length * 3);
    const n = this.#buf.write(s, this.#pos + 4, 'utf8');
    this.#buf.writeUInt32LE(n, this.#pos);
    this.#pos += 4 + n;
  }

  #bytes32(b: Uint8Array): void {
    this.#ensure(4 + b.byteLength);
    this.#buf.writeUInt32LE(b.byteLength, this.#pos);
    this.#buf.set(b, this.#pos + 4);
    this.#pos += 4 + b.byteLength;
  }

  #ensure(n: number): void {
    const need = this.#pos + n;
    if (need <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const sab = new SharedArrayBuffer(size);
    const buf = Buffer.from(sab);
    buf.set(this.#buf.subarray(0, this.#pos));
    this.#sab = sab;
    this.#buf = buf;
  }
}

/**
 * Rebuilds the records of a pack as kafkajs TopicMessages. Values and byte keys are views of the
 * pack (no copy); header values come back as Buffers (kafkajs encodes a string and a Buffer
 * alike).
 */
export function unpackRecords(buffer: SharedArrayBuffer | ArrayBuffer, length: number, topics: RouteTopics): TopicMessages[] {
  if (!Number.isInteger(length) || length < 0 || length > buffer.byteLength) {
    throw new RecordPackError(`pack length ${length} is outside its ${buffer.byteLength}-byte buffer`);
  }
  const buf = Buffer.from(buffer, 0, length);
  const lists = new MessageLists();
  let pos = 0;
  let key: string | Buffer | null = null;
  let headers: RecordHeaders = {};
  const need = (n: number, what: string) => {
    if (pos + n > length) throw new RecordPackError(`pack truncated: ${what} at byte ${pos} needs ${n} bytes, ${length - pos} left`);
  };
  const bytes32 = (what: string): Buffer => {
    need(4, what);
    const n = buf.readUInt32LE(pos);
    pos += 4;
    need(n, what);
    const out = buf.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  let first = true;
  while (pos < length) {
    need(2, 'record');
    const route = buf[pos++]!;
    const flags = buf[pos++]!;
    if (route >= ROUTES) throw new RecordPackError(`pack corrupt: route ${route} at byte ${pos - 2}`);
    if ((flags & KEY_SAME) !== 0 || (flags & HEADERS_SAME) !== 0) {
      if (first) throw new RecordPackError('pack corrupt: the first record refers to a previous one');
    }
    if ((flags & KEY_NULL) !== 0) key = null;
    else if ((flags & KEY_SAME) === 0) {
      const k = bytes32('key');
      key = (flags & KEY_STRING) !== 0 ? k.toString('utf8') : k;
    }
    const value = (flags & VALUE_NULL) !== 0 ? null : bytes32('value');
    if ((flags & HEADERS_SAME) === 0) {
      need(2, 'header count');
      const count = buf.readUInt16LE(pos);
      pos += 2;
      // No prototype: a header named "constructor" or "__proto__" is just a header.
      headers = Object.create(null) as RecordHeaders;
      for (let h = 0; h < count; h++) {
        need(2, 'header name');
        const nameLen = buf.readUInt16LE(pos);
        pos += 2;
        need(nameLen, 'header name');
        const name = buf.toString('utf8', pos, pos + nameLen);
        pos += nameLen;
        const v = bytes32('header value');
        const prev = headers[name];
        headers[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
    }
    lists.add(route as Route, key, value, headers);
    first = false;
  }
  return lists.topicMessages(topics);
}
