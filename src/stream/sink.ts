// Where a chunk's output goes: its decision and DLQ records to Kafka, its rows to the decision
// log. Two ways, one interface:
// - at-least-once (./alo-sink.ts): records acknowledged by every in-sync replica and rows
//   durable, then the processor's commit scheduler commits the consumer's offsets;
// - exactly-once (./transactional-sink.ts): records and the consumed offsets in one Kafka
//   transaction per partition and commit interval, committed once the rows are durable.
import type { Chunk, LoggedDecision } from './chunk.js';
import type { RecordWriter } from './records.js';

/**
 * What the processor needs from the decision log (the store's DecisionLog, adapted in app.ts).
 * `write` resolves once the rows are durable; it retries transient database failures itself
 * and rejects only when it cannot ever succeed (closed, fatal).
 */
export interface DecisionLogPort {
  write(rows: LoggedDecision[]): Promise<void>;
  /** Rows accepted but not yet durable. */
  backlog(): number;
  /** True while the log wants its writers to slow down. */
  underPressure(): boolean;
  /** False when the log cannot take writes at all (readiness). */
  accepting(): boolean;
}

export type DeliveryMode = 'at_least_once' | 'exactly_once';

/** A fetched batch the sink agreed to take, and the position it expects chunks of it from. */
export interface BatchTicket {
  readonly topic: string;
  readonly partition: number;
  /** The sink's epoch of the partition when the batch began; chunks of an older epoch are dropped. */
  readonly epoch: number;
}

export interface DeliverySink<W extends RecordWriter = RecordWriter> {
  readonly mode: DeliveryMode;
  /** True when the sink commits the consumed offsets itself (in its transactions). */
  readonly commitsOffsets: boolean;
  start(): Promise<void>;
  /** A record writer for a chunk of `requests` request records. */
  writer(requests: number): W;
  /**
   * Called before a fetched batch is processed. Undefined: skip the batch (the sink moved the
   * partition's position, and the consumer fetches again from there).
   */
  beginBatch(topic: string, partition: number, firstOffset: string, signal: AbortSignal): Promise<BatchTicket | undefined>;
  /**
   * Delivers a chunk. Resolves once its records are acknowledged and its rows durable
   * (at-least-once) or once its transaction committed (exactly-once); rejects when it could not
   * be delivered. `signal` abandons the waits (the drain's deadline).
   *
   * `release`, when given, may be called earlier, once the chunk holds nothing in memory any
   * more (its records sent, its rows durable) although it is not delivered yet: a transaction
   * that waits for its commit interval then does not hold the in-flight window.
   */
  deliver(chunk: Chunk<W>, ticket: BatchTicket, signal: AbortSignal, release?: () => void): Promise<void>;
  /** The group is rebalancing: the sink's positions of every partition are void. */
  rebalancing(): void;
  /** The group's new assignment. */
  assigned(assignment: Record<string, number[]>): void;
  /** Finish open work now instead of at the next interval (a drain, or the in-flight window is full). */
  flush(): void;
  /** True when nothing the sink holds waits to be delivered or committed. */
  settled(): boolean;
  close(timeoutMs: number): Promise<void>;
}
