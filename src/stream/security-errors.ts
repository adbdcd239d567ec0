// Failures to establish a secured Kafka connection that a person must fix (wrong CA, wrong
// password, a mechanism the broker does not offer): not retried, reported as one line.
import { TinyDancerError, type TinyDancerErrorOptions } from '../errors.js';

export class KafkaSecurityError extends TinyDancerError {
  constructor(message: string, options: TinyDancerErrorOptions = {}) {
    super(message, options);
  }
}

/**
 * A kafkajs connect failure in words that say what to fix, or undefined when it is not one of
 * the security failures. Never includes a credential: kafkajs's SASL messages name the
 * mechanism and the broker's reason only.
 */
export function securityFailure(err: unknown, brokers: readonly string[] = []): KafkaSecurityError | undefined {
  if (err instanceof KafkaSecurityError) return err;
  const e = err as { name?: string; message?: string; cause?: unknown } | undefined;
  if (e?.name === 'KafkaJSSASLAuthenticationError') {
    const reason = (e.message ?? '').replace(/^SASL [\w -]+? authentication failed: /, '');
    return new KafkaSecurityError(
      `Kafka SASL authentication failed${brokers.length ? ` at ${brokers.join(',')}` : ''}: ${reason} (check KAFKA_SASL_USERNAME and the password)`,
    );
  }
  return undefined;
}
