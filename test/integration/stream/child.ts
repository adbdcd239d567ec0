// Spawns `serve` as a child process on free ports and waits until it is ready.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { deleteTopics, dropSchema, envFor, names, type Names } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ENTRY = fileURLToPath(new URL('./serve-child.ts', import.meta.url));
const BIN = join(ROOT, 'bin', 'tiny-dancer.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ServeChild {
  proc: ChildProcess;
  httpUrl: string;
  /** host:port of the gRPC control plane. */
  grpcAddr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  /**
   * Run the built command (bin/tiny-dancer.js over dist/, as an operator does) instead of the
   * sources through tsx. The build must be current: `npm run build`. Default: the build when it
   * is newer than every source file (`npm test` builds first), else the sources.
   */
  dist?: boolean;
}

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith(ext)) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

let fresh: boolean | undefined;
/**
 * True when dist/ was built after the last change to src/. Then a child runs the compiled code:
 * what ships, and it starts without transpiling a hundred files first.
 */
export function builtIsFresh(): boolean {
  fresh ??= existsSync(join(ROOT, 'dist', 'startup.js')) && newestMtime(join(ROOT, 'dist'), '.js') >= newestMtime(join(ROOT, 'src'), '.ts');
  return fresh;
}

/** `serve` from the sources (through tsx), or the built CLI as installed (bin/, running dist/). */
export const SERVE_FROM_SOURCES: readonly string[] = ['--import', 'tsx', ENTRY];
export const SERVE_BUILT: readonly string[] = [BIN, 'serve'];

/** `serve` as the build when it is fresh, else from the sources. */
export function serveArgv(): readonly string[] {
  return builtIsFresh() ? SERVE_BUILT : SERVE_FROM_SOURCES;
}

/** Node arguments that run the CLI with `args`: the build when it is fresh, else the sources. */
export function cliArgv(...args: string[]): string[] {
  return builtIsFresh()
    ? [BIN, ...args]
    : ['--import', 'tsx', '-e', "import('./src/cli/index.ts').then((m) => m.main(process.argv.slice(1))).then((c) => { process.exitCode = c; })", ...args];
}

/** Starts `serve` on free ports without waiting for it (see waitReady). */
export async function spawnServe(env: Record<string, string>, logFile: string, opts: SpawnOptions | readonly string[] = {}): Promise<ServeChild> {
  const dist = (opts as SpawnOptions).dist ?? builtIsFresh();
  const argv = Array.isArray(opts) ? (opts as readonly string[]) : dist ? SERVE_BUILT : SERVE_FROM_SOURCES;
  if (argv === SERVE_BUILT && !existsSync(join(ROOT, 'dist', 'startup.js'))) throw new Error('dist/ is missing or stale: run `npm run build` first');
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const out = createWriteStream(logFile, { flags: 'a' });
  const proc = spawn(process.execPath, [...argv], {
    cwd: ROOT,
    env: { ...process.env, ...env, TD_HTTP_ADDR: `127.0.0.1:${httpPort}`, TD_GRPC_ADDR: `127.0.0.1:${grpcPort}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.pipe(out, { end: false });
  proc.stderr!.pipe(out, { end: false });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  return { proc, httpUrl, grpcAddr: `127.0.0.1:${grpcPort}`, exited, kill: (s) => proc.kill(s) };
}

/** Polls /readyz until 200; throws (and kills the child) when it exits or the time runs out. */
export async function waitReady(child: ServeChild, logFile: string, readyTimeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + readyTimeoutMs;
  let dead = false;
  void child.exited.then(() => (dead = true));
  for (;;) {
    if (dead) throw new Error(`serve exited during start-up; see ${logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not become ready within ${readyTimeoutMs} ms; see ${logFile}`);
    }
    try {
      const r = await fetch(`${child.httpUrl}/readyz`);
      if (r.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function startServe(env: Record<string, string>, logFile: string, readyTimeoutMs = 60_000, opts: SpawnOptions | readonly string[] = {}): Promise<ServeChild> {
  const child = await spawnServe(env, logFile, opts);
  await waitReady(child, logFile, readyTimeoutMs);
  return child;
}

/** `serve` children of one test file, on names of its own, logging to one file. */
export interface ServeChildren {
  readonly n: Names;
  readonly logFile: string;
  /** Starts a child with envFor(n, extra); it is SIGKILLed after the file's tests if still running. */
  start(extra?: Record<string, string>, argv?: readonly string[]): Promise<ServeChild>;
}

/** Registers the tear-down (vitest afterAll): kill the children, drop the schema, delete the topics. */
export function serveChildren(prefix: string): ServeChildren {
  const n = names(prefix);
  const logFile = join(tmpdir(), `td-${prefix}-${n.group}.log`);
  const children: ServeChild[] = [];
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await dropSchema(n.schema);
    await deleteTopics(n);
  });
  return {
    n,
    logFile,
    async start(extra = {}, argv = serveArgv()) {
      const child = await startServe(envFor(n, extra), logFile, 60_000, argv);
      children.push(child);
      return child;
    },
  };
}
