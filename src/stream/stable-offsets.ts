// The committed offset of one partition, as a transactional consumer must read it: OffsetFetch
// v7 with require_stable, so the group coordinator answers UNSTABLE_OFFSET_COMMIT (and this
// waits) while a transaction that carries offsets of the partition is still being completed.
// kafkajs speaks OffsetFetch only up to v4 (which returns the last stable offset and says
// nothing of a pending one), so this request is encoded here and sent over kafkajs's own
// connection to the coordinator, through its cluster (not part of its public API; the shape
// used is checked at run time).
import type { Kafka } from 'kafkajs';
import { sleep } from '../store/backoff.js';
import { TinyDancerError } from '../errors.js';

export class StableOffsetError extends TinyDancerError {}

const OFFSET_FETCH = 9;
const UNSTABLE_OFFSET_COMMIT = 88;
/** Errors after which the coordinator is looked up again and the fetch retried. */
const RETRIABLE = new Set([UNSTABLE_OFFSET_COMMIT, 14 /* COORDINATOR_LOAD_IN_PROGRESS */, 15 /* COORDINATOR_NOT_AVAILABLE */, 16 /* NOT_COORDINATOR */]);

interface KjsBroker {
  connectionPool: { send(req: { request: unknown; response: unknown }): Promise<unknown> };
}
interface KjsCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  findGroupCoordinator(args: { groupId: string }): Promise<KjsBroker>;
}

function uvarint(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

function compactString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from(uvarint(b.length + 1)), b]);
}

/** The request body of OffsetFetch v7, after kafkajs's request header v1. */
export function encodeOffsetFetchV7(groupId: string, topic: string, partitions: readonly number[]): Buffer {
  const parts: Buffer[] = [
    // Flexible requests use request header v2: header v1 plus tagged fields (none).
    Buffer.from([0]),
    compactString(groupId),
    Buffer.from(uvarint(2)), // one topic
    compactString(topic),
    Buffer.from(uvarint(partitions.length + 1)),
  ];
  const ps = Buffer.alloc(4 * partitions.length);
  partitions.forEach((p, i) => ps.writeInt32BE(p, 4 * i));
  parts.push(ps, Buffer.from([0 /* topic tags */, 1 /* require_stable */, 0 /* tags */]));
  return Buffer.concat(parts);
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  int16(): number {
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  int32(): number {
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  int64(): bigint {
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  uvarint(): number {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = this.buf[this.pos++]!;
      v |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v >>> 0;
      shift += 7;
    }
  }
  compactString(): string | null {
    const n = this.uvarint();
    if (n === 0) return null;
    const s = this.buf.toString('utf8', this.pos, this.pos + n - 1);
    this.pos += n - 1;
    return s;
  }
  skipTags(): void {
    const n = this.uvarint();
    for (let i = 0; i < n; i++) {
      this.uvarint();
      this.pos += this.uvarint();
    }
  }
}

export interface PartitionOffset {
  partition: number;
  /** -1 when the group has no committed offset for it. */
  offset: bigint;
  errorCode: number;
}

/** Decodes an OffsetFetch v7 response (after the correlation id). */
export function decodeOffsetFetchV7(payload: Buffer): { errorCode: number; partitions: PartitionOffset[] } {
  const r = new Reader(payload);
  r.skipTags(); // response header v1
  r.int32(); // throttle_time_ms
  const partitions: PartitionOffset[] = [];
  const topics = r.uvarint() - 1;
  for (let t = 0; t < topics; t++) {
    r.compactString();
    const n = r.uvarint() - 1;
    for (let i = 0; i < n; i++) {
      const partition = r.int32();
      const offset = r.int64();
      r.int32(); // committed_leader_epoch
      r.compactString(); // metadata
      const errorCode = r.int16();
      r.skipTags();
      partitions.push({ partition, offset, errorCode });
    }
    r.skipTags();
  }
  const errorCode = r.int16();
  return { errorCode, partitions };
}

function clusterOf(kafka: Kafka): KjsCluster {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
  const create = sym ? (kafka as unknown as Record<symbol, unknown>)[sym] : undefined;
  if (typeof create !== 'function') throw new StableOffsetError('this kafkajs has no cluster factory where it is expected; cannot fetch stable offsets');
  return (create as (o: object) => KjsCluster)({ allowAutoTopicCreation: false });
}

/** Fetches committed offsets with require_stable, over one connection kept for the purpose. */
export class StableOffsets {
  readonly #kafka: Kafka;
  readonly #groupId: string;
  #cluster: Promise<KjsCluster> | undefined;

  constructor(kafka: Kafka, groupId: string) {
    this.#kafka = kafka;
    this.#groupId = groupId;
  }

  #connected(): Promise<KjsCluster> {
    this.#cluster ??= (async () => {
      const c = clusterOf(this.#kafka);
      await c.connect();
      return c;
    })();
    this.#cluster.catch(() => (this.#cluster = undefined));
    return this.#cluster;
  }

  /**
   * The committed offset of `topic`/`partition` once no transaction holds pending offsets for
   * it; undefined when the group has none. Retries until the signal aborts.
   */
  async fetch(topic: string, partition: number, signal: AbortSignal): Promise<bigint | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw signal.reason;
      let code: number;
      try {
        const cluster = await this.#connected();
        const broker = await cluster.findGroupCoordinator({ groupId: this.#groupId });
        const body = encodeOffsetFetchV7(this.#groupId, topic, [partition]);
        const res = (await broker.connectionPool.send({
          request: {
            apiKey: OFFSET_FETCH,
            apiVersion: 7,
            apiName: 'OffsetFetch',
            // kafkajs's request framing takes anything shaped like its Encoder.
            encode: () => Promise.resolve({ buf: body, buffer: body, offset: body.length }),
          },
          response: { decode: (payload: Buffer) => Promise.resolve(decodeOffsetFetchV7(payload)), parse: (d: unknown) => Promise.resolve(d) },
        })) as ReturnType<typeof decodeOffsetFetchV7>;
        const p = res.partitions.find((x) => x.partition === partition);
        code = res.errorCode !== 0 ? res.errorCode : (p?.errorCode ?? 0);
        if (code === 0) return p === undefined || p.offset < 0n ? undefined : p.offset;
        if (!RETRIABLE.has(code)) throw new StableOffsetError(`OffsetFetch of ${topic}/${partition} failed with error code ${code}`);
      } catch (err) {
        if (err instanceof StableOffsetError) throw err;
        // A connection or coordinator problem: start over with a fresh cluster.
        const c = this.#cluster;
        this.#cluster = undefined;
        void c?.then((x) => x.disconnect()).catch(() => {});
        if (attempt > 50) throw err;
      }
      await sleep(Math.min(1000, 20 * 2 ** Math.min(attempt, 6)), signal);
    }
  }

  async close(): Promise<void> {
    const c = this.#cluster;
    this.#cluster = undefined;
    await c?.then((x) => x.disconnect()).catch(() => {});
  }
}
