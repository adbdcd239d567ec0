// Exactly-once delivery: per owned request partition, one transactional producer with the id
// `<prefix>-<topic>-<partition>`, and one open transaction at a time that gathers the
// partition's decision and DLQ records for up to a commit interval (or a request bound), then
// carries the partition's next offset (sendOffsets) and commits once the rows of every chunk in
// it are durable. Partitions commit in parallel, each on its own producer.
//
// Fencing. kafkajs commits transactional offsets without the group generation, so the group
// cannot tell a zombie's commit from the owner's; the transactional id can. The id is the
// partition's, not the instance's: whoever takes a partition initialises its producer, which
// bumps the producer epoch, aborts whatever transaction the previous owner left open, and makes
// every later produce or commit of the previous owner fail. After that initialisation the new
// owner reads the partition's committed offset with require_stable (./stable-offsets.ts), so
// a commit the previous owner had in flight is either visible or aborted, and starts from
// there: the consumer is moved to that offset if it fetched from elsewhere.
//
// Failure. A transaction that fails is aborted; the partition's producer is replaced (its
// initialisation aborts anything left open), and the consumer is moved back to the
// transaction's first offset, so the aborted work is done again. A producer that was fenced
// waits a while first: if this instance is a zombie its consumer learns of the rebalance in the
// meantime and the partition is no longer its own.
import { setMaxListeners } from 'node:events';
import type { Kafka, Producer, TopicMessages, Transaction } from 'kafkajs';
import { errorMessage, TinyDancerError } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { backoffDelay, sleep } from '../store/backoff.js';
import type { Chunk } from './chunk.js';
import { DECISION_PRODUCER } from './kafka.js';
import { MessageLists, type RouteTopics } from './records.js';
import { STREAM_BACKOFF, abortable, retrying, type RetryOptions } from './retry.js';
import type { BatchTicket, DecisionLogPort, DeliverySink } from './sink.js';
import { StableOffsets } from './stable-offsets.js';

/** A chunk of a partition whose position was given up (a rebalance, a failed transaction). */
export class StaleChunkError extends TinyDancerError {}

export interface TransactionalSinkOptions {
  kafka: Kafka;
  log: DecisionLogPort;
  topics: RouteTopics;
  groupId: string;
  /** Transactional ids are `<idPrefix>-<topic>-<partition>`. */
  idPrefix: string;
  commitIntervalMs: number;
  /** A transaction commits early once it holds this many request records. */
  maxRequests: number;
  /** How long the broker lets a transaction stay open before it aborts it. */
  transactionTimeoutMs: number;
  /** How long a fenced partition waits before it is taken up again (if still owned). */
  fencedWaitMs: number;
  /** Moves the consumer's position of a partition (the consumer's seek). */
  seek(topic: string, partition: number, offset: string): void;
  logger: Logger;
  /** Retry hooks for the rows' log writes. */
  retry: RetryOptions;
  onCommitted?: (requests: number) => void;
  onError?: (stage: string, err: unknown) => void;
}

