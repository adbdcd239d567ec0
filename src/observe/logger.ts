// Structured logs: one JSON object per line — {"time","level","msg",...fields}. Small on
// purpose (no dependency): the service logs little on the hot path (state changes, errors,
// periodic summaries), so a synchronous write of one line is cheap enough.
//
// Secrets never reach the output: fields whose NAME looks secret (token, password, secret,
// authorization, api key) are replaced whole; in every string, URL passwords are masked and any
// registered secret value (the admin token) is replaced wherever it appears.
import type { Secret } from '../config.js';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  readonly level: Level;
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  isLevelEnabled(level: Level): boolean;
  /** A logger that adds `fields` to every line (e.g. { component: 'processor' }). */
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  level?: Level;
  /** Where lines go; default process.stderr (stdout stays free for command output). */
  write?: (line: string) => void;
  /** Values to scrub wherever they appear (e.g. the admin token). */
  secrets?: (string | Secret | undefined)[];
  base?: Fields;
  /** Clock, for tests. */
  now?: () => Date;
}

const SECRET_KEY = /token|passw(or)?d|secret|authorization|api[-_]?key|credential|cookie/i;
const REDACTED = '[redacted]';
const MAX_DEPTH = 6;
const MAX_STRING = 4000;

function maskUrls(s: string): string {
  return s.replace(/(\/\/[^:/@\s"']*:)[^@\s"']*@/g, '$1***@');
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const write = opts.write ?? ((line: string) => void process.stderr.write(line));
  const now = opts.now ?? (() => new Date());
  const secrets = (opts.secrets ?? [])
    .map((s) => (s === undefined ? '' : typeof s === 'string' ? s : s.reveal()))
    .filter((s) => s.length >= 4);

  const scrub = (s: string): string => {
    let out = maskUrls(s);
    for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out.length > MAX_STRING ? `${out.slice(0, MAX_STRING - 1)}…` : out;
  };

  const clean = (value: unknown, depth: number, seen: WeakSet<object>): unknown => {
    if (typeof value === 'string') return scrub(value);
    if (typeof value === 'bigint') return value.toString();
    if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
    if (value === null || typeof value !== 'object') return typeof value === 'function' ? undefined : value;
    if (seen.has(value)) return '[circular]';
    if (depth >= MAX_DEPTH) return '[…]';
    seen.add(value);
    if (value instanceof Error) {
      const e: Fields = { name: value.name, message: scrub(value.message) };
      const retriable = (value as { retriable?: unknown }).retriable;
      if (typeof retriable === 'boolean') e.retriable = retriable;
      const code = (value as { code?: unknown }).code;
      if (code !== undefined) e.code = clean(code, depth + 1, seen);
      if (value.cause !== undefined) e.cause = clean(value.cause, depth + 1, seen);
      return e;
    }
    if (ArrayBuffer.isView(value)) return `[${value.constructor.name} ${value.byteLength} bytes]`;
    // Objects that know how to print themselves safely (Secret, the config) are trusted.
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return clean(toJSON.call(value), depth + 1, seen);
    if (Array.isArray(value)) return value.slice(0, 100).map((v) => clean(v, depth + 1, seen));
    const out: Fields = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null && v !== false ? REDACTED : clean(v, depth + 1, seen);
    }
    return out;
  };

  const make = (base: Fields, level: Level): Logger => {
    const threshold = RANK[level];
    const emit = (lvl: Level, msg: string, fields?: Fields) => {
      if (RANK[lvl] < threshold) return;
      const record: Fields = { time: now().toISOString(), level: lvl, msg: scrub(msg) };
      const merged = fields === undefined ? base : { ...base, ...fields };
      const cleaned = clean(merged, 0, new WeakSet()) as Fields;
      for (const [k, v] of Object.entries(cleaned)) {
        if (k !== 'time' && k !== 'level' && k !== 'msg' && v !== undefined) record[k] = v;
      }
      let line: string;
      try {
        line = JSON.stringify(record);
      } catch {
        line = JSON.stringify({ time: record.time, level: lvl, msg: record.msg, logError: 'fields not serializable' });
      }
      write(`${line}\n`);
    };
    return {
      level,
      debug: (msg, fields) => emit('debug', msg, fields),
      info: (msg, fields) => emit('info', msg, fields),
      warn: (msg, fields) => emit('warn', msg, fields),
      error: (msg, fields) => emit('error', msg, fields),
      isLevelEnabled: (l) => RANK[l] >= threshold,
      child: (fields) => make({ ...base, ...fields }, level),
    };
  };
  return make(opts.base ?? {}, opts.level ?? 'info');
}

/** A logger that drops everything (library use, tests that do not look at logs). */
export const silentLogger: Logger = createLogger({ level: 'error', write: () => {} });
