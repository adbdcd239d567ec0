// The fleet view's Kafka side (docs/contracts.md §10): this replica's heartbeats go to the
// compacted status topic, and the whole topic is read from the beginning into a FleetTable, so
// this replica answers GetFleet for every replica.
//
// WHY a consumer group of its own per replica: every replica must read every record, and
// kafkajs only consumes through a group. A group per process (named after TD_GROUP_ID, so an
// ACL on that prefix covers it) that never commits is, in effect, no group: each start reads
// the topic from its beginning again, which compaction keeps to one record per replica.
//
// The topic is created when missing: one partition (a few records per beat of each replica),
// cleanup.policy=compact, and the broker's append time as record time, so whether a replica is
// stale is judged on one clock (./fleet-table.ts).
import { randomBytes } from 'node:crypto';
import type { Admin, Consumer, Kafka, Producer } from 'kafkajs';
import { errorMessage } from '../errors.js';
import { Heartbeat, type ReplicaIdentity, type ReplicaSource } from '../observe/heartbeat.js';
import type { Logger } from '../observe/logger.js';
import { decodeReplicaStatus, encodeReplicaStatus } from './fleet-status.js';
import { FleetTable, type FleetTotalsView, type FleetViewSnapshot } from './fleet-table.js';

export interface FleetViewOptions {
  kafka: Kafka;
  admin: Admin;
  topic: string;
  /** The service's consumer group: the fleet reader's group is named after it. */
  groupId: string;
  replicationFactor: number;
  identity: ReplicaIdentity;
  source: ReplicaSource;
  heartbeatMs: number;
  logger: Logger;
  /**
   * A replica stale for this long is forgotten: the live replica with the smallest instance id
   * writes its tombstone, so compaction drops it. Default: 100 beats, at least 10 minutes.
   */
  forgetAfterMs?: number;
  now?: () => number;
}

/** Creates the status topic when it is missing (compacted, one partition, broker time). */
export async function ensureStatusTopic(admin: Admin, topic: string, replicationFactor: number, logger: Logger): Promise<boolean> {
  const existing = await admin.listTopics();
  if (existing.includes(topic)) return false;
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: 1,
        replicationFactor,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'message.timestamp.type', value: 'LogAppendTime' },
        ],
      }],
    });
  } catch (err) {
    // Another replica may have created it between the two calls.
    if (!/already exists/i.test(errorMessage(err))) throw err;
    return false;
  }
  logger.info('created the fleet status topic', { topic });
  return true;
}

export class FleetView {
  readonly #o: FleetViewOptions;
  readonly #now: () => number;
  readonly table: FleetTable;
  readonly #heartbeat: Heartbeat;
  #producer: Producer | undefined;
  #consumer: Consumer | undefined;
  #caughtUp = false;
  /** Offset the reader must pass to have read the topic once (its end when the reader started). */
  #endAtStart = 0;
  #skipped = 0;
  #stopped = false;

  constructor(opts: FleetViewOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.table = new FleetTable(opts.identity.instance);
    this.#heartbeat = new Heartbeat({
      identity: opts.identity,
      source: opts.source,
      intervalMs: opts.heartbeatMs,
      logger: opts.logger,
      send: (key, status) => this.#send(key, status === null ? null : encodeReplicaStatus(status)),
      onSent: (status) => {
        const t = this.#now();
        this.table.upsert(status, t, t);
      },
      afterBeat: () => this.#tidy(),
      ...(opts.now ? { now: opts.now } : {}),
    });
  }

  /** Creates the topic if needed, starts reading it and beating. Rejects when Kafka refuses. */
  async start(): Promise<void> {
    const o = this.#o;
    await ensureStatusTopic(o.admin, o.topic, o.replicationFactor, o.logger);
    this.#producer = o.kafka.producer({ allowAutoTopicCreation: false, idempotent: false, maxInFlightRequests: 1, retry: { retries: 2 } });
    await this.#producer.connect();
    if (this.#stopped) return;
    this.#heartbeat.start();

    const ends = await o.admin.fetchTopicOffsets(o.topic);
    this.#endAtStart = ends.reduce((n, p) => Math.max(n, Number(p.high)), 0);
    if (this.#endAtStart === 0) this.#caughtUp = true;
    const groupId = `${o.groupId}.fleet.${o.identity.instance}.${randomBytes(4).toString('hex')}`;
    if (this.#stopped) return;
    const consumer = (this.#consumer = o.kafka.consumer({ groupId, maxWaitTimeInMs: 250, allowAutoTopicCreation: false }));
    await consumer.connect();
    await consumer.subscribe({ topics: [o.topic], fromBeginning: true });
    if (this.#stopped) return; // stop() disconnects it
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        this.#read(message.key, message.value, Number(message.timestamp), Number(message.offset));
      },
    });
    o.logger.info('fleet view reading the status topic', { topic: o.topic, instance: o.identity.instance, heartbeatMs: o.heartbeatMs });
  }

  #read(key: Buffer | null, value: Buffer | null, timestamp: number, offset: number): void {
    if (offset + 1 >= this.#endAtStart) this.#caughtUp = true;
    if (!key) return;
    const instance = key.toString('utf8');
    if (value === null || value.length === 0) {
      // A tombstone; our own only when another process took our instance id before us.
      if (instance !== this.table.self) this.table.remove(instance);
      return;
    }
    try {
      this.table.upsert(decodeReplicaStatus(value, instance), timestamp, this.#now());
    } catch (err) {
      this.#skipped++;
      if (this.#skipped === 1 || this.#skipped % 100 === 0) {
        this.#o.logger.warn('fleet view: a status record was skipped', { instance, offset, err: errorMessage(err), skipped: this.#skipped });
      }
    }
  }

  async #send(key: string, value: Buffer | null): Promise<void> {
    const p = this.#producer;
    if (!p) throw new Error('the status producer is not connected');
    await p.send({ topic: this.#o.topic, acks: 1, messages: [{ key, value }] });
  }

  /** The steward tombstones replicas stale for long, so the topic does not grow with every crash. */
  async #tidy(): Promise<void> {
    const now = this.#now();
    if (!this.table.isSteward(now)) return;
    const forgetAfter = this.#o.forgetAfterMs ?? Math.max(600_000, 100 * this.#o.heartbeatMs);
    for (const instance of this.table.forgotten(now, forgetAfter)) {
      await this.#send(instance, null);
      this.table.remove(instance);
      this.#o.logger.info('fleet view: forgot a replica that stopped without a tombstone', { instance });
    }
  }

  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  snapshot(includeStale: boolean): FleetViewSnapshot {
    return this.table.snapshot(this.#now(), includeStale, this.#caughtUp);
  }

  totals(): FleetTotalsView {
    return this.table.totals(this.#now());
  }

  /** Stops beating (a clean stop writes the tombstone first) and reading. Never rejects. */
  async stop(opts: { tombstone: boolean } = { tombstone: true }): Promise<void> {
    this.#stopped = true;
    await this.#heartbeat.stop({ tombstone: opts.tombstone && this.#producer !== undefined });
    await this.#consumer?.disconnect().catch(() => {});
    await this.#producer?.disconnect().catch(() => {});
  }
}
