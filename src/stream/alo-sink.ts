// At-least-once delivery: a chunk's records go to the producer thread (./send/thread.ts) or to
// a producer on this thread, its rows to the decision log, both at once; the chunk is delivered
// when Kafka acknowledged every record (acks=-1, idempotent) and the rows are durable. Offsets
// are the processor's business (its commit scheduler), so a batch never waits here.
import type { Kafka, Producer } from 'kafkajs';
import type { Chunk } from './chunk.js';
import { DECISION_PRODUCER } from './kafka.js';
import { MessageLists, RecordPacker, type RouteTopics } from './records.js';
import { retrying, type RetryOptions } from './retry.js';
import type { BatchTicket, DecisionLogPort, DeliverySink } from './sink.js';
import { ProducerThread, type ProducerThreadOptions } from './send/thread.js';

/** First guess of a chunk's packed bytes per request (the pack grows). */
const PACK_BYTES_PER_REQUEST = 2048;

export interface AloSinkOptions {
  kafka: Kafka;
  log: DecisionLogPort;
  topics: RouteTopics;
  /** The producer thread's options; undefined: produce on this thread. */
  thread?: ProducerThreadOptions | undefined;
  createProducerThread?: ((opts: ProducerThreadOptions) => ProducerThread) | undefined;
  /** Retry hooks (metrics, logs, last error) per stage. */
  retry: (stage: 'produce' | 'log') => RetryOptions;
}

type Writer = RecordPacker | MessageLists;

export class AtLeastOnceSink implements DeliverySink<Writer> {
  readonly mode = 'at_least_once';
  readonly commitsOffsets = false;
  readonly #o: AloSinkOptions;
  readonly #thread: ProducerThread | undefined;
  readonly #producer: Producer | undefined;

  constructor(opts: AloSinkOptions) {
    this.#o = opts;
    if (opts.thread) this.#thread = opts.createProducerThread ? opts.createProducerThread(opts.thread) : new ProducerThread(opts.thread);
    else this.#producer = opts.kafka.producer(DECISION_PRODUCER);
  }

  /** Where records are produced (for the start-up log). */
  get on(): string {
    return this.#thread ? 'producer thread' : 'consuming thread';
  }

  async start(): Promise<void> {
    if (this.#thread) await this.#thread.start();
    else await this.#producer!.connect();
  }

  writer(requests: number): Writer {
    return this.#thread ? new RecordPacker(requests * PACK_BYTES_PER_REQUEST) : new MessageLists();
  }

  beginBatch(topic: string, partition: number): Promise<BatchTicket> {
    return Promise.resolve({ topic, partition, epoch: 0 });
  }

  async deliver(chunk: Chunk<Writer>, _ticket: BatchTicket, signal: AbortSignal): Promise<void> {
    const rows = chunk.rows;
    const logged = rows.length > 0 ? retrying(() => this.#o.log.write(rows), signal, this.#o.retry('log')) : Promise.resolve();
    let produced: Promise<unknown> = Promise.resolve();
    const out = chunk.records;
    if (out.size > 0) {
      if (out instanceof RecordPacker) {
        const pack = out.finish();
        produced = retrying(() => this.#thread!.send(pack), signal, this.#o.retry('produce'));
      } else {
        const topicMessages = out.topicMessages(this.#o.topics);
        produced = retrying(() => this.#producer!.sendBatch({ topicMessages, acks: -1 }), signal, this.#o.retry('produce'));
      }
    }
    await Promise.all([produced, logged]);
  }

  rebalancing(): void {}
  assigned(): void {}
  flush(): void {}
  settled(): boolean {
    return true;
  }

  async close(timeoutMs: number): Promise<void> {
    await Promise.allSettled([this.#producer?.disconnect(), this.#thread?.close(timeoutMs)]);
  }
}
