// Helpers shared by the `tiny-dancer` commands (retrain, admin and its models|rollback): argument
// forms, the database and control-plane connections, and who is acting. The commands pass the
// environment in; nothing here reads process.env.
import { userInfo } from 'node:os';
import { UsageError } from '../errors.js';
import type { ClientTlsFiles } from '../control/tls.js';

export type Env = Record<string, string | undefined>;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "7d", "12h", "30m", "90s", "2w" (a number and one unit) → milliseconds. */
export function parseDuration(name: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(raw.trim());
  if (!m) throw new UsageError(`--${name} must be a duration like 7d, 12h, 30m or 90s, got '${raw}'`);
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!(ms > 0)) throw new UsageError(`--${name} must be longer than 0, got '${raw}'`);
  return ms;
}

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export function databaseUrl(option: string | undefined, env: Env, redact: (u: string) => string): string {
  const url = option ?? (env.DATABASE_URL?.trim() || DEFAULT_DATABASE_URL);
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') throw new Error('scheme');
  } catch {
    throw new UsageError(`database URL ${redact(url)} is invalid: expected postgres://user[:password]@host[:port]/database`);
  }
  return url;
}

export function schemaName(option: string | undefined, env: Env): string {
  const s = option ?? (env.TD_DB_SCHEMA?.trim() || 'public');
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(s)) throw new UsageError(`schema '${s}' is invalid: use 1-63 characters a-z, 0-9, _ (not starting with a digit)`);
  return s;
}

export function controlAddress(option: string | undefined, env: Env): string {
  const addr = option ?? (env.TD_GRPC_ADDR?.trim() || '127.0.0.1:50051');
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/.test(addr)) throw new UsageError(`--addr must be host:port, got '${addr}'`);
  return addr;
}

/** Who promotes: --promoted-by, else TD_PROMOTED_BY, else the OS user name. */
export function actor(option: string | undefined, env: Env): string {
  const raw = option ?? env.TD_PROMOTED_BY?.trim();
  if (raw !== undefined && raw !== '') {
    if (raw.length > 200 || [...raw].some((ch) => ch.charCodeAt(0) < 0x20)) throw new UsageError('--promoted-by must be at most 200 printable characters');
    return raw;
  }
  try {
    return userInfo().username || 'unknown';
  } catch {
    return 'unknown';
  }
}

export const TLS_OPTIONS = {
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
} as const;

export function clientTls(v: { tls?: boolean; 'tls-ca'?: string; 'tls-cert'?: string; 'tls-key'?: string; 'tls-server-name'?: string }): ClientTlsFiles | undefined {
  const any = v.tls || v['tls-ca'] !== undefined || v['tls-cert'] !== undefined || v['tls-key'] !== undefined || v['tls-server-name'] !== undefined;
  if (!any) return undefined;
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together (mutual TLS needs both)');
  const tls: ClientTlsFiles = {};
  if (v['tls-ca'] !== undefined) tls.caFile = v['tls-ca'];
  if (v['tls-cert'] !== undefined) tls.certFile = v['tls-cert'];
  if (v['tls-key'] !== undefined) tls.keyFile = v['tls-key'];
  if (v['tls-server-name'] !== undefined) tls.serverName = v['tls-server-name'];
  return tls;
}
