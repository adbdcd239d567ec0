// Helpers for the static deployment checks: a Dockerfile reader, Docker's .dockerignore
// matching, compose-style ${VAR} interpolation, and the docs/contracts.md §2 environment contract.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, loadYaml } from '../../../scripts/check-manifests.js';

export { ROOT };

export function repoFile(...parts: string[]): string {
  return join(ROOT, ...parts);
}

export function readRepo(...parts: string[]): string {
  return readFileSync(repoFile(...parts), 'utf8');
}

/** docs/contracts.md §2: every setting an operator can give `serve` through the environment, with its default. */
export const SPEC_ENV: Readonly<Record<string, string | undefined>> = Object.freeze({
  KAFKA_BROKERS: 'localhost:9092',
  TD_TOPIC_REQUESTS: 'routing.requests',
  TD_TOPIC_LIGHTWEIGHT: 'routing.lightweight',
  TD_TOPIC_HEAVYWEIGHT: 'routing.heavyweight',
  TD_TOPIC_DLQ: 'routing.dlq',
  TD_TOPIC_OUTCOMES: 'routing.outcomes',
  TD_EXACTLY_ONCE: 'false',
  TD_GROUP_ID: 'tiny-dancer',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
  TD_GRPC_ADDR: '127.0.0.1:50051',
  TD_ADMIN_TOKEN: undefined,
  TD_HTTP_ADDR: '127.0.0.1:9464',
  TD_MODEL_PATH: 'models/default.safetensors',
});

/** The environment variable names src/config.ts reads (found as string literals in its source). */
export function configEnvNames(): Set<string> {
  const src = readRepo('src', 'config.ts');
  // Read as raw(env, 'NAME') / intVar(env, 'NAME', ...) or directly as env.NAME.
  const quoted = [...src.matchAll(/'((?:TD|KAFKA)_[A-Z0-9_]+|DATABASE_URL)'/g)].map((m) => m[1]!);
  const direct = [...src.matchAll(/\benv\.((?:TD|KAFKA)_[A-Z0-9_]+|DATABASE_URL)\b/g)].map((m) => m[1]!);
  return new Set([...quoted, ...direct]);
}

/** `host:port` -> port. */
export function portOf(addr: string): number {
  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`no port in '${addr}'`);
  return port;
}

// ---- Dockerfile ---------------------------------------------------------------------------------

export interface Instruction {
  keyword: string;
  /** Everything after the keyword and its --flags, continuation lines joined. */
  args: string;
  flags: Record<string, string>;
  /** The exec (JSON array) form, when used. */
  exec?: string[];
  line: number;
}

export interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

function splitWords(s: string): string[] {
  const words: string[] = [];
  const re = /(?:[^\s"']+|"(?:[^"\\]|\\.)*"|'[^']*')+/g;
  for (const m of s.matchAll(re)) words.push(m[0]);
  return words;
}

function unquote(s: string): string {
  if (s.length >= 2 && s.startsWith('"') && s.endsWith('"')) return s.slice(1, -1).replace(/\\(.)/g, '$1');
  if (s.length >= 2 && s.startsWith("'") && s.endsWith("'")) return s.slice(1, -1);
  return s;
}

/** `K=V K2="v 2"` (or the legacy `K V`) -> pairs. */
export function parseKeyValues(args: string): Record<string, string> {
  const words = splitWords(args);
  const out: Record<string, string> = {};
  if (words.length >= 1 && !words[0]!.includes('=')) {
    out[words[0]!] = unquote(args.trim().slice(words[0]!.length).trim());
    return out;
  }
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`not KEY=VALUE: '${w}'`);
    out[w.slice(0, eq)] = unquote(w.slice(eq + 1));
  }
  return out;
}

function substitute(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, a: string | undefined, b: string | undefined) => vars[(a ?? b)!] ?? '');
}

