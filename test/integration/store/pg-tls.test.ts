// Postgres over TLS: a throw-away cluster (initdb + pg_ctl on a free port, ssl=on, a server
// certificate made with openssl and signed by a CA of the test's own) that only accepts TLS
// connections (hostssl), torn down after. sslmode in DATABASE_URL decides how much is verified;
// TD_PG_SSL_CA_FILE gives the CA.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPgTls } from '../../../src/config-security.js';
import { createPool } from '../../../src/store/pg.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function pgBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(base, versions[0], 'bin');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const bin = pgBin();
const dir = mkdtempSync(join(tmpdir(), 'td-pgtls-'));
const data = join(dir, 'data');
let port = 0;
let started = false;
// initdb refuses to run as root: then the cluster belongs to the postgres user.
const asRoot = process.getuid?.() === 0;

async function pg(tool: string, args: string[]): Promise<void> {
  const cmd = join(bin!, tool);
  if (asRoot) await run('runuser', ['-u', 'postgres', '--', cmd, ...args], { cwd: dir });
  else await run(cmd, args, { cwd: dir });
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

beforeAll(async () => {
  if (!bin) return;
  port = await freePort();
  // A CA, and a server certificate for localhost signed by it; a second CA that signed nothing.
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=td test CA']);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.pem', '-days', '1', '-subj', '/CN=td other CA']);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost\n');
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'server.ext']);
  chmodSync(join(dir, 'server.key'), 0o600);
  if (asRoot) {
    chmodSync(dir, 0o755);
    const { stdout } = await run('id', ['-u', 'postgres']);
    const uid = Number(stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    for (const f of ['server.key', 'server.crt']) chownSync(join(dir, f), uid, gid);
    chownSync(dir, uid, gid);
  }
  await pg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  // TLS only: a plaintext connection finds no pg_hba entry.
  writeFileSync(join(data, 'pg_hba.conf'), 'hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n');
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [`port = ${port}`, "listen_addresses = '127.0.0.1'", "unix_socket_directories = ''", 'ssl = on', `ssl_cert_file = '${join(dir, 'server.crt')}'`, `ssl_key_file = '${join(dir, 'server.key')}'`, 'fsync = off', ''].join('\n'),
  );
  if (asRoot) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    for (const f of ['pg_hba.conf', 'postgresql.auto.conf']) chownSync(join(data, f), uid, gid);
  }
  await pg('pg_ctl', ['-D', data, '-l', join(dir, 'pg.log'), '-w', '-t', '60', 'start']);
  started = true;
}, 120_000);

afterAll(async () => {
  if (started) await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

/** Connects through createPool as the service does; resolves with whether the session is encrypted (pg_stat_ssl), or rejects. */
async function tlsInUse(url: string, caFile?: string): Promise<boolean> {
  const tls = loadPgTls(caFile ? { TD_PG_SSL_CA_FILE: caFile } : {});
  const pool = createPool({ url, tls, max: 1, connectionTimeoutMs: 10_000 });
  try {
    const r = await pool.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return r.rows[0]!.ssl;
  } finally {
    await pool.end();
  }
}

describe('Postgres TLS (sslmode in DATABASE_URL, TD_PG_SSL_CA_FILE)', () => {
  const url = (host: string, mode?: string) => `postgres://postgres@${host}:${port}/postgres${mode ? `?sslmode=${mode}` : ''}`;

  it('the cluster refuses plaintext: without sslmode nothing connects', async (ctx) => {
    if (!bin) ctx.skip();
    await expect(tlsInUse(url('localhost'))).rejects.toThrow(/no pg_hba.conf entry|SSL off/i);
  });

  it('sslmode=require encrypts without verifying the server', async (ctx) => {
    if (!bin) ctx.skip();
    expect(await tlsInUse(url('localhost', 'require'))).toBe(true);
  });

  it('sslmode=verify-full with the CA connects; with another CA it fails verification', async (ctx) => {
    if (!bin) ctx.skip();
    expect(await tlsInUse(url('localhost', 'verify-full'), join(dir, 'ca.pem'))).toBe(true);
    await expect(tlsInUse(url('localhost', 'verify-full'), join(dir, 'other.pem'))).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
    // Node's own roots do not know the test CA either.
    await expect(tlsInUse(url('localhost', 'verify-full'))).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  });

  it('sslmode=verify-full checks the host name; verify-ca checks only the chain', async (ctx) => {
    if (!bin) ctx.skip();
    // The certificate names localhost, not 127.0.0.1.
    await expect(tlsInUse(url('127.0.0.1', 'verify-full'), join(dir, 'ca.pem'))).rejects.toThrow(/altnames|does not match|Hostname/i);
    expect(await tlsInUse(url('127.0.0.1', 'verify-ca'), join(dir, 'ca.pem'))).toBe(true);
    await expect(tlsInUse(url('127.0.0.1', 'verify-ca'), join(dir, 'other.pem'))).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  });

  it('`tiny-dancer migrate` reaches the cluster with sslmode=verify-full and TD_PG_SSL_CA_FILE; without the CA it fails', async (ctx) => {
    if (!bin) ctx.skip();
    const migrate = (env: Record<string, string>) =>
      run(process.execPath, ['--import', 'tsx', '-e', "import('./src/cli/index.ts').then((m) => m.main(['migrate'])).then((c) => process.exit(c))"], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: url('localhost', 'verify-full'), TD_DB_SCHEMA: 'td_tls', ...env },
        timeout: 60_000,
      });
    const ok = await migrate({ TD_PG_SSL_CA_FILE: join(dir, 'ca.pem') });
    expect(`${ok.stdout}${ok.stderr}`).toMatch(/td_tls/);
    await expect(migrate({})).rejects.toMatchObject({ code: 1 });
    await expect(migrate({ TD_PG_SSL_CA_FILE: join(dir, 'missing.pem') })).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/TD_PG_SSL_CA_FILE=.*missing\.pem.* cannot be read/) });
  }, 120_000);

  it('a missing CA file is a configuration error naming TD_PG_SSL_CA_FILE', () => {
    expect(() => loadPgTls({ TD_PG_SSL_CA_FILE: join(dir, 'nope.pem') })).toThrow(/^TD_PG_SSL_CA_FILE=.*nope\.pem.* cannot be read: no such file$/);
    expect(readFileSync(join(dir, 'ca.pem'), 'utf8')).toMatch(/BEGIN CERTIFICATE/);
  });
});
