// A broker of a test's own (scripts/kafka.mjs on free ports, data in a temporary folder), for
// tests that stop, restart or start late the broker: the shared one must never be touched.
// The jars are not fetched again: the folder links to those the shared broker's cache holds.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { down, status, up } from '../../scripts/kafka.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Distinct free ports, held open together so no two are the same. */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(s);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** Folders that may hold the fetched jars: this checkout's cache, or the one node_modules comes from. */
function jarCaches(): string[] {
  const out = [join(ROOT, '.cache', 'kafka')];
  try {
    out.push(join(dirname(realpathSync(join(ROOT, 'node_modules'))), '.cache', 'kafka'));
  } catch {
    /* no node_modules: nothing else to try */
  }
  return out;
}

export interface OwnBroker {
  /** host:port for KAFKA_BROKERS. */
  readonly brokers: string;
  readonly home: string;
  /** A kafkajs client of this broker (quiet; retries through a restart). */
  kafka(): Kafka;
  /** Starts it (or finds it running); resolves once it accepts clients. */
  up(): Promise<void>;
  /** Stops it (SIGTERM, then SIGKILL after a grace period); its data stays. */
  down(): Promise<void>;
  /** Stops it if it runs and deletes its folder. */
  dispose(): Promise<void>;
}

/** A broker on free ports with an empty data folder; not started. */
export async function ownBroker(prefix = 'td-broker'): Promise<OwnBroker> {
  const [port, controllerPort] = await freePorts(2);
  const home = mkdtempSync(join(tmpdir(), `${prefix}-`));
  mkdirSync(home, { recursive: true });
  for (const cache of jarCaches()) {
    if (!existsSync(cache)) continue;
    for (const dir of readdirSync(cache)) {
      if (dir.startsWith('libs-') && existsSync(join(cache, dir, '.complete')) && !existsSync(join(home, dir))) {
        symlinkSync(join(cache, dir), join(home, dir));
      }
    }
  }
  const env = {
    ...process.env,
    TD_KAFKA_HOME: home,
    TD_KAFKA_PORT: String(port),
    TD_KAFKA_CONTROLLER_PORT: String(controllerPort),
    TD_KAFKA_HEAP: process.env.TD_KAFKA_HEAP ?? '384m',
  };
  return {
    brokers: `localhost:${port}`,
    home,
    kafka: () =>
      new Kafka({ clientId: `${prefix}-test`, brokers: [`localhost:${port}`], logLevel: logLevel.NOTHING, retry: { retries: 30, initialRetryTime: 300, maxRetryTime: 5_000 } }),
    up: async () => {
      await up(env);
    },
    down: async () => {
      await down(env);
    },
    dispose: async () => {
      if ((await status(env)).pid !== undefined) await down(env);
      rmSync(home, { recursive: true, force: true });
    },
  };
}