export function parseDockerfile(text: string): Dockerfile {
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!;
    if (/^\s*(#.*)?$/.test(first)) continue;
    const start = i;
    let logical = first;
    // A trailing backslash continues the instruction; comment lines inside it are dropped.
    while (/\\\s*$/.test(logical) && i + 1 < lines.length) {
      logical = logical.replace(/\\\s*$/, ' ');
      i++;
      const next = lines[i]!;
      if (/^\s*#/.test(next)) {
        logical += '\\';
        continue;
      }
      logical += next;
    }
    const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(logical);
    if (!m) throw new Error(`line ${start + 1}: cannot read '${first}'`);
    const keyword = m[1]!.toUpperCase();
    let rest = m[2]!.trim();
    const flags: Record<string, string> = {};
    for (let f = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest); f; f = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(rest)) {
      flags[f[1]!] = f[2] ?? 'true';
      rest = rest.slice(f[0].length);
    }
    if (keyword === 'HEALTHCHECK') {
      // HEALTHCHECK [options] CMD <command>: keep the command, the options are in flags.
      const cmd = /^CMD\s+(.*)$/s.exec(rest);
      rest = cmd ? cmd[1]!.trim() : rest;
    }
    const instruction: Instruction = { keyword, args: rest, flags, line: start + 1 };
    if (rest.startsWith('[')) {
      const parsed: unknown = JSON.parse(rest);
      if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`line ${start + 1}: exec form must be a JSON array of strings`);
      instruction.exec = parsed;
    }
    if (keyword === 'FROM') {
      const words = splitWords(rest);
      const as = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ from: substitute(words[0] ?? '', globalArgs), name: as >= 0 ? words[as + 1] : undefined, instructions: [] });
      continue;
    }
    const stage = stages[stages.length - 1];
    if (stage === undefined) {
      if (keyword !== 'ARG') throw new Error(`line ${start + 1}: ${keyword} before FROM`);
      const eq = rest.indexOf('=');
      globalArgs[eq < 0 ? rest : rest.slice(0, eq)] = eq < 0 ? '' : unquote(rest.slice(eq + 1));
      continue;
    }
    stage.instructions.push(instruction);
  }
  return { globalArgs, stages };
}

export function instructions(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

/** The ENV of a stage, merged in order. */
export function stageEnv(stage: Stage): Record<string, string> {
  return Object.assign({}, ...instructions(stage, 'ENV').map((i) => parseKeyValues(i.args))) as Record<string, string>;
}

/** COPY sources and destination (exec or shell form). */
export function copyPaths(i: Instruction): { sources: string[]; dest: string } {
  const words = i.exec ?? splitWords(i.args).map(unquote);
  if (words.length < 2) throw new Error(`line ${i.line}: COPY needs a source and a destination`);
  return { sources: words.slice(0, -1), dest: words[words.length - 1]! };
}

// ---- .dockerignore ------------------------------------------------------------------------------

interface IgnoreRule {
  negated: boolean;
  re: RegExp;
}

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` matches any number of directories, including none.
      if (glob[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Docker's rules: patterns are matched against the slash-separated path relative to the context
 * (a pattern that matches a parent directory matches everything inside it), the last matching
 * pattern decides, `!` re-includes.
 */
export function dockerignore(text: string): (path: string) => boolean {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).trim().replace(/^\/+/, '').replace(/\/+$/, '');
    rules.push({ negated, re: globToRegExp(pattern) });
  }
  return (path: string): boolean => {
    const clean = path.replace(/^\.\//, '').replace(/\/+$/, '');
    const parts = clean.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const rule of rules) if (prefixes.some((p) => rule.re.test(p))) ignored = !rule.negated;
    return ignored;
  };
}

// ---- compose ------------------------------------------------------------------------------------

/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, $$. */
export function interpolate(value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, name?: string, op?: string, dflt?: string, bare?: string) => {
    if (m === '$$') return '$';
    const key = (name ?? bare)!;
    const v = env[key];
    if (op === ':-') return v === undefined || v === '' ? (dflt ?? '') : v;
    if (op === '-') return v === undefined ? (dflt ?? '') : v;
    return v ?? '';
  });
}

export async function readYaml(...parts: string[]): Promise<unknown> {
  const yaml = await loadYaml();
  return yaml.parse(readRepo(...parts), { uniqueKeys: true });
}

export async function readYamlDocuments(...parts: string[]): Promise<unknown[]> {
  const yaml = await loadYaml();
  const docs = yaml.parseAllDocuments(readRepo(...parts), { uniqueKeys: true });
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${parts.join('/')}: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS()).filter((v) => v !== null && v !== undefined);
}

/** Narrowing helpers so assertions read plainly. */
export function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not a mapping`);
  return v as Record<string, unknown>;
}

export function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what} is not a list`);
  return v;
}

export function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what} is not a string (got ${JSON.stringify(v)})`);
  return v;
}
