// The decision records' producer on a thread of its own (at-least-once mode).
//
// Why: at full rate the consuming thread is the service's bottleneck, and building kafkajs
// produce requests (an Encoder per record and per header, CRC32C, partition grouping, the
// socket writes) was about a quarter of its time. The consuming thread now packs each chunk's
// records into one SharedArrayBuffer (../records.ts) and posts it here; the producer thread
// unpacks them as views and runs an ordinary idempotent kafkajs producer. The pack stays
// readable by the consuming thread, so a failed send can be retried with the same bytes.
//
// Failure: a send the producer rejects fails with its error (and its `retriable` flag); a
// thread that dies fails every send it held with a retriable ProducerThreadError, and the next
// send starts a new thread. Either way the chunk's offsets are not committed until a retry
// succeeds (the processor's produce stage retries with backoff), so nothing is lost.
import type { KafkaSecurity } from '../../config-security.js';
import { TinyDancerError } from '../../errors.js';
import type { Fields, Level, Logger } from '../../observe/logger.js';
import { ThreadStartError, type ThreadError } from '../../threads/error.js';
import { ThreadHost } from '../../threads/host.js';
import { workerScript } from '../../threads/script.js';
import type { PackedRecords, RouteTopics } from '../records.js';
import type { FromProducer, ProducerInit, ToProducer } from './messages.js';

export class ProducerThreadError extends TinyDancerError {}

export interface ProducerThreadOptions {
  brokers: string[];
  clientId: string;
  kafkaSecurity: KafkaSecurity;
  topics: RouteTopics;
  logger: Logger;
  /** Called when the running thread ends unasked (not by close()). */
  onUnexpectedExit?: (code: number) => void;
}

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The thread's old generation, in MB. What it keeps between sends is small (the producer's
 * state; sends in flight are bounded by the processor's permits); without a cap V8 let it grow
 * to ~25 MB before collecting, against serve's 256 MB RSS budget. Its young generation follows
 * the process's --max-semi-space-size (a V8 flag wins over a worker's resourceLimits).
 */
const OLD_GENERATION_MB = 48;

const LEVELS: ReadonlySet<string> = new Set<Level>(['debug', 'info', 'warn', 'error']);
const SCRIPT = workerScript(import.meta.url, 'worker');

/** A send's failure as the processor's retry loop sees it. */
function sendError(e: ThreadError): ProducerThreadError {
  return new ProducerThreadError(`${e.name}: ${e.message}`, { retriable: e.retriable });
}

export class ProducerThread {
  readonly #logger: Logger;
  readonly #onUnexpectedExit: ((code: number) => void) | undefined;
  readonly #thread: ThreadHost<ToProducer, FromProducer>;
  /** Sends posted to the running thread and not yet answered. */
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;

  constructor(opts: ProducerThreadOptions) {
    this.#logger = opts.logger.child({ component: 'producer-thread' });
    this.#onUnexpectedExit = opts.onUnexpectedExit;
    const level = (['debug', 'info', 'warn', 'error'] as const).find((l) => opts.logger.isLevelEnabled(l)) ?? 'error';
    const init: ProducerInit = { brokers: [...opts.brokers], clientId: opts.clientId, security: opts.kafkaSecurity.source(), topics: opts.topics, logLevel: level };
    this.#thread = new ThreadHost<ToProducer, FromProducer>({
      name: 'the producer thread',
      script: SCRIPT,
      workerData: () => init,
      resourceLimits: { maxOldGenerationSizeMb: OLD_GENERATION_MB },
      crashError: (message, cause) => new ProducerThreadError(message, { retriable: true, cause }),
      onMessage: (m) => this.#onMessage(m),
      // No replacement here: the next send starts a new thread.
      onExit: ({ code, error, wasReady }) => {
        if (wasReady) {
          this.#logger.error('producer thread exited; the next send starts a new one', { code, pending: this.#pending.size, err: error.cause });
          this.#onUnexpectedExit?.(code);
        }
        this.#failPending(error);
      },
    });
  }

  /** Sends posted and not yet answered. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Starts the thread and connects its producer; rejects when it cannot connect. */
  async start(): Promise<void> {
    await this.#running();
  }

  /** Produces a pack's records (acks=all); resolves once Kafka acknowledged all of them. */
  async send(pack: PackedRecords): Promise<void> {
    if (pack.records === 0) return;
    if (this.#closed) throw new ProducerThreadError('the producer thread is closed', { retriable: false });
    await this.#running();
    const id = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#thread.post({ type: 'send', id, buffer: pack.buffer, length: pack.length });
    });
  }

  /**
   * Disconnects the producer and ends the thread; after `timeoutMs` the thread is terminated.
   * Sends still unanswered then fail (their chunks are not committed: redelivered).
   */
  async close(timeoutMs = 10_000): Promise<void> {
    this.#closed = true;
    const inTime = await this.#thread.close({ type: 'close' }, timeoutMs);
    if (!inTime) this.#logger.warn('producer thread did not close in time; terminated it', { timeoutMs, pending: this.#pending.size });
    this.#failPending(new ProducerThreadError('the producer thread closed before Kafka answered', { retriable: true }));
  }

  /**
   * Ends the thread at once, as a crash would: no disconnect, every send it held fails with a
   * retriable ProducerThreadError, and the next send starts a new thread. (What a supervisor
   * does with a wedged thread; the integration tests use it to crash one on purpose.)
   */
  kill(): Promise<void> {
    return this.#thread.kill();
  }

  async #running(): Promise<void> {
    try {
      await this.#thread.start();
    } catch (err) {
      if (err instanceof ThreadStartError) {
        throw new ProducerThreadError(`the producer could not connect: ${err.reported.message}`, { retriable: err.reported.retriable });
      }
      throw err;
    }
  }

  #onMessage(m: FromProducer): void {
    switch (m.type) {
      case 'sent':
        this.#settle(m.id)?.resolve();
        break;
      case 'failed':
        this.#settle(m.id)?.reject(sendError(m.error));
        break;
      case 'log':
        this.#relay(m.line);
        break;
      case 'closed':
        break;
    }
  }

  #settle(id: number): Pending | undefined {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    return p;
  }

  #failPending(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  /** A line of the thread's log, re-emitted through the service's logger. */
  #relay(line: string): void {
    try {
      const { level, msg, time: _time, ...fields } = JSON.parse(line) as Fields & { level: string; msg: string };
      const lvl = (LEVELS.has(level) ? level : 'info') as Level;
      this.#logger[lvl](String(msg), fields);
    } catch {
      this.#logger.warn('unreadable log line from the producer thread', { line: line.slice(0, 500) });
    }
  }
}
