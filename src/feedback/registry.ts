// The model registry (table model_registry, created by STORE's migrations): every model version
// the service has served or retrain has produced, with the SHA-256 of its file, where the file
// is kept, its metrics, and who promoted it when. At most one row is `active` (a unique partial
// index enforces it): the version the control plane last loaded through promote or rollback,
// or that `serve` started with.
//
// Model files are kept where the row's `path` says (retrain writes candidates under
// `models/candidates/<version>.safetensors` by default); a rollback re-hashes the file and
// refuses it when the hash no longer matches, so a file edited in place is never loaded under
// an old version's name.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type pg from 'pg';
import { InvalidInputError, ModelError, TinyDancerError } from '../errors.js';
import { quoteSchema } from '../store/pg.js';

export interface RegistryEntry {
  version: string;
  sha256: string;
  path: string | null;
  metrics: Record<string, unknown>;
  created_at: Date;
  promoted_at: Date | null;
  promoted_by: string | null;
  active: boolean;
}

export interface RegisterInput {
  version: string;
  sha256: string;
  path?: string | null;
  metrics?: Record<string, unknown>;
}

export class RegistryError extends TinyDancerError {}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A version string safe as a file name (retrain makes them; operators may too). */
export function assertVersionName(version: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(version)) {
    throw new InvalidInputError(`model version '${version}' is not usable as a registry key and file name: use 1-128 of A-Z a-z 0-9 . _ + - (not starting with a symbol)`);
  }
}

/**
 * Writes model bytes to `<dir>/<version>.safetensors` atomically (temp file + rename) and
 * returns the absolute path. An existing file with the same bytes is left alone; with other
 * bytes it is refused (a version names one model forever).
 */
