// First run on a bare machine: when no DATABASE_URL is set and nothing answers
// at the default address, the decision log goes to an embedded Postgres — PGlite (Postgres
// compiled to WebAssembly, data in a local folder) served over the wire protocol by pglite-socket
// on a loopback port — so the same `pg` code path runs unchanged. A real Postgres stays the
// production path: an explicit DATABASE_URL is used as given, even when it is down (the decision
// log then buffers and applies backpressure; silently logging elsewhere would split the data).
//
// PGlite is one single-user session: pglite-socket multiplexes client connections onto it and
// runs one statement at a time. That is fine for a developer's machine and is why the store never
// relies on per-connection session state (search_path, named prepared statements).
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import pg from 'pg';
import { StoreError, classifyPgError, errorMessageWithCode } from './errors.js';
import { DEFAULT_DATABASE_URL, redactUrl, silentLog, type StoreLog } from './pg.js';

export interface ResolveDatabaseOptions {
  /** DATABASE_URL when it was set; undefined lets the embedded Postgres stand in. */
  databaseUrl?: string;
  /** Where the embedded Postgres keeps its data, e.g. `.tiny-dancer/pgdata` (relative to cwd). */
  dataDir: string;
  log?: StoreLog;
  /** The address probed when databaseUrl is not set. Default docs/contracts.md §2's. */
  defaultUrl?: string;
  /** How long the probe waits for the default Postgres. Default 1 500 ms. */
  probeTimeoutMs?: number;
  /** Loopback port for the embedded server; default 0 (any free port). */
  port?: number;
}

export interface ResolvedDatabase {
  /** Connection string for `pg`. */
  url: string;
  embedded: boolean;
  /** Stops the embedded server and closes its database; nothing for a real Postgres. */
  close(): Promise<void>;
}

export interface EmbeddedPostgres {
  url: string;
  dataDir: string;
  port: number;
  close(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port?: number;
  /** Client connections accepted at once (pglite-socket refuses more). Default 32. */
  maxConnections?: number;
}

/**
 * Whether a Postgres answers at `url`: true when it accepted a connection, false when nothing is
 * listening or the connection timed out. A server that answers but refuses us (bad password,
 * missing database) counts as answering: the caller should fail loudly, not fall back.
 */
export async function postgresAnswers(url: string, timeoutMs = 1_500): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (err) {
    return classifyPgError(err) !== 'retriable';
  } finally {
    await client.end().catch(() => {});
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One process per data folder: PGlite has no locking of its own and two writers would corrupt
 * the files. A lock file beside the folder holds the owner's pid; a stale one (dead pid) is taken.
 */
const heldHere = new Set<string>();

async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const lockPath = `${dataDir}.lock`;
  if (heldHere.has(lockPath)) throw new StoreError(`embedded Postgres data in ${dataDir} is already open in this process`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(lockPath, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      heldHere.add(lockPath);
      return async () => {
        heldHere.delete(lockPath);
        await rm(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt((await readFile(lockPath, 'utf8').catch(() => '')).trim(), 10);
      // Our own pid in a lock we do not hold is a previous incarnation's (containers reuse pid 1).
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner)) {
        throw new StoreError(`embedded Postgres data in ${dataDir} is in use by process ${owner} (lock ${lockPath})`);
      }
      await rm(lockPath, { force: true });
    }
  }
  throw new StoreError(`could not lock embedded Postgres data in ${dataDir} (lock ${`${dataDir}.lock`})`);
}

/** Starts PGlite on `dataDir` and serves it on a loopback port. */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const dataDir = resolvePath(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const unlock = await lockDataDir(dataDir);
  // Loaded only here: the WebAssembly build is large and production never needs it.
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  let db: InstanceType<typeof PGlite> | undefined;
  try {
    db = await PGlite.create({ dataDir });
    const server = new PGLiteSocketServer({
      db,
      host: '127.0.0.1',
      port: options.port ?? 0,
      maxConnections: options.maxConnections ?? 32,
    });
    await server.start();
    const conn = server.getServerConn(); // "127.0.0.1:PORT"
    const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
    const openDb = db;
    let closing: Promise<void> | undefined;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      dataDir,
      port,
      close: () =>
        (closing ??= (async () => {
          try {
            await server.stop();
          } finally {
            try {
              await openDb.close();
            } finally {
              await unlock();
            }
          }
        })()),
    };
  } catch (err) {
    await db?.close().catch(() => {});
    await unlock();
    throw new StoreError(`embedded Postgres in ${dataDir} did not start: ${errorMessageWithCode(err)}`, { cause: err });
  }
}

/**
 * Decides where the decision log goes:
 * - DATABASE_URL set → that, as given;
 * - otherwise, a Postgres answering at the default address → the default;
 * - otherwise the embedded Postgres in `dataDir`, announced with one log line.
 */
export async function resolveDatabase(options: ResolveDatabaseOptions): Promise<ResolvedDatabase> {
  const log = options.log ?? silentLog;
  if (options.databaseUrl !== undefined && options.databaseUrl !== '') {
    return { url: options.databaseUrl, embedded: false, close: async () => {} };
  }
  const defaultUrl = options.defaultUrl ?? DEFAULT_DATABASE_URL;
  if (await postgresAnswers(defaultUrl, options.probeTimeoutMs)) {
    return { url: defaultUrl, embedded: false, close: async () => {} };
  }
  const embedded = await startEmbeddedPostgres({ dataDir: options.dataDir, port: options.port });
  log.info(
    `no DATABASE_URL and no Postgres at ${redactUrl(defaultUrl)}: logging decisions to an embedded Postgres (PGlite) in ${embedded.dataDir}, served at ${embedded.url}; set DATABASE_URL to use a real Postgres`,
    { embedded: true, dataDir: embedded.dataDir, url: embedded.url },
  );
  return { url: embedded.url, embedded: true, close: () => embedded.close() };
}
