// Postgres TLS from DATABASE_URL's `sslmode` (libpq's meanings) and a CA given apart from the URL
// (TD_PG_SSL_CA_FILE, read by the caller). node-postgres lets the connection string's own ssl
// parameters override any `ssl` option, so they are taken out of the string and turned into
// the `ssl` option here.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { ConfigError } from '../errors.js';

/** What the caller knows apart from the URL: the CA bundle's PEM text. */
export interface PgTls {
  ca?: string | undefined;
}

export interface PgConnection {
  connectionString: string;
  /** undefined: node-postgres decides from what is left of the URL. */
  ssl?: ConnectionOptions | false;
}

const HANDLED = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'];

function readParamFile(param: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`DATABASE_URL ${param}=${JSON.stringify(path)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * The connection string and TLS options for node-postgres:
 * - `disable`: no TLS;
 * - `require`: TLS without verifying the server (libpq: with a CA it verifies the chain, as verify-ca);
 * - `verify-ca`: TLS, the chain must lead to the CA (or Node's roots), the host name is not checked;
 * - `verify-full`: TLS, chain and host name verified;
 * - a CA and no sslmode: verify-full (a CA given is a CA meant to be used);
 * - any other sslmode (allow, prefer, no-verify): left to node-postgres as before.
 */
export function pgConnection(url: string, tls: PgTls = {}): PgConnection {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { connectionString: url };
  }
  const q = parsed.searchParams;
  const mode = q.get('sslmode')?.toLowerCase() ?? (tls.ca !== undefined ? 'verify-full' : undefined);
  if (mode === undefined || !['disable', 'require', 'verify-ca', 'verify-full'].includes(mode)) return { connectionString: url };
  const rootcert = q.get('sslrootcert');
  const certPath = q.get('sslcert');
  const keyPath = q.get('sslkey');
  for (const p of HANDLED) q.delete(p);
  const connectionString = parsed.toString();
  if (mode === 'disable') return { connectionString, ssl: false };
  const ca = tls.ca ?? (rootcert ? readParamFile('sslrootcert', rootcert) : undefined);
  const ssl: ConnectionOptions = {
    ...(ca === undefined ? {} : { ca }),
    ...(certPath ? { cert: readParamFile('sslcert', certPath) } : {}),
    ...(keyPath ? { key: readParamFile('sslkey', keyPath) } : {}),
  };
  if (mode === 'require' && ca === undefined) ssl.rejectUnauthorized = false;
  else {
    ssl.rejectUnauthorized = true;
    if (mode !== 'verify-full') ssl.checkServerIdentity = () => undefined;
  }
  return { connectionString, ssl };
}
