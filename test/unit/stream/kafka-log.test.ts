import { describe, expect, it } from 'vitest';
import { noKafkaSecurity } from '../../../src/config-security.js';
import { OUTCOME_DLQ_PRODUCER } from '../../../src/feedback/consumer.js';
import { createLogger } from '../../../src/observe/logger.js';
import { DECISION_PRODUCER, createKafka } from '../../../src/stream/kafka.js';

function capture(level: 'debug' | 'info') {
  const lines: { level: string; msg: string }[] = [];
  const logger = createLogger({ level, write: (l) => void lines.push(JSON.parse(l) as { level: string; msg: string }) });
  return { lines, kafka: createKafka({ brokers: ['localhost:1'], clientId: 't', kafkaSecurity: noKafkaSecurity() }, logger) };
}

describe("kafkajs's logs in the service's logger", () => {
  it('keeps warnings as warnings and routine information as debug lines', () => {
    const { lines, kafka } = capture('debug');
    kafka.logger().warn('Connection timeout');
    kafka.logger().info('Starting');
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'kafka: Connection timeout'],
      ['debug', 'kafka: Starting'],
    ]);
  });

  it('logs a rebalance reported as an error at info, other errors as warnings', () => {
    const { lines, kafka } = capture('info');
    kafka.logger().error('The group is rebalancing, so a rejoin is needed');
    kafka.logger().error('Broker not available');
    expect(lines.map((l) => l.level)).toEqual(['info', 'warn']);
  });

  it("no producer of the service makes kafkajs warn at start (an idempotent one with the client's finite retries would)", () => {
    const { lines, kafka } = capture('info');
    kafka.producer(OUTCOME_DLQ_PRODUCER);
    kafka.producer(DECISION_PRODUCER);
    expect(lines).toEqual([]);
    // The configuration the outcome producer had before: kafkajs warns that it weakens idempotence.
    kafka.producer({ idempotent: true, maxInFlightRequests: 5, createPartitioner: OUTCOME_DLQ_PRODUCER.createPartitioner });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([['warn', 'kafka: Limiting retries for the idempotent producer may invalidate EoS guarantees']]);
  });
});
