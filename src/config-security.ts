// How the service reaches a secured Kafka cluster and a TLS Postgres: the KAFKA_SSL_* /
// KAFKA_SASL_* and TD_PG_SSL_CA_FILE settings, read once at start. Files named by a variable are
// read here, so a missing or unreadable one fails start-up (exit 2) naming the variable.
//
// Secrets (passwords, client secrets, private keys) are held in Secret, and the whole settings
// object prints only a description (paths, mechanism, user name), so neither a config dump,
// GetConfig nor an error message can carry them.
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { Secret } from './config.js';
import { ConfigError } from './errors.js';

type Env = Record<string, string | undefined>;

export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512', 'oauthbearer'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/** The variables that make up the Kafka security settings (the whole set is handed to threads). */
export const KAFKA_SECURITY_VARS = [
  'KAFKA_SSL',
  'KAFKA_SSL_CA_FILE',
  'KAFKA_SSL_CERT_FILE',
  'KAFKA_SSL_KEY_FILE',
  'KAFKA_SSL_REJECT_UNAUTHORIZED',
  'KAFKA_SASL_MECHANISM',
  'KAFKA_SASL_USERNAME',
  'KAFKA_SASL_PASSWORD',
  'KAFKA_SASL_PASSWORD_FILE',
  'KAFKA_SASL_OAUTH_TOKEN_FILE',
  'KAFKA_SASL_OAUTH_TOKEN_URL',
  'KAFKA_SASL_OAUTH_CLIENT_ID',
  'KAFKA_SASL_OAUTH_CLIENT_SECRET',
  'KAFKA_SASL_OAUTH_SCOPE',
] as const;

export interface KafkaTlsSettings {
  caFile: string | undefined;
  /** PEM text of the CA bundle; undefined: Node's built-in roots. */
  ca: string | undefined;
  certFile: string | undefined;
  cert: string | undefined;
  keyFile: string | undefined;
  key: Secret | undefined;
  rejectUnauthorized: boolean;
}

export type KafkaSaslSettings =
  | { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: Secret; passwordFile: string | undefined }
  | { mechanism: 'oauthbearer'; tokenFile: string }
  | { mechanism: 'oauthbearer'; tokenUrl: string; clientId: string; clientSecret: Secret; scope: string | undefined };

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  if (v === undefined) return undefined;
  const t = v.trim();
  return t === '' ? undefined : t;
}

function boolSetting(env: Env, name: string, fallback: boolean): boolean {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  const l = v.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(l)) return true;
  if (['false', '0', 'no', 'off'].includes(l)) return false;
  throw new ConfigError(`${name}=${JSON.stringify(v)} is invalid: expected true or false`);
}

/** Reads a file a variable names; the message names the variable and the path, never the content. */
export function readSettingFile(name: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (code ?? 'cannot read it');
    throw new ConfigError(`${name}=${JSON.stringify(path)} cannot be read: ${why}`);
  }
}

function pemSetting(env: Env, name: string, what: RegExp, expected: string): { path: string | undefined; text: string | undefined } {
  const path = raw(env, name);
  if (path === undefined) return { path, text: undefined };
  const text = readSettingFile(name, path);
  if (!what.test(text)) throw new ConfigError(`${name}=${JSON.stringify(path)} is invalid: expected ${expected}`);
  return { path, text };
}

function tlsSettings(env: Env): KafkaTlsSettings | undefined {
  const ca = pemSetting(env, 'KAFKA_SSL_CA_FILE', /-----BEGIN CERTIFICATE-----/, 'a PEM file with at least one CERTIFICATE');
  const cert = pemSetting(env, 'KAFKA_SSL_CERT_FILE', /-----BEGIN CERTIFICATE-----/, 'a PEM file with the client CERTIFICATE');
  const key = pemSetting(env, 'KAFKA_SSL_KEY_FILE', /-----BEGIN [A-Z ]*PRIVATE KEY-----/, 'a PEM file with the client PRIVATE KEY');
  if ((cert.path === undefined) !== (key.path === undefined)) {
    const missing = cert.path === undefined ? 'KAFKA_SSL_CERT_FILE' : 'KAFKA_SSL_KEY_FILE';
    throw new ConfigError(`${missing} is missing: mutual TLS needs both KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE`);
  }
  const anyFile = ca.path !== undefined || cert.path !== undefined;
  const explicit = raw(env, 'KAFKA_SSL');
  const on = boolSetting(env, 'KAFKA_SSL', anyFile);
  if (!on && anyFile && explicit !== undefined) {
    throw new ConfigError(`KAFKA_SSL=${JSON.stringify(explicit)} is invalid: KAFKA_SSL_*_FILE is set, which needs TLS`);
  }
  const rejectUnauthorized = boolSetting(env, 'KAFKA_SSL_REJECT_UNAUTHORIZED', true);
  if (!on) {
    if (raw(env, 'KAFKA_SSL_REJECT_UNAUTHORIZED') !== undefined) {
      throw new ConfigError('KAFKA_SSL_REJECT_UNAUTHORIZED is set but TLS is off: set KAFKA_SSL=true');
    }
    return undefined;
  }
  return {
    caFile: ca.path,
    ca: ca.text,
    certFile: cert.path,
    cert: cert.text,
    keyFile: key.path,
    key: key.text === undefined ? undefined : new Secret(key.text),
    rejectUnauthorized,
  };
}

