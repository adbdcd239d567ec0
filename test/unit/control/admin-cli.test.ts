// `tiny-dancer admin` through the real dispatcher against a real control server on loopback
// (target: the recording double). Checks output, --json, exit codes and one-line errors.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/index.js';
import { startControlServer, type ControlServer } from '../../../src/control/server.js';
import { FakeTarget } from './fake-target.js';

const TOKEN = 'cli-admin-token-abcdef';
let server: ControlServer;
let target: FakeTarget;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'td-admin-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeEach(async () => {
  target = new FakeTarget();
  server = await startControlServer({ target, address: '127.0.0.1:0', adminToken: TOKEN, watch: { minIntervalMs: 50 } });
  vi.stubEnv('TD_ADMIN_TOKEN', '');
  vi.stubEnv('TD_GRPC_ADDR', server.address);
});

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await server.close({ timeoutMs: 200 });
});

async function admin(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c) => (out.push(String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c) => (err.push(String(c)), true));
  try {
    const code = await main(['admin', ...args]);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('tiny-dancer admin', () => {
  it('stats: readable by default, JSON with --json (no token needed)', async () => {
    target.requests = 4;
    target.decisions = 8;
    target.lightweight = 2;
    const human = await admin('stats');
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/^service\s+tiny-dancer .* \(fake\), SERVING, up /m);
    expect(human.out).toMatch(/^model\s+v1 \(uncalibrated\)/m);
    expect(human.out).toMatch(/^decisions\s+8 .*lightweight 2 \(25\.0%\), heavyweight 6/m);
    expect(human.out).toMatch(/^kafka\s+connected, 3 partition\(s\).*DLQ 4, lag 12/m);
    expect(human.out).toMatch(/^decision log\s+healthy, backlog 6/m);
    expect(human.out).toMatch(/^engine\s+p50 10µs/m);
    const json = await admin('stats', '--json', '--addr', server.address);
    expect(json.code).toBe(0);
    const s = JSON.parse(json.out);
    expect(s.totals.decisions).toBe(8);
    expect(s.model.version).toBe('v1');
  });

  it('stats --watch --count N prints N updates then exits 0', async () => {
    const r = await admin('stats', '--watch', '--interval', '0.25', '--count', '2', '--json');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(JSON.parse(l).mode).toBe('fake');
    await vi.waitFor(() => expect(server.watchers).toBe(0));
  });

  it('reload: refused without or with a wrong token (exit 1, status named), done with it', async () => {
    const none = await admin('reload', '/models/new.safetensors');
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/^tiny-dancer admin: reload: UNAUTHENTICATED: .*\n$/);
    vi.stubEnv('TD_ADMIN_TOKEN', 'not-the-token');
    const wrong = await admin('reload', '/models/new.safetensors');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/UNAUTHENTICATED/);
    expect(wrong.err).not.toContain('not-the-token');
    expect(target.changes).toEqual([]);

    vi.stubEnv('TD_ADMIN_TOKEN', TOKEN);
    const ok = await admin('reload', '/models/new.safetensors');
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/reloaded: now serving from-path:\/models\/new.safetensors \(was v1\)/);
    expect(ok.out).toMatch(/note: .*no conformal calibration/);

    const file = join(dir, 'm.safetensors');
    writeFileSync(file, Buffer.alloc(321));
    const bytes = await admin('reload', file, '--bytes', '--json');
    expect(bytes.code).toBe(0);
    expect(JSON.parse(bytes.out).model.version).toBe('from-bytes:321');
  });

  it('a failed reload prints one line with the gRPC status', async () => {
    vi.stubEnv('TD_ADMIN_TOKEN', TOKEN);
    const { ControlError } = await import('../../../src/control/target.js');
    target.reloadError = new ControlError('not_found', 'model file /nope does not exist on the server');
    const r = await admin('reload', '/nope');
    expect(r.code).toBe(1);
    expect(r.err).toBe('tiny-dancer admin: reload: NOT_FOUND: model file /nope does not exist on the server\n');
  });

  it('breaker, breaker --reset, thresholds, config, health', async () => {
    vi.stubEnv('TD_ADMIN_TOKEN', TOKEN);
    const b = await admin('breaker');
    expect(b.code).toBe(0);
    expect(b.out).toMatch(/^breaker open, 3 trip\(s\), 17 fallback/);
    const reset = await admin('breaker', '--reset', '--json');
    expect(JSON.parse(reset.out).state).toBe('BREAKER_STATE_CLOSED');
    const t = await admin('thresholds', '--confidence', '0.7', '--max-uncertainty', '0.25');
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/confidence ≥ 0.7, uncertainty ≤ 0.25/);
    const c = await admin('config');
    expect(c.code).toBe(0);
    expect(c.out).toMatch(/^adminToken = \[redacted\]$/m);
    expect(c.out).not.toContain('must-not-leak');
    const h = await admin('health');
    expect(h).toMatchObject({ code: 0, out: 'SERVING\n' });
    target.setHealth('NOT_SERVING');
    expect((await admin('health')).code).toBe(1);
    expect(target.changes).toEqual(['reset', 'thresholds {"confidence":0.7,"maxUncertainty":0.25}']);
  });

  it.each([
    [[]],
    [['frob']],
    [['reload']],
    [['reload', 'a', 'b']],
    [['stats', 'extra']],
    [['stats', '--reset']],
    [['stats', '--interval', '1']],
    [['stats', '--watch', '--interval', '0.01']],
    [['thresholds']],
    [['thresholds', '--confidence', '1.5']],
    [['thresholds', '--max-uncertainty', 'abc']],
    [['config', '--addr', 'no-port']],
    [['config', '--tls-cert', 'c.pem']],
    [['reload', '/definitely/not/here.safetensors', '--bytes']],
    [['config', '--bogus']],
  ])('bad arguments %j exit 2 with one line', async (args) => {
    const r = await admin(...args);
    expect(r.code).toBe(2);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(target.changes).toEqual([]);
  });

  it('an unreachable server is exit 1 with UNAVAILABLE', async () => {
    const r = await admin('stats', '--addr', '127.0.0.1:1', '--timeout', '2');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^tiny-dancer admin: stats: (UNAVAILABLE|DEADLINE_EXCEEDED): /);
  });
});

describe('admin policy', () => {
  it('checks its arguments before connecting (exit 2, one line)', async () => {
    vi.stubEnv('TD_ADMIN_TOKEN', TOKEN);
    for (const args of [
      ['policy'],
      ['policy', 'set', 'acme'],
      ['policy', 'set', 'acme', '--confidence', '0.9'],
      ['policy', 'set', 'acme', '--confidence', '1.5', '--max-uncertainty', '0.1'],
      ['policy', 'delete'],
      ['policy', 'list', 'acme'],
      ['policy', 'delete', 'acme', '--confidence', '0.5'],
    ]) {
      const r = await admin(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    expect(target.changes).toEqual([]);
  });

  it('says plainly when the deployment has no control topic (FAILED_PRECONDITION, exit 1)', async () => {
    vi.stubEnv('TD_ADMIN_TOKEN', TOKEN);
    const r = await admin('policy', 'set', 'acme', '--confidence', '0.9', '--max-uncertainty', '0.1');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/FAILED_PRECONDITION: tenant policies live in the fleet's control topic/);
  });
});
