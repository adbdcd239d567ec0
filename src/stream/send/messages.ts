// The contract between the consuming thread (thread.ts) and the producer thread (worker.ts):
// every message either side posts is one of these types.
import type { Level } from '../../observe/logger.js';
import type { ThreadError } from '../../threads/error.js';
import type { CloseThread, ThreadReady, ThreadStartFailed } from '../../threads/messages.js';
import type { RouteTopics } from '../records.js';

/** workerData of the producer thread: what it needs to build its own kafkajs client. */
export interface ProducerInit {
  brokers: string[];
  clientId: string;
  /**
   * KAFKA_SSL_* / KAFKA_SASL_* as given: the thread builds its own security settings (and its
   * own OAuth token provider) from them, since those objects cannot cross threads.
   */
  security: Record<string, string>;
  /** [lightweight, heavyweight, dlq]: where the packed records' routes point. */
  topics: RouteTopics;
  logLevel: Level;
}

export type ToProducer =
  /** Produce the records of a pack (./records.ts) with acks=all; answered by sent/failed. */
  | { type: 'send'; id: number; buffer: SharedArrayBuffer; length: number }
  /** Disconnect and end the thread; answered by closed, then its exit. */
  | CloseThread;

export type FromProducer =
  /** The producer is connected; sends are accepted. */
  | ThreadReady
  /** The producer could not connect; the thread ends. */
  | ThreadStartFailed
  | { type: 'sent'; id: number }
  | { type: 'failed'; id: number; error: ThreadError }
  /** One line of the thread's structured log (JSON), for the service's logger. */
  | { type: 'log'; line: string }
  | { type: 'closed' };
