import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observe/logger.js';
import { createKafka } from '../../../src/stream/kafka.js';

function capture(level: 'debug' | 'info') {
  const lines: { level: string; msg: string }[] = [];
  const logger = createLogger({ level, write: (l) => void lines.push(JSON.parse(l) as { level: string; msg: string }) });
  return { lines, kafka: createKafka({ brokers: ['localhost:1'], clientId: 't' }, logger) };
}

describe("kafkajs's logs in the service's logger", () => {
  it('keeps warnings as warnings, but the known finite-retry notice of the outcome DLQ producer is a debug line', () => {
    const { lines, kafka } = capture('debug');
    kafka.logger().warn('Limiting retries for the idempotent producer may invalidate EoS guarantees');
    kafka.logger().warn('Connection timeout');
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['debug', 'kafka: Limiting retries for the idempotent producer may invalidate EoS guarantees'],
      ['warn', 'kafka: Connection timeout'],
    ]);
    const quiet = capture('info');
    quiet.kafka.logger().warn('Limiting retries for the idempotent producer may invalidate EoS guarantees');
    expect(quiet.lines).toEqual([]);
  });

  it('logs a rebalance reported as an error at info, other errors as warnings', () => {
    const { lines, kafka } = capture('info');
    kafka.logger().error('The group is rebalancing, so a rejoin is needed');
    kafka.logger().error('Broker not available');
    expect(lines.map((l) => l.level)).toEqual(['info', 'warn']);
  });
});
