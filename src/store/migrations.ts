// Versioned schema migrations, applied in order, all pending ones in ONE transaction, under a
// transaction-scoped advisory lock keyed by the schema: two instances starting together queue on
// the lock, the second finds everything applied and does nothing. `td_schema_migrations`
// records what was applied, when, by which tiny-dancer version, and a checksum of the SQL.
//
// Every statement names its schema explicitly instead of relying on search_path: the embedded
// Postgres (PGlite behind pglite-socket) multiplexes all client connections onto ONE session, so
// a `SET search_path` on one connection would leak into the others.
//
// Rules for adding a migration: append to MIGRATIONS with the next version; never edit one that
// has shipped (its checksum is recorded, and a mismatch is reported); keep it additive when
// possible so an older instance still running during a rolling deploy keeps working.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { VERSION } from '../version.js';
import { StoreError, errorMessageWithCode } from './errors.js';
import { quoteSchema, redactUrl, silentLog, withClient, type StoreLog } from './pg.js';

export interface Migration {
  version: number;
  name: string;
  /** SQL with `{{schema}}` where the quoted schema name goes. */
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: 'routing_decisions',
    // One row per decision (docs/contracts.md §6). The primary key is the idempotency key: a replayed request
    // inserts nothing. Checks mirror docs/contracts.md §1 so a corrupt decision is refused as a row error
    // (isolated by the log) instead of poisoning statistics. `features` keeps the engine's input
    // vector for retraining; `source_*` locate the request record in Kafka.
    sql: `
CREATE TABLE {{schema}}.routing_decisions (
  request_id        text             NOT NULL CHECK (octet_length(request_id) BETWEEN 1 AND 256),
  candidate_id      text             NOT NULL,
  rank              integer          NOT NULL CHECK (rank >= 0),
  confidence        real             NOT NULL CHECK (confidence BETWEEN 0 AND 1),
  uncertainty       real             NOT NULL CHECK (uncertainty BETWEEN 0 AND 1),
  use_lightweight   boolean          NOT NULL,
  reason            text             NOT NULL CHECK (reason IN ('model', 'breaker_open', 'uncertain', 'below_threshold')),
  model_version     text             NOT NULL,
  inference_time_us double precision NOT NULL CHECK (inference_time_us >= 0 AND inference_time_us < 'Infinity'),
  decided_at        timestamptz      NOT NULL,
  features          real[],
  metadata          jsonb,
  source_topic      text,
  source_partition  integer,
  source_offset     bigint,
  logged_at         timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (request_id, candidate_id)
);
CREATE INDEX routing_decisions_decided_at_idx ON {{schema}}.routing_decisions (decided_at);
CREATE INDEX routing_decisions_model_version_idx ON {{schema}}.routing_decisions (model_version, decided_at);
`,
  },
  {
    version: 2,
    name: 'routing_outcomes',
    // Feedback from the pipelines that served a decision. No foreign key to
    // routing_decisions on purpose: an outcome may arrive before its decision's batch is flushed.
    sql: `
CREATE TABLE {{schema}}.routing_outcomes (
  request_id   text        NOT NULL,
  candidate_id text        NOT NULL,
  ok           boolean     NOT NULL,
  quality      real        CHECK (quality BETWEEN 0 AND 1),
  served_by    text        CHECK (served_by IN ('lightweight', 'heavyweight')),
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (request_id, candidate_id)
);
CREATE INDEX routing_outcomes_received_at_idx ON {{schema}}.routing_outcomes (received_at);
`,
  },
  {
    version: 3,
    name: 'model_registry',
    // Every model version ever loaded or trained; at most one is active, enforced by a
    // unique partial index on a constant.
    sql: `
CREATE TABLE {{schema}}.model_registry (
  version     text        PRIMARY KEY,
  sha256      text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  path        text,
  metrics     jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  promoted_at timestamptz,
  promoted_by text,
  active      boolean     NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX model_registry_one_active_idx ON {{schema}}.model_registry ((true)) WHERE active;
`,
  },
  {
    version: 4,
    name: 'routing_decisions_trace_id',
    // The W3C trace id of the request a decision answered (docs/contracts.md §11), so a trace can
    // be followed from a tracing backend to its rows. Nullable: older rows and requests without a
    // trace context have none. Indexed for that lookup, partially: most rows may have none.
    sql: `
ALTER TABLE {{schema}}.routing_decisions
  ADD COLUMN trace_id text CHECK (trace_id ~ '^[0-9a-f]{32}$');
CREATE INDEX routing_decisions_trace_id_idx ON {{schema}}.routing_decisions (trace_id) WHERE trace_id IS NOT NULL;
`,
  },
  {
    version: 5,
    name: 'routing_decisions_policy',
    // The policy whose thresholds decided each decision ('global', 'tenant:<name>';
    // docs/contracts.md §6, §10). Nullable: rows written before it, or by an older instance
    // during a rolling deploy, have none.
    sql: `
ALTER TABLE {{schema}}.routing_decisions ADD COLUMN policy text;
`,
  },
  {
    version: 6,
    name: 'control_history',
    // The audit history of the control topic (docs/contracts.md §6, §10): one row per record,
    // applied or refused, keyed by its offset in the one-partition topic so that every
    // replica's mirror of the same record is one row.
    sql: `
CREATE TABLE {{schema}}.control_history (
  control_offset bigint      PRIMARY KEY,
  record_key     text        NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('model', 'thresholds', 'policy', 'policy-delete', 'unknown')),
  detail         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  written_by     text,
  written_at     timestamptz,
  outcome        text        NOT NULL CHECK (outcome IN ('applied', 'refused')),
  error          text,
  mirrored_at    timestamptz NOT NULL DEFAULT now()
);
`,
  },
]);