interface Txn {
  readonly part: Part;
  readonly producer: Producer;
  /** First offset of the transaction's records: the partition's committed offset at its start. */
  readonly first: string;
  last: string;
  requests: number;
  tx: Promise<Transaction>;
  sends: Promise<void>;
  rows: Promise<void>[];
  closed: boolean;
  timer: NodeJS.Timeout | undefined;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Part {
  readonly topic: string;
  readonly partition: number;
  readonly id: string;
  producer: Producer | undefined;
  /** Bumped by a rebalance or a failure: chunks of older batches are dropped. */
  epoch: number;
  /** The epoch whose position was checked against the committed offset. */
  verified: number;
  /** Set at verification: the committed offset the next batch must start from. */
  expect: bigint | undefined;
  /** The consumer was already moved to `expect` once in this epoch. */
  moved: boolean;
  /** A new producer is due (a new assignment, or the old one failed). */
  renew: boolean;
  open: Txn | undefined;
  /** Settles when the last transaction begun has ended. */
  tail: Promise<void>;
  failures: number;
  fencedUntil: number;
  owned: boolean;
}

const TRANSACTION_RETRY = Object.freeze({ retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 10, maxRetryTime: 2_000 });

function isFenced(err: unknown): boolean {
  for (let e = err as { type?: string; code?: number; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.type === 'INVALID_PRODUCER_EPOCH' || e.type === 'PRODUCER_FENCED' || e.code === 90 || e.type === 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED') return true;
  }
  return false;
}

function key(topic: string, partition: number): string {
  return `${partition}\u0000${topic}`;
}

export class TransactionalSink implements DeliverySink<MessageLists> {
  readonly mode = 'exactly_once';
  readonly commitsOffsets = true;
  readonly #o: TransactionalSinkOptions;
  readonly #parts = new Map<string, Part>();
  readonly #stable: StableOffsets;
  readonly #logger: Logger;
  /** Aborted by close(): every wait on Kafka or Postgres ends. */
  readonly #closing = new AbortController();
  #active = 0;

  constructor(opts: TransactionalSinkOptions) {
    this.#o = opts;
    this.#stable = new StableOffsets(opts.kafka, opts.groupId);
    this.#logger = opts.logger;
    // Every chunk's log write waits on the closing signal: as many listeners as chunks in flight.
    setMaxListeners(10_000, this.#closing.signal);
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  writer(): MessageLists {
    return new MessageLists();
  }

  #part(topic: string, partition: number): Part {
    const k = key(topic, partition);
    let p = this.#parts.get(k);
    if (!p) {
      p = {
        topic,
        partition,
        id: `${this.#o.idPrefix}-${topic}-${partition}`,
        producer: undefined,
        epoch: 1,
        verified: 0,
        expect: undefined,
        moved: false,
        renew: true,
        open: undefined,
        tail: Promise.resolve(),
        failures: 0,
        fencedUntil: 0,
        owned: true,
      };
      this.#parts.set(k, p);
    }
    return p;
  }

  async beginBatch(topic: string, partition: number, firstOffset: string, signal: AbortSignal): Promise<BatchTicket | undefined> {
    const part = this.#part(topic, partition);
    part.owned = true;
    if (part.verified !== part.epoch) {
      const epoch = part.epoch;
      await abortable(part.tail, signal);
      const wait = Math.max(part.fencedUntil - Date.now(), part.failures > 0 ? backoffDelay(part.failures - 1, STREAM_BACKOFF) : 0);
      if (wait > 0) {
        await sleep(wait, signal);
        if (signal.aborted) throw signal.reason;
      }
      if (part.renew || !part.producer) await abortable(this.#renew(part), signal);
      const committed = await this.#stable.fetch(topic, partition, signal);
      if (epoch !== part.epoch) return undefined; // moved on meanwhile; whoever bumped it moved the position too
      part.verified = epoch;
      part.expect = committed;
      part.moved = false;
    }
    if (part.expect !== undefined) {
      const first = BigInt(firstOffset);
      // Behind the committed offset: those records are decided already. Ahead of it on the
      // first batch: the consumer started elsewhere (a stale offset). Ahead after one move: a gap
      // (retention, control records), nothing to redo.
      if (first < part.expect || (first > part.expect && !part.moved)) {
        part.moved = true;
        this.#seek(part, part.expect.toString());
        return undefined;
      }
      part.expect = undefined;
    }
    return { topic, partition, epoch: part.epoch };
  }

  /** Replaces the partition's producer; the new one's initialisation fences every older one. */
  async #renew(part: Part): Promise<void> {
    const old = part.producer;
    part.producer = undefined;
    if (old) await old.disconnect().catch(() => {});
    const producer = this.#o.kafka.producer({
      ...DECISION_PRODUCER,
      maxInFlightRequests: 1,
      // The first produce of a transaction registers its partitions (AddPartitionsToTxn). Right
      // after the previous commit the coordinator may still be writing that commit's markers and
      // answers CONCURRENT_TRANSACTIONS for a few milliseconds; a retry that starts at 200 ms
      // would hold every record of the partition's next transaction that long.
      retry: TRANSACTION_RETRY,
      transactionalId: part.id,
      transactionTimeout: this.#o.transactionTimeoutMs,
    });
    try {
      await producer.connect();
      // kafkajs initialises the producer id (InitProducerId: the fencing step) with the first
      // transaction; an empty one ends without a request.
      const tx = await producer.transaction();
      await tx.abort();
    } catch (err) {
      await producer.disconnect().catch(() => {});
      throw err;
    }
    part.producer = producer;
    part.renew = false;
  }

  deliver(chunk: Chunk<MessageLists>, ticket: BatchTicket, signal: AbortSignal, release?: () => void): Promise<void> {
    const part = this.#parts.get(key(chunk.topic, chunk.partition));
    if (!part || ticket.epoch !== part.epoch || part.verified !== part.epoch || !part.producer) {
      return Promise.reject(new StaleChunkError(`${chunk.topic}/${chunk.partition}: its position was given up`));
    }
    const txn = part.open ?? this.#openTxn(part, part.producer, chunk.firstOffset);
    txn.requests += chunk.decided + chunk.rejected;
    txn.last = chunk.lastOffset;
    const messages: TopicMessages[] = chunk.records.topicMessages(this.#o.topics);
    if (messages.length > 0) {
      txn.sends = txn.sends.then(async () => {
        const tx = await txn.tx;
        await tx.sendBatch({ topicMessages: messages, acks: -1 });
      });
      txn.sends.catch(() => {});
    }
    const sent = txn.sends;
    let logged: Promise<void> | undefined;
    if (chunk.rows.length > 0) {
      const rows = chunk.rows;
      logged = retrying(() => this.#o.log.write(rows), this.#closing.signal, this.#o.retry);
      logged.catch(() => {});
      txn.rows.push(logged);
    }
    // Sent and durable, the chunk holds no memory: its permits go back while the transaction
    // waits for its tick. What the transaction holds is bounded by its request bound.
    if (release) void Promise.all([sent, logged]).then(release, release);
    if (txn.requests >= this.#o.maxRequests) this.#close(txn);
    return abortable(txn.done, signal);
  }

  #openTxn(part: Part, producer: Producer, first: string): Txn {
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => {});
    const previous = part.tail;
    const tx = previous.then(() => {
      if (part.producer !== producer) throw new StaleChunkError(`${part.id}: the producer was replaced`);
      return producer.transaction();
    });
    tx.catch(() => {});
    const txn: Txn = {
      part,
      producer,
      first,
      last: first,
      requests: 0,
      tx,
      sends: tx.then(() => {}),
      rows: [],
      closed: false,
      timer: undefined,
      done,
      resolve,
      reject,
    };
    txn.sends.catch(() => {});
    // Every partition's transaction ends on the same tick of the commit interval. A decision
    // record becomes visible to read_committed readers only when every transaction that wrote to
    // its output partition before it has ended (the last stable offset), and each partition's
    // producer writes to every output partition: with intervals started at each transaction's
    // first record, those waits chain across partitions; on a shared tick they end together.
    const interval = this.#o.commitIntervalMs;
    txn.timer = setTimeout(() => this.#close(txn), interval - (Date.now() % interval));
    part.open = txn;
    part.tail = done.then(
      () => {},
      () => {},
    );
    this.#active++;
    return txn;
  }

  /** Ends the transaction's intake and commits it. */
  #close(txn: Txn): void {
    if (txn.closed) return;
    txn.closed = true;
    if (txn.timer) clearTimeout(txn.timer);
    if (txn.part.open === txn) txn.part.open = undefined;
    void this.#commit(txn).finally(() => this.#active--);
  }

  async #commit(txn: Txn): Promise<void> {
    const { part } = txn;
    let tx: Transaction | undefined;
    try {
      tx = await txn.tx;
      await txn.sends;
      // The rows must be durable before the offsets move, or a crash right after the commit
      // would lose them from Postgres for good.
      await Promise.all(txn.rows);
      await tx.sendOffsets({
        consumerGroupId: this.#o.groupId,
        topics: [{ topic: part.topic, partitions: [{ partition: part.partition, offset: (BigInt(txn.last) + 1n).toString() }] }],
      });
      await abortable(tx.commit(), this.#closing.signal);
      part.failures = 0;
      this.#o.onCommitted?.(txn.requests);
      txn.resolve();
    } catch (err) {
      if (tx?.isActive()) await tx.abort().catch(() => {});
      this.#failed(txn, err);
      txn.reject(err);
    }
  }

  #failed(txn: Txn, err: unknown): void {
    const { part } = txn;
    if (err instanceof StaleChunkError || part.producer !== txn.producer || this.#closing.signal.aborted) return;
    part.epoch++;
    part.renew = true;
    // Retired now: a transaction opened on it after this one must not commit (its records
    // follow the aborted ones), and its start checks for exactly this.
    part.producer = undefined;
    void txn.producer.disconnect().catch(() => {});
    if (part.open) this.#close(part.open);
    const fenced = isFenced(err);
    this.#o.onError?.('transaction', err);
    if (fenced) {
      part.fencedUntil = Date.now() + this.#o.fencedWaitMs;
      this.#logger.warn('transactional producer fenced: another instance took the partition over', {
        transactionalId: part.id,
        err: errorMessage(err),
      });
    } else {
      part.failures++;
      this.#logger.error('transaction failed and was aborted; its records are consumed again', {
        transactionalId: part.id,
        from: txn.first,
        to: txn.last,
        err,
      });
    }
    if (part.owned) this.#seek(part, txn.first);
  }

  #seek(part: Part, offset: string): void {
    try {
      this.#o.seek(part.topic, part.partition, offset);
    } catch (err) {
      this.#logger.warn('seek failed; the partition resumes from its committed offset after the next rebalance', {
        topic: part.topic,
        partition: part.partition,
        err,
      });
    }
  }

  rebalancing(): void {
    for (const part of this.#parts.values()) {
      part.epoch++;
      part.renew = true;
      // Still this instance's until another initialises the producer: committing is safe, and
      // the next owner (maybe this one) reads the result with require_stable.
      if (part.open) this.#close(part.open);
    }
  }

  assigned(assignment: Record<string, number[]>): void {
    const owned = new Set<string>();
    for (const [topic, ps] of Object.entries(assignment)) for (const p of ps) owned.add(key(topic, p));
    for (const [k, part] of this.#parts) {
      part.fencedUntil = 0;
      part.owned = owned.has(k);
      if (part.owned) continue;
      // Revoked: close the producer once its last transaction has ended.
      void part.tail.then(async () => {
        if (part.owned || this.#parts.get(k) !== part) return;
        this.#parts.delete(k);
        const producer = part.producer;
        part.producer = undefined;
        await producer?.disconnect().catch(() => {});
      });
    }
  }

  flush(): void {
    for (const part of this.#parts.values()) if (part.open) this.#close(part.open);
  }

  settled(): boolean {
    return this.#active === 0;
  }

  /** Open transactions (for tests and status). */
  get activeTransactions(): number {
    return this.#active;
  }

  async close(timeoutMs: number): Promise<void> {
    this.flush();
    const deadline = Date.now() + timeoutMs;
    while (this.#active > 0 && Date.now() < deadline) await sleep(20);
    this.#closing.abort(new Error('closing'));
    const producers = [...this.#parts.values()].map((p) => p.producer);
    this.#parts.clear();
    await Promise.allSettled([...producers.map((p) => p?.disconnect()), this.#stable.close()]);
  }
}
