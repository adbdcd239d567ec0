// The store as `serve` uses it, in one call: find the database (DATABASE_URL, the default
// Postgres, or the embedded one), open a pool, apply the migrations (waiting a bounded time for a
// Postgres that is still starting), and open the decision log. close() undoes it in order.
import { backoffDelay, sleep } from './backoff.js';
import { DecisionLog, type CloseResult, type DecisionLogOptions } from './decision-log.js';
import { resolveDatabase } from './embedded.js';
import { StoreError, classifyPgError, errorMessageWithCode } from './errors.js';
import { migrate, type MigrateResult } from './migrations.js';
import { createPool, redactUrl, silentLog, type StoreLog } from './pg.js';
import type { PgTls } from './tls.js';
import { decisionStats, type DecisionStats, type StatsWindow } from './stats.js';
import type pg from 'pg';

export interface OpenStoreOptions {
  /** DATABASE_URL when set; undefined lets the default Postgres or the embedded one stand in. */
  databaseUrl?: string;
  /** Folder of the embedded Postgres (config.pgliteDir). */
  dataDir: string;
  /** Schema of the tables. Default 'public'. */
  schema?: string;
  log?: StoreLog;
  /** The CA for Postgres TLS (TD_PG_SSL_CA_FILE); sslmode in the URL decides the rest. */
  tls?: PgTls;
  /** Keep retrying the migrations this long while Postgres is unreachable. Default 30 s. */
  startTimeoutMs?: number;
  /** Decision-log tuning (batch size, maxBuffered, ...). */
  decisionLog?: Omit<DecisionLogOptions, 'pool' | 'schema'>;
  /** Pool size. Default: the log's concurrency + 2 (statistics, registry). */
  poolMax?: number;
}

export interface Store {
  /** Connection string in use (may hold a password: print redactedUrl instead). */
  readonly url: string;
  readonly redactedUrl: string;
  readonly embedded: boolean;
  readonly schema: string;
  readonly pool: pg.Pool;
  readonly decisionLog: DecisionLog;
  readonly migrations: MigrateResult;
  /** Decision statistics over a window (default the last 24 h). */
  stats(window?: StatsWindow & { modelVersion?: string }): Promise<DecisionStats>;
  /** Drains the decision log within `timeout` ms, then closes the pool and the embedded server. */
  close(options?: { timeout?: number }): Promise<CloseResult>;
}

export async function openStore(options: OpenStoreOptions): Promise<Store> {
  const log = options.log ?? silentLog;
  const schema = options.schema ?? 'public';
  const db = await resolveDatabase({ databaseUrl: options.databaseUrl, dataDir: options.dataDir, log });
  const redactedUrl = redactUrl(db.url);
  const pool = createPool({ url: db.url, ...(options.tls ? { tls: options.tls } : {}), max: options.poolMax ?? (options.decisionLog?.concurrency ?? 2) + 2, log });
  let migrations: MigrateResult;
  try {
    migrations = await migrateWithPatience(pool, schema, options.startTimeoutMs ?? 30_000, redactedUrl, log);
  } catch (err) {
    await pool.end().catch(() => {});
    await db.close().catch(() => {});
    throw err;
  }
  const decisionLog = new DecisionLog({ ...options.decisionLog, pool, schema });
  let closing: Promise<CloseResult> | undefined;
  return {
    url: db.url,
    redactedUrl,
    embedded: db.embedded,
    schema,
    pool,
    decisionLog,
    migrations,
    stats: (window = {}) => decisionStats(pool, { ...window, schema }),
    close: (closeOptions = {}) =>
      (closing ??= (async () => {
        const result = await decisionLog.close(closeOptions);
        if (result.unwritten > 0) {
          log.warn('decision log closed with rows unwritten (their offsets were not committed)', { unwritten: result.unwritten });
        }
        // A query stuck on a dead connection must not hold shutdown: end() waits for checked-out
        // clients, so bound it.
        await Promise.race([pool.end().catch(() => {}), sleep(2_000)]);
        await db.close();
        return result;
      })()),
  };
}

async function migrateWithPatience(pool: pg.Pool, schema: string, timeoutMs: number, target: string, log: StoreLog): Promise<MigrateResult> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await migrate(pool, { schema, log });
    } catch (err) {
      const retriable = classifyPgError((err as Error).cause ?? err) === 'retriable';
      const delay = backoffDelay(attempt, { initialMs: 250, maxMs: 3_000 });
      if (!retriable || Date.now() + delay > deadline) {
        throw new StoreError(`Postgres at ${target} cannot be used: ${errorMessageWithCode(err)}`, { cause: err, retriable });
      }
      if (attempt === 0) log.warn('Postgres not reachable yet; retrying the migrations', { url: target, error: errorMessageWithCode(err) });
      await sleep(delay);
    }
  }
}