export interface MigrateOptions {
  /** Schema holding the tables; created when missing. Default 'public'. */
  schema?: string;
  /** How long to wait for another instance's migration before failing. Default 60 s. */
  lockTimeoutMs?: number;
  log?: StoreLog;
  /** For tests: the list to apply instead of MIGRATIONS. */
  migrations?: readonly Migration[];
}

export interface AppliedMigration {
  version: number;
  name: string;
}

export interface MigrateResult {
  schema: string;
  /** Applied by this call, in order (empty when the schema was up to date). */
  applied: AppliedMigration[];
  /** Highest version now recorded in the schema. */
  version: number;
  /** Versions recorded whose SQL differs from this build's (edited after shipping). */
  checksumMismatches: number[];
  /** Versions recorded that this build does not know (a newer instance migrated). */
  unknownVersions: number[];
}

export function migrationChecksum(m: Migration): string {
  return createHash('sha256').update(m.sql).digest('hex');
}

/** The advisory-lock key of a schema's migrations: stable across processes and versions. */
export function migrationLockKey(schema: string): string {
  return createHash('sha256').update(`tiny-dancer:migrations:${schema}`).digest().readBigInt64BE(0).toString();
}

// Versions strictly increase but may leave gaps: a version number is reserved when work that
// adds a migration starts, and those pieces of work may land in any order. Each migration is
// recorded by its own version, so one that lands later is still applied where it is missing.
function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    const prev = i === 0 ? 0 : migrations[i - 1]!.version;
    if (!Number.isInteger(m.version) || m.version <= prev) {
      throw new StoreError(`migration list is out of order: position ${i + 1} holds version ${m.version} (${m.name})`);
    }
  });
}

/**
 * Applies the pending migrations to `schema`. Safe to call from several processes at once and
 * as often as you like. Throws StoreError (retriable when Postgres was unreachable).
 */
export async function migrate(pool: pg.Pool, options: MigrateOptions = {}): Promise<MigrateResult> {
  const schema = options.schema ?? 'public';
  const q = quoteSchema(schema);
  const log = options.log ?? silentLog;
  const migrations = options.migrations ?? MIGRATIONS;
  checkOrder(migrations);
  const lockTimeoutMs = Math.max(1, Math.floor(options.lockTimeoutMs ?? 60_000));

  try {
    return await withClient(pool, async (client) => {
      await client.query('BEGIN');
      try {
        await client.query(`SET LOCAL lock_timeout = ${lockTimeoutMs}`);
        await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [migrationLockKey(schema)]);
        // Check before creating: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
        // when the schema exists, which a least-privileged service role may not have.
        const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${q}`);
        await client.query(`
CREATE TABLE IF NOT EXISTS ${q}.td_schema_migrations (
  version     integer     PRIMARY KEY,
  name        text        NOT NULL,
  checksum    text        NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  applied_by  text        NOT NULL
)`);
        const recorded = await client.query<{ version: number; checksum: string }>(
          `SELECT version, checksum FROM ${q}.td_schema_migrations ORDER BY version`,
        );
        const done = new Map(recorded.rows.map((r) => [r.version, r.checksum]));
        const known = new Set(migrations.map((m) => m.version));
        const checksumMismatches: number[] = [];
        const applied: AppliedMigration[] = [];
        for (const m of migrations) {
          const sum = migrationChecksum(m);
          const prior = done.get(m.version);
          if (prior !== undefined) {
            if (prior !== sum) checksumMismatches.push(m.version);
            continue;
          }
          await client.query(m.sql.replaceAll('{{schema}}', q));
          await client.query(
            `INSERT INTO ${q}.td_schema_migrations (version, name, checksum, applied_by) VALUES ($1, $2, $3, $4)`,
            [m.version, m.name, sum, `tiny-dancer ${VERSION}`],
          );
          applied.push({ version: m.version, name: m.name });
        }
        await client.query('COMMIT');
        const unknownVersions = [...done.keys()].filter((v) => !known.has(v));
        const version = Math.max(0, ...done.keys(), ...applied.map((a) => a.version));
        if (applied.length > 0) {
          log.info('postgres migrations applied', { schema, applied: applied.map((a) => `${a.version}_${a.name}`), version });
        }
        if (checksumMismatches.length > 0) {
          log.warn('postgres migrations changed after they were applied', { schema, versions: checksumMismatches });
        }
        if (unknownVersions.length > 0) {
          log.warn('postgres schema has migrations this build does not know (a newer version ran)', { schema, versions: unknownVersions });
        }
        return { schema, applied, version, checksumMismatches, unknownVersions };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw StoreError.from(`migrating schema '${schema}' failed: ${errorMessageWithCode(err)}`, err);
  }
}

/** For messages: where the migrations went, without the password. */
export function describeTarget(url: string, schema: string): string {
  return `${redactUrl(url)} schema ${schema}`;
}
