// The OAUTHBEARER token provider kafkajs calls on every authentication: a token file is read
// again each time; a client-credentials token (from a real HTTP endpoint here) is reused until
// most of its lifetime has passed, then fetched again; a refusal names the endpoint, not the secret.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Secret } from '../../../src/config.js';
import { oauthTokenProvider } from '../../../src/stream/oauth.js';

const dir = mkdtempSync(join(tmpdir(), 'td-oauth-'));
let server: Server;
let base = '';
let calls = 0;
let lifetime = 3600;
const bodies: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      calls++;
      bodies.push(body);
      if (req.headers.authorization !== `Basic ${Buffer.from('cid:s3cret').toString('base64')}`) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_client","error_description":"bad credentials"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: `token-${calls}`, expires_in: lifetime }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/token`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('oauthTokenProvider', () => {
  it('reads the token file again on every call (a rotated token is picked up)', async () => {
    const f = join(dir, 'token');
    writeFileSync(f, 'first\n');
    const p = oauthTokenProvider({ mechanism: 'oauthbearer', tokenFile: f });
    expect(await p()).toEqual({ value: 'first' });
    writeFileSync(f, 'second');
    expect(await p()).toEqual({ value: 'second' });
    rmSync(f);
    await expect(p()).rejects.toThrow(/KAFKA_SASL_OAUTH_TOKEN_FILE=.* cannot be read: ENOENT/);
  });

  it('client credentials: one request for concurrent callers, reused while fresh, refreshed when most of the lifetime has passed', async () => {
    calls = 0;
    lifetime = 3600;
    const p = oauthTokenProvider({ mechanism: 'oauthbearer', tokenUrl: base, clientId: 'cid', clientSecret: new Secret('s3cret'), scope: 'kafka' });
    const [a, b] = await Promise.all([p(), p()]);
    expect(a).toEqual({ value: 'token-1' });
    expect(b).toEqual({ value: 'token-1' });
    expect(await p()).toEqual({ value: 'token-1' });
    expect(calls).toBe(1);
    expect(new URLSearchParams(bodies.at(-1)).get('scope')).toBe('kafka');
    expect(new URLSearchParams(bodies.at(-1)).get('grant_type')).toBe('client_credentials');

    lifetime = 1; // refreshed after 0.8 s
    const q = oauthTokenProvider({ mechanism: 'oauthbearer', tokenUrl: base, clientId: 'cid', clientSecret: new Secret('s3cret'), scope: undefined });
    expect(await q()).toEqual({ value: 'token-2' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await q()).toEqual({ value: 'token-3' });
  });

  it('a refused request names the endpoint and the reason, never the secret', async () => {
    const p = oauthTokenProvider({ mechanism: 'oauthbearer', tokenUrl: `${base}?tenant=x`, clientId: 'cid', clientSecret: new Secret('wrong-secret-xyz'), scope: undefined });
    const err = await p().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/^OAuth token request to http:\/\/127\.0\.0\.1:\d+\/token was refused: HTTP 401 \(invalid_client: bad credentials\)$/);
    expect(err?.message).not.toContain('wrong-secret-xyz');
  });
});
