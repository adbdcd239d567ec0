// `tiny-dancer admin models` and `tiny-dancer admin rollback VERSION`, dispatched to from
// ./admin.ts. `models` lists the model registry; `rollback` restores a
// registered version through the same validated ReloadModel as every other reload (the file's
// SHA-256 checked against the registry first), then records who did it and when.
import { parseArgs } from 'node:util';
import { UsageError, errorMessage } from '../../errors.js';
import { intArg, numberArg, parseCommandArgs } from '../args.js';
import { TLS_OPTIONS, actor, clientTls, controlAddress, databaseUrl, schemaName, type Env } from '../common.js';
import type { RegistryEntry } from '../../feedback/registry.js';

export const FEEDBACK_ADMIN_COMMANDS = ['models', 'rollback'] as const;
export type FeedbackAdminCommand = (typeof FEEDBACK_ADMIN_COMMANDS)[number];

export const FEEDBACK_ADMIN_USAGE = `  models [--limit N]    the model registry: every version with its SHA-256, metrics, and who
                        promoted it when; * marks the active one (reads Postgres:
                        --database-url, --schema as for retrain)
  rollback VERSION [--promoted-by NAME]
                        restore a registered version: its file is checked against the
                        registry's SHA-256, then reloaded through the control plane like
                        'reload' (needs TD_ADMIN_TOKEN); recorded as promoted by NAME`;

const OPTIONS = {
  json: { type: 'boolean' },
  'database-url': { type: 'string' },
  schema: { type: 'string' },
  limit: { type: 'string' },
  addr: { type: 'string' },
  timeout: { type: 'string' },
  'promoted-by': { type: 'string' },
  ...TLS_OPTIONS,
} as const;

type OptionSpec = Record<string, { type: 'string' | 'boolean' }>;

/**
 * The admin subcommand when it is one of ours (models, rollback), else undefined. `adminOptions`
 * are the other admin subcommands' options: with every option's arity known, node's own parser
 * finds the first positional, so `--addr models:1 stats` is not taken for `models`.
 */
export function feedbackAdminCommand(argv: readonly string[], adminOptions: OptionSpec = {}): FeedbackAdminCommand | undefined {
  const { tokens } = parseArgs({ args: [...argv], options: { ...adminOptions, ...OPTIONS }, strict: false, allowPositionals: true, tokens: true });
  for (const t of tokens) {
    if (t.kind === 'option-terminator') return undefined;
    if (t.kind === 'positional') return (FEEDBACK_ADMIN_COMMANDS as readonly string[]).includes(t.value) ? (t.value as FeedbackAdminCommand) : undefined;
  }
  return undefined;
}

const ONLY_ROLLBACK = ['addr', 'timeout', 'promoted-by', 'tls', 'tls-ca', 'tls-cert', 'tls-key', 'tls-server-name'];

function metric(e: RegistryEntry, pick: (ev: Record<string, unknown>) => unknown): string {
  const ev = (e.metrics.retrain as { evaluation?: { candidate?: Record<string, unknown> } } | undefined)?.evaluation?.candidate;
  const v = ev ? pick(ev) : undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(4) : '—';
}

function formatModels(entries: RegistryEntry[]): string {
  if (entries.length === 0) return 'the model registry is empty';
  const lines = [
    `  ${'version'.padEnd(30)} ${'created'.padEnd(20)} ${'promoted'.padEnd(20)} ${'by'.padEnd(14)} ${'sha256'.padEnd(12)} ${'AUC'.padEnd(7)} ${'cover'.padEnd(7)} file`,
  ];
  const t = (d: Date | null) => (d ? d.toISOString().slice(0, 19).replace('T', ' ') : '—');
  for (const e of entries) {
    lines.push(
      `${e.active ? '*' : ' '} ${e.version.padEnd(30)} ${t(e.created_at).padEnd(20)} ${t(e.promoted_at).padEnd(20)} ${(e.promoted_by ?? '—').slice(0, 14).padEnd(14)} ${e.sha256.slice(0, 12)} ${metric(e, (m) => m.auc).padEnd(7)} ${metric(e, (m) => m.coverage).padEnd(7)} ${e.path ?? '(no file kept)'}`,
    );
  }
  return lines.join('\n');
}