const SASL_VARS = KAFKA_SECURITY_VARS.filter((v) => v.startsWith('KAFKA_SASL_') && v !== 'KAFKA_SASL_MECHANISM');

function saslSettings(env: Env): KafkaSaslSettings | undefined {
  const m = raw(env, 'KAFKA_SASL_MECHANISM');
  if (m === undefined) {
    const stray = SASL_VARS.find((v) => raw(env, v) !== undefined);
    if (stray) throw new ConfigError(`${stray} is set but KAFKA_SASL_MECHANISM is not: set it to ${SASL_MECHANISMS.join(', ')}`);
    return undefined;
  }
  const mechanism = m.toLowerCase() as SaslMechanism;
  if (!SASL_MECHANISMS.includes(mechanism)) {
    throw new ConfigError(`KAFKA_SASL_MECHANISM=${JSON.stringify(m)} is invalid: expected ${SASL_MECHANISMS.join(', ')}`);
  }
  const refuse = (names: string[], why: string) => {
    const stray = names.find((v) => raw(env, v) !== undefined);
    if (stray) throw new ConfigError(`${stray} is set but ${why}`);
  };
  if (mechanism !== 'oauthbearer') {
    refuse(SASL_VARS.filter((v) => v.includes('_OAUTH_')), `KAFKA_SASL_MECHANISM is ${mechanism}, not oauthbearer`);
    const username = raw(env, 'KAFKA_SASL_USERNAME');
    if (username === undefined) throw new ConfigError(`KAFKA_SASL_USERNAME is missing: KAFKA_SASL_MECHANISM=${mechanism} needs a user name`);
    const passwordFile = raw(env, 'KAFKA_SASL_PASSWORD_FILE');
    // A password is taken as given (no trimming: spaces may be part of it).
    const direct = env.KAFKA_SASL_PASSWORD;
    if (passwordFile !== undefined && direct !== undefined && direct !== '') {
      throw new ConfigError('KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set: use one');
    }
    let password: string;
    if (passwordFile !== undefined) {
      // A mounted secret usually ends with a newline that is not part of the password.
      password = readSettingFile('KAFKA_SASL_PASSWORD_FILE', passwordFile).replace(/\r?\n$/, '');
      if (password === '') throw new ConfigError(`KAFKA_SASL_PASSWORD_FILE=${JSON.stringify(passwordFile)} is invalid: the file is empty`);
    } else if (direct !== undefined && direct !== '') password = direct;
    else throw new ConfigError(`KAFKA_SASL_PASSWORD is missing: KAFKA_SASL_MECHANISM=${mechanism} needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE`);
    return { mechanism, username, password: new Secret(password), passwordFile };
  }
  refuse(['KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD', 'KAFKA_SASL_PASSWORD_FILE'], 'KAFKA_SASL_MECHANISM is oauthbearer (use KAFKA_SASL_OAUTH_*)');
  const tokenFile = raw(env, 'KAFKA_SASL_OAUTH_TOKEN_FILE');
  const tokenUrl = raw(env, 'KAFKA_SASL_OAUTH_TOKEN_URL');
  if (tokenFile !== undefined && tokenUrl !== undefined) {
    throw new ConfigError('KAFKA_SASL_OAUTH_TOKEN_FILE and KAFKA_SASL_OAUTH_TOKEN_URL are both set: use one');
  }
  if (tokenFile !== undefined) {
    refuse(['KAFKA_SASL_OAUTH_CLIENT_ID', 'KAFKA_SASL_OAUTH_CLIENT_SECRET', 'KAFKA_SASL_OAUTH_SCOPE'], 'KAFKA_SASL_OAUTH_TOKEN_FILE is used (they go with KAFKA_SASL_OAUTH_TOKEN_URL)');
    // Read once now so a missing file fails start-up; it is read again on every refresh.
    if (readSettingFile('KAFKA_SASL_OAUTH_TOKEN_FILE', tokenFile).trim() === '') {
      throw new ConfigError(`KAFKA_SASL_OAUTH_TOKEN_FILE=${JSON.stringify(tokenFile)} is invalid: the file is empty`);
    }
    return { mechanism, tokenFile };
  }
  if (tokenUrl === undefined) {
    throw new ConfigError('KAFKA_SASL_OAUTH_TOKEN_FILE or KAFKA_SASL_OAUTH_TOKEN_URL is missing: KAFKA_SASL_MECHANISM=oauthbearer needs one');
  }
  let url: URL;
  try {
    url = new URL(tokenUrl);
  } catch {
    throw new ConfigError('KAFKA_SASL_OAUTH_TOKEN_URL is invalid: expected an http(s) URL (value not shown)');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('KAFKA_SASL_OAUTH_TOKEN_URL is invalid: expected an http(s) URL (value not shown)');
  if (url.username || url.password) throw new ConfigError('KAFKA_SASL_OAUTH_TOKEN_URL is invalid: put the credentials in KAFKA_SASL_OAUTH_CLIENT_ID/_SECRET, not the URL');
  const clientId = raw(env, 'KAFKA_SASL_OAUTH_CLIENT_ID');
  if (clientId === undefined) throw new ConfigError('KAFKA_SASL_OAUTH_CLIENT_ID is missing: KAFKA_SASL_OAUTH_TOKEN_URL needs a client id');
  const secret = env.KAFKA_SASL_OAUTH_CLIENT_SECRET;
  if (secret === undefined || secret === '') throw new ConfigError('KAFKA_SASL_OAUTH_CLIENT_SECRET is missing: KAFKA_SASL_OAUTH_TOKEN_URL needs a client secret');
  return { mechanism, tokenUrl: url.toString(), clientId, clientSecret: new Secret(secret), scope: raw(env, 'KAFKA_SASL_OAUTH_SCOPE') };
}

/**
 * The Kafka security settings. Prints (JSON, inspect, String) as a description without secrets.
 * `source()` hands the variables to a worker thread, which builds its own settings from them.
 */
export class KafkaSecurity {
  readonly tls: KafkaTlsSettings | undefined;
  readonly sasl: KafkaSaslSettings | undefined;
  readonly #source: Secret;

  constructor(tls: KafkaTlsSettings | undefined, sasl: KafkaSaslSettings | undefined, source: Record<string, string>) {
    this.tls = tls;
    this.sasl = sasl;
    this.#source = new Secret(JSON.stringify(source));
    Object.freeze(this);
  }

  get secured(): boolean {
    return this.tls !== undefined || this.sasl !== undefined;
  }

  /** The variables these settings came from, secrets included: for a worker thread only. */
  source(): Record<string, string> {
    return JSON.parse(this.#source.reveal()) as Record<string, string>;
  }

  describe(): Record<string, unknown> {
    const tls = this.tls && {
      caFile: this.tls.caFile ?? null,
      certFile: this.tls.certFile ?? null,
      keyFile: this.tls.keyFile ?? null,
      rejectUnauthorized: this.tls.rejectUnauthorized,
    };
    let sasl: Record<string, unknown> | null = null;
    const s = this.sasl;
    if (s && 'username' in s) sasl = { mechanism: s.mechanism, username: s.username, password: '[redacted]', ...(s.passwordFile ? { passwordFile: s.passwordFile } : {}) };
    else if (s && 'tokenFile' in s) sasl = { mechanism: s.mechanism, tokenFile: s.tokenFile };
    else if (s) sasl = { mechanism: s.mechanism, tokenUrl: s.tokenUrl, clientId: s.clientId, clientSecret: '[redacted]', scope: s.scope ?? null };
    return { ssl: tls ?? false, sasl };
  }

  toJSON(): Record<string, unknown> {
    return this.describe();
  }

  toString(): string {
    return JSON.stringify(this.describe());
  }

  [inspect.custom](): Record<string, unknown> {
    return this.describe();
  }
}

/** Reads KAFKA_SSL_* and KAFKA_SASL_*; throws ConfigError naming the variable. */
export function loadKafkaSecurity(env: Env): KafkaSecurity {
  const source: Record<string, string> = {};
  for (const name of KAFKA_SECURITY_VARS) {
    const v = env[name];
    if (v !== undefined) source[name] = v;
  }
  return new KafkaSecurity(tlsSettings(env), saslSettings(env), source);
}

/** Plaintext, no SASL: what an unset environment means (tests, programmatic use). */
export function noKafkaSecurity(): KafkaSecurity {
  return new KafkaSecurity(undefined, undefined, {});
}

/** TD_PG_SSL_CA_FILE: the CA that verifies Postgres (with sslmode in DATABASE_URL). */
export interface PgTlsSettings {
  caFile: string | undefined;
  ca: string | undefined;
}

export function loadPgTls(env: Env): PgTlsSettings {
  const ca = pemSetting(env, 'TD_PG_SSL_CA_FILE', /-----BEGIN CERTIFICATE-----/, 'a PEM file with at least one CERTIFICATE');
  return Object.freeze({ caFile: ca.path, ca: ca.text });
}
