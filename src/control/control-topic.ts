// The control topic's Kafka side: create it when missing (one partition, compacted, room for a
// 4 MiB model), read it from the beginning into the DesiredState before the replica is ready,
// follow it afterwards, and write records for the control plane.
//
// The reader belongs to no shared group: each replica must see EVERY record, so it joins a
// group of its own (unique id, offsets never committed) and starts from the earliest offset.
// kafkajs has no manual partition assignment; a one-member group with nothing committed is the
// same thing, and the broker forgets it when the replica leaves.
import { randomBytes } from 'node:crypto';
import type { Admin, Consumer, Kafka, Producer } from 'kafkajs';
import client from 'prom-client';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observe/logger.js';
import { MAX_CONTROL_MODEL_BYTES } from './control-records.js';
import type { DesiredState } from './desired-state.js';
import { ControlError } from './target.js';

/** Room for the largest model record (the model, its hash and a few names). */
const MAX_RECORD_BYTES = MAX_CONTROL_MODEL_BYTES + 64 * 1024;

export interface ControlTopicOptions {
  kafka: Kafka;
  topic: string;
  replicationFactor: number;
  state: DesiredState;
  /** Names this replica's private reader group (with a random suffix). */
  instanceId: string;
  logger: Logger;
  /** Where td_control_apply_errors_total is registered. */
  registry?: client.Registry;
}

/** Creates the control topic when missing; refuses one that is not a single partition. */
export async function ensureControlTopic(admin: Admin, topic: string, replicationFactor: number, logger: Logger): Promise<void> {
  const existing = new Set(await admin.listTopics());
  if (!existing.has(topic)) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic,
            numPartitions: 1,
            replicationFactor,
            configEntries: [
              { name: 'cleanup.policy', value: 'compact' },
              { name: 'max.message.bytes', value: String(MAX_RECORD_BYTES) },
            ],
          },
        ],
      });
      logger.info('created the control topic', { topic });
    } catch (err) {
      if (!/already exists/i.test(errorMessage(err))) throw err;
    }
  }
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  const partitions = meta.topics[0]?.partitions.length ?? 0;
  if (partitions !== 1) {
    throw new ControlError('failed_precondition', `control topic ${topic} has ${partitions} partitions; it must have exactly 1 (desired state is read in order)`);
  }
}

export class ControlTopic {
  readonly #o: ControlTopicOptions;
  readonly #log: Logger;
  readonly #applyErrors: client.Counter<'key'> | undefined;
  #consumer: Consumer | undefined;
  #producer: Producer | undefined;
  #admin: Admin | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(opts: ControlTopicOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ component: 'control-topic' });
    if (opts.registry) {
      const name = 'td_control_apply_errors_total';
      this.#applyErrors =
        (opts.registry.getSingleMetric(name) as client.Counter<'key'> | undefined) ??
        new client.Counter({ name, help: 'Control-topic records this replica refused or could not apply (it kept its state), by record key kind.', labelNames: ['key'], registers: [opts.registry] });
    }
  }

  /** Creates the topic if needed, reads it to its end into the state, then keeps following it. */
  async start(opts: { timeoutMs?: number } = {}): Promise<void> {
    const { kafka, topic, state } = this.#o;
    this.#unsubscribe = state.onApplyError((e) => this.#applyErrors?.inc({ key: e.key.startsWith('policy/') ? 'policy' : e.key === 'model' || e.key === 'thresholds' ? e.key : 'other' }));
    const admin = (this.#admin = kafka.admin());
    await admin.connect();
    await ensureControlTopic(admin, topic, this.#o.replicationFactor, this.#log);
    const [end] = await admin.fetchTopicOffsets(topic);
    const high = Number(end?.high ?? 0);
    const low = Number(end?.low ?? 0);

    const producer = (this.#producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 }));
    await producer.connect();

    const consumer = (this.#consumer = kafka.consumer({
      groupId: `tiny-dancer.control.${this.#o.instanceId}.${randomBytes(4).toString('hex')}`,
      maxBytesPerPartition: MAX_RECORD_BYTES * 2,
      maxWaitTimeInMs: 250,
      allowAutoTopicCreation: false,
    }));
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let processed = -1;
    let caughtUp!: () => void;
    const ready = new Promise<void>((r) => (caughtUp = r));
    if (high <= low) caughtUp();
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch, heartbeat }) => {
        for (const m of batch.messages) {
          await state.handle(m.key ? m.key.toString('utf8') : '', m.value ? new Uint8Array(m.value) : null, Number(m.offset));
          processed = Number(m.offset);
          await heartbeat();
        }
        processed = Math.max(processed, Number(batch.lastOffset()));
        if (processed >= high - 1) caughtUp();
      },
    });
    const timeoutMs = opts.timeoutMs ?? 0;
    let timer: NodeJS.Timeout | undefined;
    try {
      await (timeoutMs > 0
        ? Promise.race([
            ready,
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new ControlError('unavailable', `the control topic ${topic} was not read to its end (offset ${high}) within ${timeoutMs} ms`)), timeoutMs);
            }),
          ])
        : ready);
    } finally {
      clearTimeout(timer);
    }
    this.#log.info('control topic read', { topic, records: high - low, revision: state.revision });
  }

  /** Writes one record (null: tombstone) and returns its offset. */
  async write(key: string, value: Buffer | null): Promise<number> {
    const producer = this.#producer;
    if (!producer) throw new ControlError('unavailable', 'the control topic is not connected (the service is starting or stopped)');
    try {
      const [meta] = await producer.send({ topic: this.#o.topic, acks: -1, messages: [{ key, value, partition: 0 }] });
      if (!meta || meta.baseOffset === undefined) throw new Error('the broker returned no offset');
      return Number(meta.baseOffset);
    } catch (err) {
      if (err instanceof ControlError) throw err;
      throw new ControlError('unavailable', `could not write to the control topic ${this.#o.topic}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#o.state.close();
    await this.#consumer?.disconnect().catch(() => {});
    await this.#producer?.disconnect().catch(() => {});
    await this.#admin?.disconnect().catch(() => {});
  }
}
