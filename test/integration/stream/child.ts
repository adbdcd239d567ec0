// Spawns `serve` as a child process on free ports and waits until it is ready.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { deleteTopics, dropSchema, envFor, names, type Names } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ENTRY = fileURLToPath(new URL('./serve-child.ts', import.meta.url));

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

/** `serve` from the sources (through tsx), or the built CLI as installed (bin/, running dist/). */
export const SERVE_FROM_SOURCES = ['--import', 'tsx', ENTRY];
export const SERVE_BUILT = [fileURLToPath(new URL('../../../bin/tiny-dancer.js', import.meta.url)), 'serve'];

export async function startServe(env: Record<string, string>, logFile: string, readyTimeoutMs = 60_000, argv: string[] = SERVE_FROM_SOURCES): Promise<ServeChild> {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const out = createWriteStream(logFile, { flags: 'a' });
  const proc = spawn(process.execPath, argv, {
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
  const deadline = Date.now() + readyTimeoutMs;
  let dead = false;
  void exited.then(() => (dead = true));
  for (;;) {
    if (dead) throw new Error(`serve exited during start-up; see ${logFile}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`serve did not become ready within ${readyTimeoutMs} ms; see ${logFile}`);
    }
    try {
      const r = await fetch(`${httpUrl}/readyz`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { proc, httpUrl, grpcAddr: `127.0.0.1:${grpcPort}`, exited, kill: (s) => proc.kill(s) };
}

/** `serve` children of one test file, on names of its own, logging to one file. */
export interface ServeChildren {
  readonly n: Names;
  readonly logFile: string;
  /** Starts a child with envFor(n, extra); it is SIGKILLed after the file's tests if still running. */
  start(extra?: Record<string, string>, argv?: string[]): Promise<ServeChild>;
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
    async start(extra = {}, argv = SERVE_FROM_SOURCES) {
      const child = await startServe(envFor(n, extra), logFile, 60_000, argv);
      children.push(child);
      return child;
    },
  };
}
