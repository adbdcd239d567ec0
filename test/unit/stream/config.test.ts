import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Secret, decodesInWorkers, describeConfig, loadConfig, withConfig } from '../../../src/config.js';
import { ConfigError } from '../../../src/errors.js';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('has the docs/contracts.md §2 defaults', () => {
    const c = loadConfig({});
    expect(c.brokers).toEqual(['localhost:9092']);
    expect(c.brokersFromEnv).toBe(false);
    expect(c.topics).toEqual({
      requests: 'routing.requests',
      lightweight: 'routing.lightweight',
      heavyweight: 'routing.heavyweight',
      dlq: 'routing.dlq',
      outcomes: 'routing.outcomes',
      control: 'routing.control',
      status: 'routing.status',
    });
    expect(c.tenantKey).toBe('tenant');
    expect(c.heartbeatMs).toBe(2000);
    expect(c.instanceId).toMatch(new RegExp(`-${process.pid}$`));
    expect(c.exactlyOnce).toBe(false);
    expect(c.groupId).toBe('tiny-dancer');
    expect(c.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/postgres');
    expect(c.databaseUrlFromEnv).toBe(false);
    expect(c.grpcAddr).toEqual({ host: '127.0.0.1', port: 50051 });
    expect(c.httpAddr).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(c.adminToken).toBeUndefined();
    expect(c.modelPath).toBeUndefined();
  });

  it('TD_TOPIC_RESPONSES: off unless set; a topic of its own; TD_RESPONSE_TOP_K all by default, else 1..1000', () => {
    expect(loadConfig({}).topics.responses).toBeUndefined();
    expect('responses' in loadConfig({}).topics).toBe(false);
    expect(loadConfig({ TD_TOPIC_RESPONSES: '  ' }).topics.responses).toBeUndefined();
    expect(loadConfig({ TD_TOPIC_RESPONSES: 'routing.responses' }).topics.responses).toBe('routing.responses');
    expect(configError({ TD_TOPIC_RESPONSES: 'bad topic' }).message).toMatch(/^TD_TOPIC_RESPONSES="bad topic" is invalid: a Kafka topic name/);
    expect(configError({ TD_TOPIC_RESPONSES: 'routing.requests' }).message).toBe(
      'TD_TOPIC_RESPONSES="routing.requests" is invalid: it is already TD_TOPIC_REQUESTS; give the responses a topic of their own',
    );
    expect(configError({ TD_TOPIC_RESPONSES: 'mine', TD_TOPIC_DLQ: 'mine' }).message).toMatch(/it is already TD_TOPIC_DLQ/);
    expect(loadConfig({}).responseTopK).toBeUndefined();
    expect(loadConfig({ TD_RESPONSE_TOP_K: '5' }).responseTopK).toBe(5);
    expect(loadConfig({ TD_RESPONSE_TOP_K: '1000' }).responseTopK).toBe(1000);
    for (const bad of ['0', '-1', '1001', '2.5', 'all', 'five']) {
      const e = configError({ TD_RESPONSE_TOP_K: bad });
      expect(e.message).toMatch(/^TD_RESPONSE_TOP_K=.* is invalid: expected a whole number in \[1, 1000\]$/);
      expect(e.message).not.toMatch(/\n/);
    }
  });

  it('TD_PRODUCER_THREAD: true by default, or false', () => {
    expect(loadConfig({}).producerThread).toBe(true);
    expect(loadConfig({ TD_PRODUCER_THREAD: 'false' }).producerThread).toBe(false);
    expect(() => loadConfig({ TD_PRODUCER_THREAD: 'auto' })).toThrow(/^TD_PRODUCER_THREAD="auto" is invalid: expected true or false/);
  });

  it('exactly-once: TD_TRANSACTIONAL_ID prefixes the per-partition ids (default: the group id); TD_EOS_COMMIT_INTERVAL_MS 100 by default, validated', () => {
    expect(loadConfig({}).transactionalId).toBe('tiny-dancer');
    expect(loadConfig({ TD_GROUP_ID: 'g1' }).transactionalId).toBe('g1');
    expect(loadConfig({ TD_GROUP_ID: 'g1', TD_TRANSACTIONAL_ID: 'tx' }).transactionalId).toBe('tx');
    expect(loadConfig({}).eosCommitIntervalMs).toBe(100);
    expect(loadConfig({ TD_EOS_COMMIT_INTERVAL_MS: '250' }).eosCommitIntervalMs).toBe(250);
    for (const bad of ['0', 'soon', '-5', '1.5', '600000']) expect(configError({ TD_EOS_COMMIT_INTERVAL_MS: bad }).message).toMatch(/^TD_EOS_COMMIT_INTERVAL_MS=/);
  });

  it('TD_DECODE_IN_WORKERS: auto (the default) and true decode both encodings on the workers, false neither', () => {
    for (const encoding of ['json', 'protobuf'] as const) {
      expect(decodesInWorkers(loadConfig({}).decodeInWorkers, encoding)).toBe(true);
      expect(decodesInWorkers(loadConfig({ TD_DECODE_IN_WORKERS: 'true' }).decodeInWorkers, encoding)).toBe(true);
      expect(decodesInWorkers(loadConfig({ TD_DECODE_IN_WORKERS: 'false' }).decodeInWorkers, encoding)).toBe(false);
    }
  });

  it('TD_TRACING: on by default, off, or refused naming the variable', () => {
    expect(loadConfig({}).tracing).toBe(true);
    expect(loadConfig({ TD_TRACING: 'off' }).tracing).toBe(false);
    expect(loadConfig({ TD_TRACING: ' ON ' }).tracing).toBe(true);
    expect(() => loadConfig({ TD_TRACING: 'false' })).toThrow(/^TD_TRACING="false" is invalid: expected on or off$/);
  });

  it('TD_DECODE_IN_WORKERS: auto by default, or true/false', () => {
    expect(loadConfig({}).decodeInWorkers).toBe('auto');
    expect(loadConfig({ TD_DECODE_IN_WORKERS: 'AUTO' }).decodeInWorkers).toBe('auto');
    expect(loadConfig({ TD_DECODE_IN_WORKERS: 'true' }).decodeInWorkers).toBe(true);
    expect(loadConfig({ TD_DECODE_IN_WORKERS: 'off' }).decodeInWorkers).toBe(false);
  });

  it('reads every variable', () => {
    const c = loadConfig({
      KAFKA_BROKERS: 'a:1, b:2',
      TD_TOPIC_REQUESTS: 'in',
      TD_TOPIC_LIGHTWEIGHT: 'l',
      TD_TOPIC_HEAVYWEIGHT: 'h',
      TD_TOPIC_DLQ: 'd',
      TD_TOPIC_OUTCOMES: 'o',
      TD_TOPIC_CONTROL: 'ctl',
      TD_EXACTLY_ONCE: 'true',
      TD_GROUP_ID: 'g',
      DATABASE_URL: 'postgresql://u:pw@db:5433/x',
      TD_GRPC_ADDR: '0.0.0.0:1234',
      TD_ADMIN_TOKEN: 'sekrit-token-123',
      TD_HTTP_ADDR: '[::1]:9000',
      TD_MODEL_PATH: '/m.safetensors',
      TD_BREAKER_TIMEOUT_MS: '50',
      TD_BREAKER_ERROR_PERCENT: '25',
      TD_BREAKER_VOLUME_THRESHOLD: '3',
      TD_BREAKER_RESET_MS: '700',
      TD_MAX_IN_FLIGHT: '32',
      TD_WORKERS: '2',
      TD_CONFIDENCE_THRESHOLD: '0.8',
      TD_LOG_LEVEL: 'DEBUG',
    });
    expect(c.brokers).toEqual(['a:1', 'b:2']);
    expect(c.brokersFromEnv).toBe(true);
    expect(c.topics.requests).toBe('in');
    expect(c.topics.control).toBe('ctl');
    expect(c.exactlyOnce).toBe(true);
    expect(c.databaseUrlFromEnv).toBe(true);
    expect(c.grpcAddr).toEqual({ host: '0.0.0.0', port: 1234 });
    expect(c.httpAddr).toEqual({ host: '::1', port: 9000 });
    expect(c.adminToken?.reveal()).toBe('sekrit-token-123');
    expect(c.breaker).toMatchObject({ timeoutMs: 50, errorThresholdPercentage: 25, volumeThreshold: 3, resetTimeoutMs: 700 });
    expect(c.maxInFlight).toBe(32);
    expect(c.workers).toBe(2);
    expect(c.thresholds).toEqual({ confidence: 0.8 });
    expect(c.logLevel).toBe('debug');
  });

  it('names the variable and the bad value', () => {
    expect(configError({ TD_MAX_IN_FLIGHT: 'lots' }).message).toBe('TD_MAX_IN_FLIGHT="lots" is invalid: expected a whole number in [1, 100000]');
    expect(configError({ TD_EXACTLY_ONCE: 'maybe' }).message).toMatch(/^TD_EXACTLY_ONCE="maybe" is invalid: expected true or false/);
    expect(configError({ TD_DECODE_IN_WORKERS: 'sometimes' }).message).toMatch(/^TD_DECODE_IN_WORKERS="sometimes" is invalid: expected true, false or auto/);
    expect(configError({ KAFKA_BROKERS: 'localhost' }).message).toMatch(/^KAFKA_BROKERS="localhost" is invalid/);
    expect(configError({ TD_HTTP_ADDR: 'x:99999' }).message).toMatch(/^TD_HTTP_ADDR="x:99999" is invalid: the port/);
    expect(configError({ TD_TOPIC_DLQ: 'bad topic' }).message).toMatch(/^TD_TOPIC_DLQ="bad topic" is invalid/);
    expect(configError({ TD_CONFIDENCE_THRESHOLD: '1.5' }).message).toMatch(/^TD_CONFIDENCE_THRESHOLD="1.5".*\[0, 1\]/);
    expect(configError({ TD_LOG_LEVEL: 'loud' }).message).toMatch(/^TD_LOG_LEVEL="loud"/);
    expect(configError({ TD_BREAKER_ERROR_PERCENT: '0' }).message).toMatch(/^TD_BREAKER_ERROR_PERCENT="0"/);
    expect(configError({ TD_HEARTBEAT_MS: '50' }).message).toMatch(/^TD_HEARTBEAT_MS="50" is invalid: expected a whole number in \[100, 600000\]/);
    expect(configError({ TD_INSTANCE_ID: 'a b' }).message).toMatch(/^TD_INSTANCE_ID="a b" is invalid/);
    expect(configError({ TD_TOPIC_STATUS: 'a/b' }).message).toMatch(/^TD_TOPIC_STATUS="a\/b" is invalid/);
    expect(loadConfig({ TD_TENANT_KEY: 'customer', TD_INSTANCE_ID: 'pod-0', TD_HEARTBEAT_MS: '500' })).toMatchObject({ tenantKey: 'customer', instanceId: 'pod-0', heartbeatMs: 500 });
  });

  it('never echoes secrets in its errors', () => {
    const e1 = configError({ DATABASE_URL: 'mysql://u:hunter2@h/db' });
    expect(e1.message).toMatch(/^DATABASE_URL=.*postgres:\/\//);
    expect(e1.message).not.toContain('hunter2');
    const e2 = configError({ TD_ADMIN_TOKEN: 'short' });
    expect(e2.message).toMatch(/^TD_ADMIN_TOKEN is invalid/);
    expect(e2.message).not.toContain('short');
  });

  it('is frozen, deeply', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.topics)).toBe(true);
    expect(Object.isFrozen(c.breaker)).toBe(true);
    expect(() => {
      (c as { groupId: string }).groupId = 'x';
    }).toThrow(TypeError);
  });

  it('prints without the token or the database password (JSON, inspect, describe)', () => {
    const c = loadConfig({ TD_ADMIN_TOKEN: 'sekrit-token-123', DATABASE_URL: 'postgres://u:hunter2@db/x' });
    for (const printed of [JSON.stringify(c), inspect(c, { depth: 5 }), JSON.stringify(describeConfig(c)), String(c.adminToken)]) {
      expect(printed).not.toContain('sekrit-token-123');
      expect(printed).not.toContain('hunter2');
    }
    expect(JSON.stringify(c)).toContain('postgres://u:***@db/x');
    expect(JSON.stringify(c)).toContain('[redacted]');
  });

  it('withConfig overrides a frozen base without touching it', () => {
    const base = loadConfig({});
    const c = withConfig(base, { groupId: 'other', topics: { ...base.topics, requests: 'x' } });
    expect(c.groupId).toBe('other');
    expect(c.topics.requests).toBe('x');
    expect(base.topics.requests).toBe('routing.requests');
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('Secret only reveals on purpose', () => {
    const s = new Secret('abc');
    expect(`${s}`).toBe('[redacted]');
    expect(JSON.stringify({ s })).toBe('{"s":"[redacted]"}');
    expect(inspect(s)).toBe('[redacted]');
    expect(s.reveal()).toBe('abc');
  });
});
