// The kafkajs client, with its logs routed into the service's structured logger and topic
// creation for `serve` (docs/contracts.md §2: serve creates its topics when they are missing).
import kafkajs, { type Admin, type ICustomPartitioner, type ITopicConfig, type Kafka, type KafkaConfig, type ProducerConfig, type logCreator } from 'kafkajs';
import type { Config } from '../config.js';
import type { Logger } from '../observe/logger.js';
import { clientSecurity } from './security.js';

const { Kafka: KafkaClient, logLevel, Partitioners } = kafkajs;

/**
 * The partitioner every producer of the service names explicitly: kafkajs's default (murmur2,
 * Java-compatible), so a decision keyed by request_id lands where a Java client would put it.
 * Naming it also silences kafkajs's v1 → v2 migration warning.
 *
 * WHY the memo: a request's decisions are consecutive records with one key, and kafkajs asks
 * the partitioner once per record (the default hashes the key with murmur2 each time, a visible
 * share of the service's main thread). For a keyed record the default's answer
 * depends only on the key and the partition count, so the last answer is reused while both
 * repeat; anything else (an explicit partition, no key) goes to the default unchanged.
 */
export const partitioner: ICustomPartitioner = () => {
  const fallback = Partitioners.DefaultPartitioner();
  let lastKey: string | Buffer | undefined;
  let lastCount = -1;
  let lastPartition = 0;
  return (args) => {
    const { message, partitionMetadata } = args;
    const key = message.key;
    if (message.partition != null || key == null) return fallback(args);
    const count = partitionMetadata.length;
    if (count === lastCount && key === lastKey) return lastPartition;
    const partition = fallback(args);
    lastKey = key;
    lastCount = count;
    lastPartition = partition;
    return partition;
  };
};

/**
 * The decision producer's settings, on whichever thread it runs (./processor.ts,
 * ./send/worker.ts). Idempotent, so kafkajs's own retries never duplicate or reorder a record.
 * It keeps retrying (kafkajs's default for an idempotent producer): a send must not give up and
 * be re-sent under new sequence numbers; a chunk that is abandoned (drain deadline) stops
 * waiting for it instead. The memoising partitioner hashes once per request.
 */
export const DECISION_PRODUCER: Readonly<ProducerConfig> = Object.freeze({
  idempotent: true,
  maxInFlightRequests: 5,
  allowAutoTopicCreation: false,
  retry: Object.freeze({ retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 200, maxRetryTime: 10_000 }),
  createPartitioner: partitioner,
});

function bridge(logger: Logger): logCreator {
  return () =>
    ({ level, log }) => {
      const { message, timestamp: _t, logger: _l, ...fields } = log as Record<string, unknown> & { message: string };
      const msg = `kafka: ${message}`;
      const extra = { ...fields, namespace: (log as { namespace?: string }).namespace };
      if (level === logLevel.ERROR) {
        // The consumer logs a rebalance in progress as an ERROR; it is routine.
        if (/rebalanc/i.test(String(fields.error ?? message))) logger.info(msg, extra);
        else logger.warn(msg, extra);
      } else if (level === logLevel.WARN) logger.warn(msg, extra);
      // kafkajs's INFO and DEBUG are routine (connections, joins): debug here.
      else logger.debug(msg, extra);
    };
}

/**
 * Every Kafka client of the project is built here, so the TLS and SASL settings
 * (config.kafkaSecurity) reach each one: consumers, producers, the producer thread, admin.
 */
export function createKafka(config: Pick<Config, 'brokers' | 'clientId' | 'kafkaSecurity'>, logger: Logger, overrides: Partial<KafkaConfig> = {}): Kafka {
  return new KafkaClient({
    clientId: config.clientId,
    brokers: config.brokers,
    ...clientSecurity(config.kafkaSecurity, logger),
    logLevel: logger.isLevelEnabled('debug') ? logLevel.INFO : logLevel.WARN,
    logCreator: bridge(logger.child({ component: 'kafkajs' })),
    connectionTimeout: 5000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 200, retries: 8, maxRetryTime: 10_000 },
    ...overrides,
  });
}

/** Creates the service's topics that are missing; existing topics are left as they are. */
export async function ensureTopics(admin: Admin, config: Config, logger: Logger): Promise<string[]> {
  const wanted: ITopicConfig[] = [
    { topic: config.topics.requests, numPartitions: config.requestPartitions },
    { topic: config.topics.lightweight, numPartitions: config.decisionPartitions },
    { topic: config.topics.heavyweight, numPartitions: config.decisionPartitions },
    { topic: config.topics.dlq, numPartitions: Math.min(3, config.decisionPartitions) },
    { topic: config.topics.outcomes, numPartitions: config.decisionPartitions },
    ...(config.topics.responses === undefined ? [] : [{ topic: config.topics.responses, numPartitions: config.decisionPartitions }]),
  ].map((t) => ({ ...t, replicationFactor: config.replicationFactor }));
  const existing = new Set(await admin.listTopics());
  const missing = wanted.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return [];
  try {
    await admin.createTopics({ topics: missing, waitForLeaders: true });
  } catch (err) {
    // Another instance may have created them between listTopics and createTopics.
    if (!/already exists/i.test(String((err as Error).message))) throw err;
  }
  const names = missing.map((t) => t.topic);
  logger.info('created missing topics', { topics: names });
  return names;
}
