// `serve` against a secured broker of this file's own (./broker.ts): end to end over SASL_SSL with
// SCRAM-SHA-512 and with PLAIN, read back by kcat (librdkafka, not written here) through the
// same listener; mutual TLS; OAUTHBEARER with tokens from a token endpoint this test serves;
// and the failures a person must act on (wrong password, wrong CA, a mechanism the broker does
// not offer, a missing file), each one line and the right exit status. The passwords must not
// appear in any log line or GetConfig answer.
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { KafkaConfig } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKafkaSecurity } from '../../../src/config-security.js';
import { ControlClient } from '../../../src/control/client.js';
import { createLogger } from '../../../src/observe/logger.js';
import { createKafka, partitioner } from '../../../src/stream/kafka.js';
import { freePort, serveArgv, startServe, type ServeChild } from '../stream/child.js';
import { dropSchema, envFor, makeRequest, names, waitFor, type Names } from '../stream/helpers.js';
import { secureBroker } from './broker.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const broker = secureBroker();
const dir = mkdtempSync(join(tmpdir(), 'td-secure-'));
const schemas: string[] = [];
const children: ServeChild[] = [];

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  for (const s of schemas) await dropSchema(s);
  rmSync(dir, { recursive: true, force: true });
});

const quiet = createLogger({ level: 'error', write: () => {} });

function clientFor(env: Record<string, string>, overrides: Partial<KafkaConfig> = {}) {
  return createKafka({ brokers: [env.KAFKA_BROKERS!], clientId: 'td-secure-test', kafkaSecurity: loadKafkaSecurity(env) }, quiet, overrides);
}

/** serve's environment for `n` on the secured broker, with the given client settings. */
function serveEnv(n: Names, security: Record<string, string>, extra: Record<string, string> = {}): Record<string, string> {
  // envFor points at the shared broker; the security settings name this file's broker instead.
  return envFor(n, { ...security, TD_LOG_LEVEL: 'debug', TD_REQUEST_PARTITIONS: '2', ...extra });
}

async function produceRequests(env: Record<string, string>, topic: string, count: number, candidates: number): Promise<void> {
  const producer = clientFor(env).producer({ createPartitioner: partitioner });
  await producer.connect();
  try {
    const messages = Array.from({ length: count }, (_, i) => {
      const r = makeRequest(`sec-${i}`, candidates, 16);
      return { key: r.request_id, value: JSON.stringify(r), headers: { 'content-type': 'application/json' } };
    });
    await producer.send({ topic, messages, acks: -1 });
  } finally {
    await producer.disconnect();
  }
}

/** kcat (Debian's librdkafka) over SASL_SSL with PLAIN: the number of records in `topic`. */
async function kcatCount(topic: string): Promise<number> {
  const p = broker.env.plain;
  const { stdout } = await run(
    'kcat',
    [
      '-C', '-b', broker.saslSsl, '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%k\n',
      '-X', 'security.protocol=SASL_SSL', '-X', 'sasl.mechanisms=PLAIN',
      '-X', `sasl.username=${p.KAFKA_SASL_USERNAME}`, '-X', `sasl.password=${p.KAFKA_SASL_PASSWORD}`,
      '-X', `ssl.ca.location=${broker.caFile}`,
    ],
    { maxBuffer: 16 * 1024 * 1024, timeout: 60_000 },
  );
  return stdout.split('\n').filter((l) => l.startsWith('sec-')).length;
}

