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
import { Worker } from 'node:worker_threads';
import type { KafkaSecurity } from '../../config-security.js';
import { TinyDancerError, errorMessage } from '../../errors.js';
import type { Fields, Level, Logger } from '../../observe/logger.js';
import { workerScript } from '../../worker-script.js';
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

export class ProducerThread {
  readonly #init: ProducerInit;
  readonly #logger: Logger;
  readonly #onUnexpectedExit: ((code: number) => void) | undefined;
  readonly #script = workerScript(import.meta.url, 'worker');
  #worker: Worker | undefined;
  #starting: Promise<Worker> | undefined;
  /** Sends posted to the running thread and not yet answered. */
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: ProducerThreadOptions) {
    this.#logger = opts.logger.child({ component: 'producer-thread' });
    this.#onUnexpectedExit = opts.onUnexpectedExit;
    const level = (['debug', 'info', 'warn', 'error'] as const).find((l) => opts.logger.isLevelEnabled(l)) ?? 'error';
    this.#init = { brokers: [...opts.brokers], clientId: opts.clientId, security: opts.kafkaSecurity.source(), topics: opts.topics, logLevel: level };
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
    const worker = await this.#running();
    const id = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const msg: ToProducer = { type: 'send', id, buffer: pack.buffer, length: pack.length };
      worker.postMessage(msg);
    });
  }

  /**
   * Disconnects the producer and ends the thread; after `timeoutMs` the thread is terminated.
   * Sends still unanswered then fail (their chunks are not committed: redelivered).
   */
  close(timeoutMs = 10_000): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      const worker = this.#worker ?? (await this.#starting?.catch(() => undefined));
      if (!worker) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'close' } satisfies ToProducer);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      });
      const late = await Promise.race([exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        this.#logger.warn('producer thread did not close in time; terminating it', { timeoutMs, pending: this.#pending.size });
        await worker.terminate();
      }
    })();
    return this.#closing;
  }

  /**
   * Ends the thread at once, as a crash would: no disconnect, every send it held fails with a
   * retriable ProducerThreadError, and the next send starts a new thread. (What a supervisor
   * does with a wedged thread; the integration tests use it to crash one on purpose.)
   */
  async kill(): Promise<void> {
    const worker = this.#worker;
    if (worker) await worker.terminate();
  }

  #running(): Promise<Worker> {
    if (this.#worker) return Promise.resolve(this.#worker);
    this.#starting ??= this.#spawn().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  #spawn(): Promise<Worker> {
    return new Promise<Worker>((resolve, reject) => {
      const worker = new Worker(this.#script.target, { workerData: this.#init, eval: this.#script.eval, resourceLimits: { maxOldGenerationSizeMb: OLD_GENERATION_MB } });
      let ready = false;
      let lastError: Error | undefined;
      worker.on('message', (m: FromProducer) => {
        switch (m.type) {
          case 'sent':
            this.#settle(m.id)?.resolve();
            break;
          case 'failed':
            this.#settle(m.id)?.reject(new ProducerThreadError(`${m.error.name}: ${m.error.message}`, { retriable: m.error.retriable }));
            break;
          case 'log':
            this.#relay(m.line);
            break;
          case 'ready':
            ready = true;
            this.#worker = worker;
            resolve(worker);
            break;
          case 'start-failed':
            lastError = new ProducerThreadError(`the producer could not connect: ${m.error.message}`, { retriable: m.error.retriable });
            break;
          case 'closed':
            break;
        }
      });
      worker.on('error', (err) => {
        lastError = err;
        this.#logger.error('producer thread failed', { err });
      });
      worker.on('exit', (code) => {
        if (this.#worker === worker) this.#worker = undefined;
        const why = lastError ? `: ${errorMessage(lastError)}` : '';
        if (!ready) {
          reject(lastError instanceof ProducerThreadError ? lastError : new ProducerThreadError(`the producer thread exited with code ${code} before it was ready${why}`, { retriable: true, cause: lastError }));
          return;
        }
        if (this.#pending.size > 0 || !this.#closed) {
          const err = new ProducerThreadError(`the producer thread exited with code ${code}${why}`, { retriable: true, cause: lastError });
          if (!this.#closed) {
            this.#logger.error('producer thread exited; the next send starts a new one', { code, pending: this.#pending.size, err: lastError });
            this.#onUnexpectedExit?.(code);
          }
          for (const p of this.#pending.values()) p.reject(err);
          this.#pending.clear();
        }
      });
    });
  }

  #settle(id: number): Pending | undefined {
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    return p;
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
