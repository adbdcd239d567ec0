// KAFKA_SSL_* / KAFKA_SASL_* / TD_PG_SSL_CA_FILE: validation that names the variable, and
// settings that never print a secret (JSON, inspect, describeConfig).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { describeConfig, loadConfig } from '../../src/config.js';
import { loadKafkaSecurity } from '../../src/config-security.js';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/observe/logger.js';
import { clientSecurity } from '../../src/stream/security.js';
import { pgConnection } from '../../src/store/tls.js';

const dir = mkdtempSync(join(tmpdir(), 'td-sec-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nkey-material-secret\n-----END PRIVATE KEY-----\n';
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const ca = file('ca.pem', CERT);
const cert = file('client.pem', CERT);
const key = file('client.key', KEY);

function configError(env: Record<string, string>): string {
  try {
    loadKafkaSecurity(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('Kafka security settings', () => {
  it('unset means plaintext without SASL', () => {
    const s = loadKafkaSecurity({});
    expect(s.secured).toBe(false);
    expect(s.describe()).toEqual({ ssl: false, sasl: null });
  });

  it('a CA file implies TLS; rejectUnauthorized defaults to true', () => {
    const s = loadKafkaSecurity({ KAFKA_SSL_CA_FILE: ca });
    expect(s.tls).toMatchObject({ caFile: ca, ca: CERT, rejectUnauthorized: true });
    expect(loadKafkaSecurity({ KAFKA_SSL: 'true' }).tls?.ca).toBeUndefined();
  });

  it('names the variable for a missing file, a non-PEM file, half a key pair, a bad mechanism', () => {
    expect(configError({ KAFKA_SSL_CA_FILE: join(dir, 'nope.pem') })).toMatch(/^KAFKA_SSL_CA_FILE=".*nope\.pem" cannot be read: no such file$/);
    expect(configError({ KAFKA_SSL_CA_FILE: file('junk', 'hello') })).toMatch(/^KAFKA_SSL_CA_FILE=.* is invalid: expected a PEM file/);
    expect(configError({ KAFKA_SSL_CERT_FILE: cert })).toMatch(/^KAFKA_SSL_KEY_FILE is missing/);
    expect(configError({ KAFKA_SASL_MECHANISM: 'gssapi' })).toMatch(/^KAFKA_SASL_MECHANISM="gssapi" is invalid: expected plain, scram-sha-256, scram-sha-512, oauthbearer$/);
    expect(configError({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u' })).toMatch(/^KAFKA_SASL_PASSWORD is missing/);
    expect(configError({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD_FILE: join(dir, 'x') })).toMatch(/^KAFKA_SASL_PASSWORD_FILE=.* cannot be read/);
    expect(configError({ KAFKA_SASL_USERNAME: 'u' })).toMatch(/^KAFKA_SASL_USERNAME is set but KAFKA_SASL_MECHANISM is not/);
    expect(configError({ KAFKA_SSL: 'maybe' })).toMatch(/^KAFKA_SSL="maybe" is invalid/);
    expect(configError({ KAFKA_SASL_MECHANISM: 'oauthbearer' })).toMatch(/KAFKA_SASL_OAUTH_TOKEN_FILE or KAFKA_SASL_OAUTH_TOKEN_URL is missing/);
    expect(configError({ KAFKA_SASL_MECHANISM: 'oauthbearer', KAFKA_SASL_OAUTH_TOKEN_URL: 'https://idp/token', KAFKA_SASL_OAUTH_CLIENT_ID: 'c' })).toMatch(/^KAFKA_SASL_OAUTH_CLIENT_SECRET is missing/);
  });

  it('no secret in any printed form: JSON, inspect, String, describeConfig, error messages', () => {
    const password = 'pa55-word-that-must-not-leak';
    const secret = 'client-secret-that-must-not-leak';
    const pwFile = file('pw', `${password}\n`);
    const env = {
      KAFKA_SSL_CA_FILE: ca,
      KAFKA_SSL_CERT_FILE: cert,
      KAFKA_SSL_KEY_FILE: key,
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'alice',
      KAFKA_SASL_PASSWORD_FILE: pwFile,
    };
    const s = loadKafkaSecurity(env);
    expect(s.sasl).toMatchObject({ mechanism: 'scram-sha-512', username: 'alice' });
    expect((s.sasl as { password: { reveal(): string } }).password.reveal()).toBe(password);
    const config = loadConfig(env);
    const o = loadKafkaSecurity({ KAFKA_SASL_MECHANISM: 'oauthbearer', KAFKA_SASL_OAUTH_TOKEN_URL: 'https://idp.example/token', KAFKA_SASL_OAUTH_CLIENT_ID: 'c', KAFKA_SASL_OAUTH_CLIENT_SECRET: secret });
    for (const text of [JSON.stringify(s), inspect(s, { depth: 10 }), String(s), JSON.stringify(config), inspect(config, { depth: 10 }), JSON.stringify(describeConfig(config)), JSON.stringify(o), inspect(o, { depth: 10 })]) {
      expect(text).not.toContain(password);
      expect(text).not.toContain(secret);
      expect(text).not.toContain('key-material-secret');
    }
    expect(JSON.stringify(describeConfig(config))).toContain('"username":"alice"');
    // A worker thread gets the variables back, and builds the same settings from them.
    expect(loadKafkaSecurity(s.source()).describe()).toEqual(s.describe());
    // A bad password file is named, its content never shown.
    const msg = configError({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: password, KAFKA_SASL_PASSWORD_FILE: pwFile });
    expect(msg).not.toContain(password);
  });
});

describe('kafkajs client options', () => {
  it('KAFKA_SSL_REJECT_UNAUTHORIZED=false is said loudly, once per settings object', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', write: (l) => void lines.push(l) });
    const s = loadKafkaSecurity({ KAFKA_SSL: 'true', KAFKA_SSL_REJECT_UNAUTHORIZED: 'false' });
    const a = clientSecurity(s, logger);
    const b = clientSecurity(s, logger);
    expect(a).toBe(b);
    expect(a.ssl).toMatchObject({ rejectUnauthorized: false });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', msg: expect.stringMatching(/KAFKA_SSL_REJECT_UNAUTHORIZED=false: broker certificates are NOT verified/) });
    clientSecurity(loadKafkaSecurity({ KAFKA_SSL: 'true' }), logger);
    expect(lines).toHaveLength(1);
  });

  it('SASL settings become kafkajs options; OAUTHBEARER a token provider', async () => {
    const logger = createLogger({ level: 'error', write: () => {} });
    expect(clientSecurity(loadKafkaSecurity({ KAFKA_SASL_MECHANISM: 'scram-sha-256', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p w' }), logger).sasl).toEqual({
      mechanism: 'scram-sha-256',
      username: 'u',
      password: 'p w',
    });
    const tokenFile = file('token', 'abc.def.\n');
    const o = clientSecurity(loadKafkaSecurity({ KAFKA_SASL_MECHANISM: 'oauthbearer', KAFKA_SASL_OAUTH_TOKEN_FILE: tokenFile }), logger).sasl as { oauthBearerProvider: () => Promise<{ value: string }> };
    expect(await o.oauthBearerProvider()).toEqual({ value: 'abc.def.' });
  });
});

describe('Postgres sslmode', () => {
  const base = 'postgres://u:pw@db.example:5432/app';
  it('leaves a URL without sslmode or CA alone', () => {
    expect(pgConnection(base)).toEqual({ connectionString: base });
    expect(pgConnection(`${base}?sslmode=prefer`)).toEqual({ connectionString: `${base}?sslmode=prefer` });
  });
  it('maps require / verify-ca / verify-full, taking sslmode out of the string', () => {
    const req = pgConnection(`${base}?sslmode=require&application_name=x`);
    expect(req.connectionString).toBe(`${base}?application_name=x`);
    expect(req.ssl).toEqual({ rejectUnauthorized: false });
    const ca = pgConnection(`${base}?sslmode=verify-ca`, { ca: CERT });
    expect(ca.ssl).toMatchObject({ ca: CERT, rejectUnauthorized: true });
    expect(typeof (ca.ssl as { checkServerIdentity?: unknown }).checkServerIdentity).toBe('function');
    const full = pgConnection(`${base}?sslmode=verify-full`, { ca: CERT });
    expect(full.ssl).toEqual({ ca: CERT, rejectUnauthorized: true });
    expect(pgConnection(base, { ca: CERT }).ssl).toEqual({ ca: CERT, rejectUnauthorized: true });
    expect(pgConnection(`${base}?sslmode=disable`).ssl).toBe(false);
  });
});
