// Start-up's patience with the broker: a client with no retries of its own and no logs asks for
// the cluster's metadata until it answers, so the wait is one backoff and one log line per
// window (kafkajs would log every failed connection). A secured cluster is checked first, so a
// wrong CA or mechanism fails at once, in words.
import type { Config } from '../config.js';
import type { Logger } from '../observe/logger.js';
import type { StartupPatience } from '../startup.js';
import { createKafka } from './kafka.js';
import { isRetriableKafkaError } from './kafka-errors.js';
import { preflightKafka } from './preflight.js';
import { securityFailure } from './security-errors.js';

export async function waitForBroker(c: Config, patience: StartupPatience, logger: Logger): Promise<void> {
  await patience.until(
    'kafka',
    `the Kafka broker at ${c.brokers.join(',')}`,
    async () => {
      await preflightKafka(c.brokers, c.kafkaSecurity, logger);
      const probe = createKafka(c, logger, { logLevel: 0 /* NOTHING */, retry: { retries: 0 } }).admin();
      try {
        await probe.connect();
        await probe.listTopics();
      } catch (err) {
        throw securityFailure(err, c.brokers) ?? err;
      } finally {
        await probe.disconnect().catch(() => {});
      }
    },
    isRetriableKafkaError,
  );
}
