// A secured Kafka broker of the test file's own (scripts/kafka.mjs up --secure) on free ports in
// a temporary home, never the shared plain broker: SASL_SSL (PLAIN, SCRAM-SHA-512, OAUTHBEARER)
// and mutual TLS, with its CA and client certificate. Stopped and removed after the file.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { down, up } from '../../../scripts/kafka.mjs';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface SecureBroker {
  plaintext: string;
  saslSsl: string;
  mtls: string;
  caFile: string;
  caKeyFile: string;
  mechanisms: string[];
  env: {
    scram: Record<string, string>;
    plain: Record<string, string>;
    oauthbearer: Record<string, string>;
    mtls: Record<string, string>;
  };
  home: string;
  logFile: string;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port with base..base+3 free (plaintext, controller, SASL_SSL, mutual TLS). */
async function freePorts(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const free = await Promise.all([0, 1, 2, 3].map((d) => portFree(base + d)));
    if (free.every(Boolean)) return base;
  }
  throw new Error('no four consecutive free ports');
}

/** Starts the broker before the file's tests; the returned object is filled in by then. */
export function secureBroker(): SecureBroker {
  const broker = {} as SecureBroker;
  let env: Record<string, string | undefined> = {};
  beforeAll(async () => {
    const home = mkdtempSync(join(tmpdir(), 'td-secure-kafka-'));
    const port = await freePorts();
    // The jars of the default broker, when it has them (CI starts it first).
    const pom = readFileSync(join(ROOT, 'deploy', 'kafka', 'pom.xml'), 'utf8');
    const version = /<kafka\.version>([^<]+)</.exec(pom)?.[1] ?? '';
    const libs = join(ROOT, '.cache', 'kafka', `libs-${version}`);
    env = {
      ...process.env,
      TD_KAFKA_HOME: home,
      TD_KAFKA_PORT: String(port),
      TD_KAFKA_HEAP: '384m',
      ...(existsSync(join(libs, '.complete')) ? { TD_KAFKA_LIBS: libs } : {}),
    };
    const r = await up(env, { secure: true });
    if (!r.secure) throw new Error('the broker started without its secure listeners');
    Object.assign(broker, r.secure, { home, logFile: join(home, 'kafka.log') });
  }, 300_000);
  afterAll(async () => {
    if (!broker.home) return;
    await down(env);
    rmSync(broker.home, { recursive: true, force: true });
  }, 60_000);
  return broker;
}
