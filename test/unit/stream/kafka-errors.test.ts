// Which kafkajs failures start-up waits out: the errors are kafkajs's own classes, as its
// clients throw them (a retry budget spent on a refused connection wraps the connection error).
import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { isRetriableKafkaError } from '../../../src/stream/kafka-errors.js';

const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded } = kafkajs;
// kafkajs's typings leave out some constructor arguments its own code passes.
type Ctor<A extends unknown[]> = new (...args: A) => Error;
const KafkaJSNonRetriableError = kafkajs.KafkaJSNonRetriableError as unknown as Ctor<[Error, { cause: Error }]>;
const KafkaJSProtocolError = kafkajs.KafkaJSProtocolError as unknown as Ctor<[{ message: string; type: string; code: number; retriable: boolean }]>;
const KafkaJSSASLAuthenticationError = kafkajs.KafkaJSSASLAuthenticationError as unknown as Ctor<[string]>;

describe('isRetriableKafkaError', () => {
  it('waits for a broker that is not there yet', () => {
    const refused = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { broker: 'localhost:9092', code: 'ECONNREFUSED' });
    expect(isRetriableKafkaError(refused)).toBe(true);
    expect(isRetriableKafkaError(new KafkaJSNumberOfRetriesExceeded(refused, { retryCount: 0, retryTime: 300 }))).toBe(true);
    expect(isRetriableKafkaError(new KafkaJSNonRetriableError(refused, { cause: refused }))).toBe(true);
    expect(isRetriableKafkaError(Object.assign(new Error('getaddrinfo ENOTFOUND kafka-0'), { code: 'ENOTFOUND' }))).toBe(true);
    expect(isRetriableKafkaError(new KafkaJSProtocolError({ message: 'The coordinator is loading', type: 'COORDINATOR_LOAD_IN_PROGRESS', code: 14, retriable: true }))).toBe(true);
  });

  it('does not wait out a refused login, a missing permission or a bad certificate', () => {
    expect(isRetriableKafkaError(new KafkaJSSASLAuthenticationError('SASL PLAIN authentication failed'))).toBe(false);
    expect(isRetriableKafkaError(new KafkaJSProtocolError({ message: 'Not authorized to access topics', type: 'TOPIC_AUTHORIZATION_FAILED', code: 29, retriable: false }))).toBe(false);
    const tls = new KafkaJSConnectionError('self-signed certificate', { broker: 'k:9093', code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect(isRetriableKafkaError(new KafkaJSNumberOfRetriesExceeded(tls, { retryCount: 5, retryTime: 300 }))).toBe(false);
    expect(isRetriableKafkaError(new Error('something else'))).toBe(false);
  });
});
