// Shared Postgres plumbing for the store: the pool every part uses, how a schema name becomes SQL,
// and how a connection string is shown in logs (never with its password).
import pg from 'pg';
import { ConfigError } from '../errors.js';
import { classifyPgError } from './errors.js';
import { pgConnection, type PgTls } from './tls.js';

/** docs/contracts.md §2: the Postgres used when DATABASE_URL is not set. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** Minimal logging surface the store needs; the service Logger satisfies it. */
export interface StoreLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLog: StoreLog = { info: () => {}, warn: () => {} };

/**
 * A connection string safe to print: the password (in the user-info part or as a `password=`
 * query parameter) becomes `***`. Strings that do not parse as URLs are masked by pattern, so
 * even a malformed value never leaks what follows `user:`.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    let changed = false;
    if (u.password) {
      u.password = '***';
      changed = true;
    }
    for (const key of [...u.searchParams.keys()]) {
      if (/^(password|passwd|pwd|sslpassword)$/i.test(key)) {
        u.searchParams.set(key, '***');
        changed = true;
      }
    }
    // Re-serialise only when needed: URL normalises other parts (e.g. percent-encoding).
    return changed ? u.toString().replace(/%2A%2A%2A/g, '***') : url;
  } catch {
    return url
      .replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@')
      .replace(/((?:password|passwd|pwd)=)[^&\s]*/gi, '$1***');
  }
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Checks a schema name and returns it quoted for SQL. Only plain lower-case identifiers are
 * accepted: the name is spliced into DDL (identifiers cannot be bind parameters), so anything
 * that would need escaping is refused rather than escaped.
 */
export function quoteSchema(schema: string): string {
  if (!IDENT.test(schema)) {
    throw new ConfigError(`schema name '${schema}' is invalid: use 1-63 characters a-z, 0-9, _ (not starting with a digit)`);
  }
  return `"${schema}"`;
}

export interface PoolOptions {
  url: string;
  /** Connections at most; the decision log uses up to its `concurrency`, stats one more. */
  max?: number;
  /** Give up connecting after this long (the caller's retry loop takes over). */
  connectionTimeoutMs?: number;
  /** Server-side bound on one statement; a stuck insert fails and is retried. */
  statementTimeoutMs?: number;
  /** Client-side bound on one query, for when the server cannot even say it timed out. */
  queryTimeoutMs?: number;
  applicationName?: string;
  log?: StoreLog;
  /** The CA for TLS (TD_PG_SSL_CA_FILE); `sslmode` in the URL says whether and how to verify. */
  tls?: PgTls;
}

/**
 * A pg Pool configured for the service: bounded connect and query times (so a black-holed
 * network cannot hang a flush forever), TCP keep-alive, and an `error` listener — without one an
 * idle client losing its socket would crash the process.
 */
export function createPool(options: PoolOptions): pg.Pool {
  const log = options.log ?? silentLog;
  const pool = new pg.Pool({
    ...pgConnection(options.url, options.tls),
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    query_timeout: options.queryTimeoutMs ?? 35_000,
    application_name: options.applicationName ?? 'tiny-dancer',
  });
  pool.on('error', (err) => {
    // An idle connection died (server restart, network cut). The pool already dropped it; the
    // next checkout opens a fresh one. Worth a line, not a crash.
    log.warn('postgres idle connection lost', { error: err.message, code: (err as { code?: string }).code });
  });
  return pool;
}

/** A pool or a checked-out client: anything with query(). */
export type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.PoolClient, 'query'>;

/**
 * Runs `fn` on a client of its own. While held, the client has an `error` listener (pg emits one
 * when the socket dies mid-query; the query rejects as well, so the listener only keeps the
 * process alive). A client whose error was not a clean SQL error is destroyed, not reused.
 */
export async function withClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const onError = () => {};
  client.on('error', onError);
  try {
    const result = await fn(client);
    client.removeListener('error', onError);
    client.release();
    return result;
  } catch (err) {
    client.removeListener('error', onError);
    // A row or SQL error leaves the connection usable; anything else (timeout, socket) may not.
    const code = (err as { code?: unknown }).code;
    const clean = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && classifyPgError(err) !== 'retriable';
    client.release(clean ? undefined : (err as Error));
    throw err;
  }
}
