// TLS and mutual TLS on the control plane, with certificates made by openssl for the test
// (skipped, saying why, when openssl is not installed).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import { ControlClient, RpcError } from '../../../src/control/client.js';
import { startControlServer } from '../../../src/control/server.js';
import { FakeTarget } from './fake-target.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const available = hasOpenssl();
if (!available) process.stderr.write('control TLS tests skipped: the openssl command is not installed\n');

describe.skipIf(!available)('TLS', () => {
  let dir: string;
  const f = (name: string) => join(dir, name);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'td-tls-'));
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=td-test-ca');
    writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
    writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=admin');
    ssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2', '-extfile', 'client.ext');
    // A second, unrelated CA and client: must be refused under mutual TLS.
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.pem', '-days', '2', '-subj', '/CN=rogue');
  }, 60_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function failure(p: Promise<unknown>): Promise<RpcError> {
    try {
      await p;
    } catch (err) {
      return err as RpcError;
    }
    throw new Error('expected the call to fail');
  }

  it('server TLS: a client trusting the CA gets through, a plaintext client does not', async () => {
    const server = await startControlServer({
      target: new FakeTarget(), address: '127.0.0.1:0', adminToken: 'tls-token-123456',
      tls: { certFile: f('server.pem'), keyFile: f('server.key') },
    });
    const good = new ControlClient({ address: server.address, token: 'tls-token-123456', tls: { caFile: f('ca.pem') }, deadlineMs: 3000 });
    const plain = new ControlClient({ address: server.address, deadlineMs: 1500 });
    const untrusting = new ControlClient({ address: server.address, tls: { caFile: f('rogue.pem') }, deadlineMs: 1500 });
    try {
      expect(await good.health()).toBe('SERVING');
      expect((await good.resetCircuitBreaker()).state).toBe('BREAKER_STATE_CLOSED');
      expect((await failure(plain.getStats())).status).toBe('UNAVAILABLE');
      expect((await failure(untrusting.getStats())).status).toBe('UNAVAILABLE');
    } finally {
      good.close();
      plain.close();
      untrusting.close();
      await server.close({ timeoutMs: 200 });
    }
  });

  it('mutual TLS: only a client certificate signed by the configured CA gets through', async () => {
    const server = await startControlServer({
      target: new FakeTarget(), address: '127.0.0.1:0',
      tls: { certFile: f('server.pem'), keyFile: f('server.key'), caFile: f('ca.pem') },
    });
    const withCert = new ControlClient({ address: server.address, tls: { caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key') }, deadlineMs: 3000 });
    const noCert = new ControlClient({ address: server.address, tls: { caFile: f('ca.pem') }, deadlineMs: 1500 });
    const rogue = new ControlClient({ address: server.address, tls: { caFile: f('ca.pem'), certFile: f('rogue.pem'), keyFile: f('rogue.key') }, deadlineMs: 1500 });
    try {
      expect((await withCert.getStats()).model?.version).toBe('v1');
      expect((await failure(noCert.getStats())).status).toBe('UNAVAILABLE');
      expect((await failure(rogue.getStats())).status).toBe('UNAVAILABLE');
    } finally {
      withCert.close();
      noCert.close();
      rogue.close();
      await server.close({ timeoutMs: 200 });
    }
  });

  it('unreadable certificate files fail start-up with a ConfigError naming the file', async () => {
    await expect(
      startControlServer({ target: new FakeTarget(), address: '127.0.0.1:0', tls: { certFile: f('missing.pem'), keyFile: f('server.key') } }),
    ).rejects.toThrow(ConfigError);
    await expect(
      startControlServer({ target: new FakeTarget(), address: '127.0.0.1:0', tls: { certFile: f('missing.pem'), keyFile: f('server.key') } }),
    ).rejects.toThrow(/missing\.pem/);
  });
});
