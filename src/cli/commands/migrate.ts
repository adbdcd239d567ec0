// `tiny-dancer migrate`: applies the Postgres migrations (the same ones `serve` applies at start)
// and says what it did. Useful before a deploy, or to prepare a database `serve` may not create
// tables in.
import { UsageError, errorMessage } from '../../errors.js';
import { parseCommandArgs } from '../args.js';

export const summary = 'apply the Postgres migrations (serve does this at start too)';
export const usage = `usage: tiny-dancer migrate [--database-url URL] [--schema NAME]

Applies the pending migrations (decision log, outcomes, model registry) in one transaction,
under an advisory lock so concurrent runs and starting instances do not race, and prints
each migration applied.

  --database-url URL   Postgres to migrate (default: DATABASE_URL, else
                       postgres://postgres@127.0.0.1:5432/postgres)
  --schema NAME        schema holding the tables, created when missing (default: TD_DB_SCHEMA,
                       else public — the same schema serve uses)

Exit status: 0 ok, 2 bad arguments, 1 Postgres unreachable or the migration failed.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    'database-url': { type: 'string' },
    schema: { type: 'string' },
  });
  const { DEFAULT_DATABASE_URL, StoreError, createPool, migrate, quoteSchema, redactUrl } = await import('../../store/index.js');
  const url = values['database-url'] ?? (process.env.DATABASE_URL?.trim() || DEFAULT_DATABASE_URL);
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') throw new Error('scheme');
  } catch {
    // Never echo a connection string that failed to parse in full: it may hold a password.
    throw new UsageError(`database URL ${redactUrl(url)} is invalid: expected postgres://user[:password]@host[:port]/database`);
  }
  const schema = values.schema ?? (process.env.TD_DB_SCHEMA?.trim() || 'public');
  quoteSchema(schema); // bad names are a usage error (exit 2), before connecting

  const { loadPgTls } = await import('../../config-security.js');
  const pool = createPool({ url, tls: loadPgTls(process.env), max: 1, applicationName: 'tiny-dancer migrate' });
  const target = `${redactUrl(url)} schema ${schema}`;
  try {
    let result: Awaited<ReturnType<typeof migrate>>;
    try {
      result = await migrate(pool, { schema });
    } catch (err) {
      throw new StoreError(`${target}: ${errorMessage(err)}`, { cause: err });
    }
    for (const m of result.applied) process.stdout.write(`applied ${m.version} ${m.name}\n`);
    process.stdout.write(
      result.applied.length > 0
        ? `${target}: ${result.applied.length} migration(s) applied, now at version ${result.version}\n`
        : `${target}: up to date at version ${result.version}\n`,
    );
    if (result.checksumMismatches.length > 0) {
      process.stderr.write(`warning: migrations ${result.checksumMismatches.join(', ')} changed after they were applied\n`);
    }
    if (result.unknownVersions.length > 0) {
      process.stderr.write(`warning: the schema has migrations ${result.unknownVersions.join(', ')} this version does not know\n`);
    }
    return 0;
  } finally {
    await pool.end().catch(() => {});
  }
}