/** Runs `admin models` / `admin rollback VERSION`. `env` is the process environment (passed in). */
export async function runFeedbackAdmin(argv: string[], env: Env): Promise<number> {
  const { values: v, positionals } = parseCommandArgs(argv, OPTIONS, true);
  const [command, ...rest] = positionals;
  if (command !== 'models' && command !== 'rollback') throw new UsageError(`unknown admin command '${command ?? ''}'`);
  if (command === 'models') {
    if (rest.length > 0) throw new UsageError(`'admin models' takes no arguments, got '${rest.join(' ')}'`);
    for (const k of ONLY_ROLLBACK) if ((v as Record<string, unknown>)[k] !== undefined) throw new UsageError(`--${k} does not apply to 'admin models'`);
  } else {
    if (rest.length !== 1) throw new UsageError("'admin rollback' takes exactly one VERSION");
    if (v.limit !== undefined) throw new UsageError("--limit does not apply to 'admin rollback'");
  }
  const limit = intArg('limit', v.limit, 1000, 1, 1_000_000);
  const { createPool, redactUrl } = await import('../../store/index.js');
  const { loadPgTls } = await import('../../config-security.js');
  const url = databaseUrl(v['database-url'], env, redactUrl);
  const schema = schemaName(v.schema, env);
  const { ModelRegistry } = await import('../../feedback/registry.js');
  const out = (s: string) => void process.stdout.write(`${s}\n`);

  if (command === 'models') {
    const pool = createPool({ url, tls: loadPgTls(env), max: 1, applicationName: 'tiny-dancer admin models' });
    try {
      const entries = await new ModelRegistry(pool, schema).list(limit).catch((err: unknown) => {
        const hint = (err as { code?: string }).code === '42P01' ? " (no model registry there yet: run 'tiny-dancer migrate' or start serve)" : '';
        throw new Error(`models: ${redactUrl(url)} schema ${schema}: ${errorMessage(err)}${hint}`, { cause: err });
      });
      if (v.json) for (const e of entries) out(JSON.stringify(e));
      else out(formatModels(entries));
      return 0;
    } finally {
      await pool.end().catch(() => {});
    }
  }

  const version = rest[0]!;
  const token = env.TD_ADMIN_TOKEN?.trim() || undefined;
  if (!token) throw new UsageError('rollback reloads through the control plane and needs the admin token in TD_ADMIN_TOKEN');
  const address = controlAddress(v.addr, env);
  const timeoutS = numberArg('timeout', v.timeout, 30, 0.1, 3600);
  const tls = clientTls(v);
  const by = actor(v['promoted-by'], env);
  const { ControlClient } = await import('../../control/client.js');
  const { activateVersion } = await import('../../feedback/promote.js');
  const pool = createPool({ url, tls: loadPgTls(env), max: 1, applicationName: 'tiny-dancer admin rollback' });
  const client = new ControlClient({ address, token, ...(tls ? { tls } : {}), deadlineMs: timeoutS * 1000 });
  try {
    const registry = new ModelRegistry(pool, schema);
    const known = await registry.get(version).catch((err: unknown) => {
      throw new Error(`rollback: ${redactUrl(url)} schema ${schema}: ${errorMessage(err)}`, { cause: err });
    });
    if (!known) throw new UsageError(`rollback: no model version '${version}' in the registry (see 'tiny-dancer admin models')`);
    const { entry, previousVersion } = await activateVersion(client, registry, version, by, {
      rollback: { at: new Date().toISOString(), by },
    }).catch((err: unknown) => {
      throw new Error(`rollback ${version}: ${errorMessage(err)}`, { cause: err });
    });
    if (v.json) out(JSON.stringify({ rolledBack: true, version, previousVersion, entry }));
    else out(`rolled back: now serving ${version} (was ${previousVersion}); recorded as promoted by ${entry.promoted_by} at ${entry.promoted_at?.toISOString()}`);
    return 0;
  } finally {
    client.close();
    await pool.end().catch(() => {});
  }
}