export async function storeModelFile(dir: string, version: string, bytes: Uint8Array): Promise<string> {
  assertVersionName(version);
  const path = resolve(join(dir, `${version}.safetensors`));
  try {
    const existing = await readFile(path);
    if (sha256Hex(existing) === sha256Hex(bytes)) return path;
    throw new ModelError(`${path} already exists with other content: model version '${version}' is taken`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
  return path;
}

interface Row {
  version: string;
  sha256: string;
  path: string | null;
  metrics: Record<string, unknown> | null;
  created_at: Date;
  promoted_at: Date | null;
  promoted_by: string | null;
  active: boolean;
}

const COLUMNS = 'version, sha256, path, metrics, created_at, promoted_at, promoted_by, active';

function toEntry(r: Row): RegistryEntry {
  return { ...r, metrics: r.metrics ?? {} };
}

export class ModelRegistry {
  readonly #pool: pg.Pool;
  readonly #table: string;

  constructor(pool: pg.Pool, readonly schema = 'public') {
    this.#pool = pool;
    this.#table = `${quoteSchema(schema)}.model_registry`;
  }

  /**
   * Adds a version, or confirms it: registering a version again with the same hash merges the
   * new metrics into the stored ones (and fills a missing path); with a different hash it is
   * refused — a version names exactly one model file.
   */
  async register(input: RegisterInput): Promise<RegistryEntry> {
    assertVersionName(input.version);
    if (!/^[0-9a-f]{64}$/.test(input.sha256)) throw new InvalidInputError(`sha256 must be 64 lower-case hex digits, got '${input.sha256}'`);
    const res = await this.#pool.query<Row>(
      `INSERT INTO ${this.#table} AS r (version, sha256, path, metrics)
       VALUES ($1, $2, $3, $4::jsonb)
       ON CONFLICT (version) DO UPDATE
         SET metrics = r.metrics || EXCLUDED.metrics, path = COALESCE(r.path, EXCLUDED.path)
         WHERE r.sha256 = EXCLUDED.sha256
       RETURNING ${COLUMNS}`,
      [input.version, input.sha256, input.path ?? null, JSON.stringify(input.metrics ?? {})],
    );
    const row = res.rows[0];
    if (row) return toEntry(row);
    const existing = await this.get(input.version);
    throw new RegistryError(
      `model version '${input.version}' is already registered with sha256 ${existing?.sha256.slice(0, 12) ?? '?'}…, not ${input.sha256.slice(0, 12)}…: a version names one model; give the new model a new version`,
    );
  }

  async get(version: string): Promise<RegistryEntry | undefined> {
    const res = await this.#pool.query<Row>(`SELECT ${COLUMNS} FROM ${this.#table} WHERE version = $1`, [version]);
    return res.rows[0] ? toEntry(res.rows[0]) : undefined;
  }

  /** Every version, newest first. */
  async list(limit = 1000): Promise<RegistryEntry[]> {
    const res = await this.#pool.query<Row>(`SELECT ${COLUMNS} FROM ${this.#table} ORDER BY created_at DESC, version LIMIT $1`, [limit]);
    return res.rows.map(toEntry);
  }

  async active(): Promise<RegistryEntry | undefined> {
    const res = await this.#pool.query<Row>(`SELECT ${COLUMNS} FROM ${this.#table} WHERE active`);
    return res.rows[0] ? toEntry(res.rows[0]) : undefined;
  }

  /**
   * Records that `version` is now the serving model: it becomes the only active row, with
   * promoted_at = now() and promoted_by = `by`.
   *
   * Deliberately NOT one transaction: the embedded Postgres (PGlite) is a single session shared
   * by every connection, so a BEGIN here would enclose the decision log's concurrent inserts too
   * (and a ROLLBACK would undo them). Instead: check the version exists, clear the old active
   * row, set the new one — each statement atomic. A reader may see no active row for a moment;
   * two promotions racing make one fail on the unique index, never leave two active.
   */
  async markActive(version: string, by: string, extraMetrics: Record<string, unknown> = {}): Promise<RegistryEntry> {
    const exists = await this.#pool.query(`SELECT 1 FROM ${this.#table} WHERE version = $1`, [version]);
    if (exists.rowCount === 0) throw new RegistryError(`model version '${version}' is not in the registry`);
    await this.#pool.query(`UPDATE ${this.#table} SET active = false WHERE active AND version <> $1`, [version]);
    let res;
    try {
      res = await this.#pool.query<Row>(
        `UPDATE ${this.#table} SET active = true, promoted_at = now(), promoted_by = $2, metrics = metrics || $3::jsonb
         WHERE version = $1 RETURNING ${COLUMNS}`,
        [version, by, JSON.stringify(extraMetrics)],
      );
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new RegistryError(`another version was made active at the same moment as '${version}'; check 'admin models' and retry`, { cause: err });
      }
      throw err;
    }
    if (!res.rows[0]) throw new RegistryError(`model version '${version}' disappeared from the registry`);
    return toEntry(res.rows[0]);
  }

  /**
   * Marks `version` active only if no row is active yet (serve's start-up: a fresh registry
   * learns what is serving, without overwriting who promoted what).
   */
  async markActiveIfNone(version: string, by: string): Promise<boolean> {
    const res = await this.#pool.query(
      `UPDATE ${this.#table} SET active = true, promoted_at = COALESCE(promoted_at, now()), promoted_by = COALESCE(promoted_by, $2)
       WHERE version = $1 AND NOT EXISTS (SELECT 1 FROM ${this.#table} WHERE active)`,
      [version, by],
    );
    return (res.rowCount ?? 0) > 0;
  }

  /**
   * Reads a registered version's file and checks it is still the registered model. Throws
   * RegistryError (no file kept, unreadable) or ModelError (hash mismatch).
   */
  async readVerifiedFile(version: string): Promise<{ entry: RegistryEntry; bytes: Buffer }> {
    const entry = await this.get(version);
    if (!entry) throw new RegistryError(`model version '${version}' is not in the registry`);
    if (!entry.path) throw new RegistryError(`model version '${version}' has no stored file to restore from`);
    let bytes: Buffer;
    try {
      bytes = await readFile(entry.path);
    } catch (err) {
      throw new RegistryError(`model version '${version}': cannot read ${entry.path}: ${(err as Error).message}`, { cause: err });
    }
    const sum = sha256Hex(bytes);
    if (sum !== entry.sha256) {
      throw new ModelError(`model version '${version}': ${entry.path} has sha256 ${sum.slice(0, 12)}…, the registry says ${entry.sha256.slice(0, 12)}…; refusing a changed file`);
    }
    return { entry, bytes };
  }
}