/** Runs serve expecting it to fail: exit status and stderr (logs are JSON lines there too). */
async function serveFails(env: Record<string, string>, timeoutMs = 90_000): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = Date.now();
  const ports = { TD_HTTP_ADDR: `127.0.0.1:${await freePort()}`, TD_GRPC_ADDR: `127.0.0.1:${await freePort()}` };
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...serveArgv()], {
      cwd: ROOT,
      env: { ...process.env, ...env, ...ports, TD_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    proc.stdout.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`serve did not exit within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: Date.now() - started });
    });
  });
}

/** The lines of serve's stderr that are not JSON log lines: what a person reads. */
function plainLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));
}

async function serveEndToEnd(label: string, security: Record<string, string>, password: string, extra: Record<string, string> = {}): Promise<void> {
  const n = names(`sec-${label}`);
  schemas.push(n.schema);
  const logFile = join(dir, `serve-${label}.log`);
  const serve = await startServe(serveEnv(n, security, extra), logFile, 120_000);
  children.push(serve);
  const requests = 20;
  const candidates = 3;
  await produceRequests(security, n.requests, requests, candidates);
  let total = 0;
  await waitFor(
    async () => {
      total = (await kcatCount(n.lightweight)) + (await kcatCount(n.heavyweight));
      return total >= requests * candidates;
    },
    90_000,
    `${requests * candidates} decisions read back by kcat over SASL_SSL`,
  );
  expect(total).toBe(requests * candidates);

  // GetConfig describes the security settings without the password.
  const control = new ControlClient({ address: serve.grpcAddr, deadlineMs: 15_000 });
  try {
    const cfg = await control.getConfig();
    const text = JSON.stringify(cfg);
    expect(text).toContain(security.KAFKA_SASL_MECHANISM);
    expect(text).toContain(security.KAFKA_SASL_USERNAME);
    expect(text).not.toContain(password);
  } finally {
    control.close();
  }
  serve.kill('SIGTERM');
  expect((await serve.exited).code).toBe(0);
  const log = readFileSync(logFile, 'utf8');
  // Debug logging (kafkajs's connection chatter included) and not one line with the password.
  expect(log.split('\n').length).toBeGreaterThan(20);
  expect(log).not.toContain(password);
}

describe('serve on a secured Kafka cluster', () => {
  let kcat = true;
  beforeAll(async () => {
    kcat = await run('kcat', ['-V']).then(
      () => true,
      () => false,
    );
  });

  it('serves end to end over SASL_SSL with SCRAM-SHA-512 (producer thread, outcomes consumer); kcat reads the decisions over the same listener; no password in logs or GetConfig', async (ctx) => {
    if (!kcat) ctx.skip();
    await serveEndToEnd('scram', broker.env.scram, broker.env.scram.KAFKA_SASL_PASSWORD!, { TD_PRODUCER_THREAD: 'true', TD_FEEDBACK: 'true' });
  }, 240_000);

  it('serves end to end over SASL_SSL with PLAIN, exactly once (transactional producer), the password given as a file (a mounted secret)', async (ctx) => {
    if (!kcat) ctx.skip();
    const { KAFKA_SASL_PASSWORD: password, ...rest } = broker.env.plain;
    const file = join(dir, 'plain-password');
    writeFileSync(file, `${password}\n`, { mode: 0o600 });
    await serveEndToEnd('plain', { ...rest, KAFKA_SASL_PASSWORD_FILE: file }, password!, { TD_EXACTLY_ONCE: 'true' });
  }, 240_000);

  it('mutual TLS: a client with the CA-signed certificate produces and consumes; one without is refused', async () => {
    const topic = `sec-mtls-${Date.now()}`;
    const kafka = clientFor(broker.env.mtls);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    await produceRequests(broker.env.mtls, topic, 5, 2);
    const consumer = kafka.consumer({ groupId: `${topic}-g` });
    const seen: string[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void seen.push(String(message.key)) });
    await waitFor(() => seen.length >= 5, 60_000, 'five records over mutual TLS');
    await consumer.disconnect();
    expect(seen.sort()).toEqual(['sec-0', 'sec-1', 'sec-2', 'sec-3', 'sec-4']);

    // The same listener without a client certificate: the broker ends the handshake.
    const { KAFKA_SSL_CERT_FILE: _c, KAFKA_SSL_KEY_FILE: _k, ...noCert } = broker.env.mtls;
    const bare = clientFor(noCert, { retry: { retries: 0 } }).admin();
    await expect(bare.connect()).rejects.toThrow();
    await bare.disconnect().catch(() => {});
  }, 120_000);

  it('a wrong password: exit 1, one line naming SASL authentication, no stack, no retry storm, no password', async () => {
    const wrong = 'not-the-password-7f3a';
    const n = names('sec-wrongpw');
    const before = (readFileSync(broker.logFile, 'utf8').match(/Failed authentication/g) ?? []).length;
    const r = await serveFails(serveEnv(n, { ...broker.env.scram, KAFKA_SASL_PASSWORD: wrong }));
    expect(r.code).toBe(1);
    const lines = plainLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/SASL authentication failed/);
    expect(lines[0]).toContain(broker.saslSsl);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toContain(wrong);
    // The broker saw one failed login (kafkajs does not retry one), not a storm of them.
    await new Promise((res) => setTimeout(res, 1000));
    const after = (readFileSync(broker.logFile, 'utf8').match(/Failed authentication/g) ?? []).length;
    expect(after - before).toBeGreaterThanOrEqual(1);
    expect(after - before).toBeLessThanOrEqual(2);
  }, 120_000);

  it('a broker certificate not signed by the CA: exit 1 naming TLS verification and the broker', async () => {
    const other = join(dir, 'other-ca');
    await run('mkdir', ['-p', other]);
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(other, 'ca.key'), '-out', join(other, 'ca.pem'), '-days', '1', '-subj', '/CN=some other CA']);
    const r = await serveFails(serveEnv(names('sec-ca'), { ...broker.env.scram, KAFKA_SSL_CA_FILE: join(other, 'ca.pem') }));
    expect(r.code).toBe(1);
    const lines = plainLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/TLS verification of Kafka broker localhost:\d+ failed/);
    expect(lines[0]).toContain(broker.saslSsl);
    expect(r.ms).toBeLessThan(60_000);
  }, 120_000);

  it('a mechanism the broker does not offer: exit 1 naming the mechanisms it offers', async () => {
    const r = await serveFails(serveEnv(names('sec-mech'), { ...broker.env.scram, KAFKA_SASL_MECHANISM: 'scram-sha-256' }));
    expect(r.code).toBe(1);
    const lines = plainLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/does not offer SASL mechanism SCRAM-SHA-256.*it offers: PLAIN, SCRAM-SHA-512, OAUTHBEARER/);
  }, 120_000);

  it('a missing file: exit 2, one line naming the variable', async () => {
    const r = await serveFails(serveEnv(names('sec-file'), { ...broker.env.mtls, KAFKA_SSL_KEY_FILE: join(dir, 'no-such-key.pem') }));
    expect(r.code).toBe(2);
    const lines = plainLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/KAFKA_SSL_KEY_FILE=.*no-such-key\.pem.* cannot be read: no such file/);
  }, 60_000);
});

describe('OAUTHBEARER against a token endpoint the test serves', () => {
  let server: Server;
  let url = '';
  const issued: string[] = [];
  const secret = 'client-secret-9c1e';

  /** Kafka's unsecured-JWS validator accepts alg "none" with a subject and an unexpired exp. */
  function unsecuredJws(sub: string, lifetimeS: number): string {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    return `${b64({ alg: 'none' })}.${b64({ sub, iat: now, exp: now + lifetimeS })}.`;
  }

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const expected = `Basic ${Buffer.from(`td-client:${secret}`).toString('base64')}`;
        const form = new URLSearchParams(body);
        if (req.method !== 'POST' || req.headers.authorization !== expected || form.get('grant_type') !== 'client_credentials') {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_client' }));
          return;
        }
        const token = unsecuredJws('td-client', 3600);
        issued.push(token);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 3600 }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/oauth2/token`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('the client-credentials grant yields a token the broker accepts; a wrong secret fails with the endpoint named and no secret', async () => {
    const env = { ...broker.env.oauthbearer, KAFKA_SASL_OAUTH_TOKEN_URL: url, KAFKA_SASL_OAUTH_CLIENT_ID: 'td-client', KAFKA_SASL_OAUTH_CLIENT_SECRET: secret, KAFKA_SASL_OAUTH_SCOPE: 'kafka' };
    const admin = clientFor(env).admin();
    await admin.connect();
    expect(Array.isArray(await admin.listTopics())).toBe(true);
    await admin.disconnect();
    expect(issued.length).toBeGreaterThanOrEqual(1);

    const bad = clientFor({ ...env, KAFKA_SASL_OAUTH_CLIENT_SECRET: 'wrong-secret-0000' }, { retry: { retries: 0 } }).admin();
    const err = await bad.connect().then(
      () => undefined,
      (e: Error) => e,
    );
    await bad.disconnect().catch(() => {});
    expect(err).toBeDefined();
    const text = `${err!.message} ${String((err as { cause?: Error }).cause?.message ?? '')}`;
    expect(text).toMatch(/OAuth token request to http:\/\/127\.0\.0\.1:\d+\/oauth2\/token was refused: HTTP 401/);
    expect(text).not.toContain('wrong-secret-0000');
  }, 120_000);

  it('serve runs with a token file; with an expired token in the file serve exits 1 naming SASL authentication', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, unsecuredJws('td-file', 3600));
    const n = names('sec-oauth');
    schemas.push(n.schema);
    const serve = await startServe(serveEnv(n, { ...broker.env.oauthbearer, KAFKA_SASL_OAUTH_TOKEN_FILE: tokenFile }), join(dir, 'serve-oauth.log'), 120_000);
    children.push(serve);
    serve.kill('SIGTERM');
    expect((await serve.exited).code).toBe(0);
    // An expired token in the file now: the broker's validator refuses it, and serve says so.
    writeFileSync(tokenFile, unsecuredJws('td-file', -60));
    const r = await serveFails(serveEnv(names('sec-oauth-exp'), { ...broker.env.oauthbearer, KAFKA_SASL_OAUTH_TOKEN_FILE: tokenFile }));
    expect(r.code).toBe(1);
    const lines = plainLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/SASL authentication failed at broker localhost:\d+: the OAUTHBEARER token was refused \(invalid_token\)/);
  }, 180_000);
});
