// The settings (KAFKA_SSL_*, KAFKA_SASL_*) as kafkajs client options. Every Kafka client of the
// project is built by createKafka (./kafka.ts), which takes its TLS and SASL options from here.
import type { ConnectionOptions } from 'node:tls';
import type { KafkaConfig, SASLOptions } from 'kafkajs';
import type { KafkaSecurity } from '../config-security.js';
import type { Logger } from '../observe/logger.js';
import { oauthTokenProvider } from './oauth.js';

export type ClientSecurity = Pick<KafkaConfig, 'ssl' | 'sasl'>;

/** Node TLS options for the brokers (also used by the pre-connect check). */
export function tlsOptions(security: KafkaSecurity): ConnectionOptions | undefined {
  const t = security.tls;
  if (!t) return undefined;
  return {
    ...(t.ca === undefined ? {} : { ca: t.ca }),
    ...(t.cert === undefined ? {} : { cert: t.cert }),
    ...(t.key === undefined ? {} : { key: t.key.reveal() }),
    rejectUnauthorized: t.rejectUnauthorized,
  };
}

// One set of options per settings object, so the clients of one process share an OAuth token
// and the warning about unverified brokers is said once.
const built = new WeakMap<KafkaSecurity, ClientSecurity>();

export function clientSecurity(security: KafkaSecurity, logger: Logger): ClientSecurity {
  const known = built.get(security);
  if (known) return known;
  const out: ClientSecurity = {};
  const tls = tlsOptions(security);
  if (tls) {
    out.ssl = tls;
    if (!tls.rejectUnauthorized) {
      logger.warn(
        'KAFKA_SSL_REJECT_UNAUTHORIZED=false: broker certificates are NOT verified; anyone on the network path can impersonate the brokers and read every record and credential',
      );
    }
  }
  const s = security.sasl;
  if (s) {
    let sasl: SASLOptions;
    if (s.mechanism === 'oauthbearer') sasl = { mechanism: 'oauthbearer', oauthBearerProvider: oauthTokenProvider(s) };
    else if (s.mechanism === 'plain') sasl = { mechanism: 'plain', username: s.username, password: s.password.reveal() };
    else if (s.mechanism === 'scram-sha-256') sasl = { mechanism: 'scram-sha-256', username: s.username, password: s.password.reveal() };
    else sasl = { mechanism: 'scram-sha-512', username: s.username, password: s.password.reveal() };
    out.sasl = sasl;
  }
  built.set(security, out);
  return out;
}
