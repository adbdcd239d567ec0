// `serve` reads TD_GRPC_TLS_CERT/KEY: its control plane then speaks TLS only.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../../src/control/client.js';
import { startServe, type ServeChild } from './child.js';
import { deleteTopics, dropSchema, envFor, names } from './helpers.js';

let openssl = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'ignore' });
} catch {
  openssl = false;
  process.stderr.write('serve TLS test skipped: the openssl command is not installed\n');
}

const dir = mkdtempSync(join(tmpdir(), 'td-serve-tls-'));
const n = names('tls');
let serve: ServeChild | undefined;

afterAll(async () => {
  if (serve) {
    serve.kill('SIGTERM');
    await serve.exited;
  }
  await dropSchema(n.schema);
  await deleteTopics(n);
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!openssl)('serve with TLS on the control plane', () => {
  it('answers a client that trusts its certificate and refuses a plaintext one', async () => {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=td-ca');
    writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');

    serve = await startServe(
      envFor(n, { TD_GRPC_TLS_CERT: join(dir, 'server.pem'), TD_GRPC_TLS_KEY: join(dir, 'server.key') }),
      join(dir, 'serve.log'),
    );
    const secure = new ControlClient({ address: serve.grpcAddr, tls: { caFile: join(dir, 'ca.pem') }, deadlineMs: 10_000 });
    const plain = new ControlClient({ address: serve.grpcAddr, deadlineMs: 3_000 });
    try {
      const stats = await secure.getStats();
      expect(stats.mode).toBe('serve');
      await expect(plain.getStats()).rejects.toThrow();
    } finally {
      secure.close();
      plain.close();
    }
  });
});
