// Server reflection as generic clients use it. The descriptors it serves are the ones protoc
// compiles from proto/ (the checked-in set must equal a fresh compile), and a Python client that
// learns every message type from reflection alone (descriptor_pool, not protobufjs) builds them
// and calls GetConfig and GetStats.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DESCRIPTORS_PATH, splitDescriptorSet } from '../../../src/control/descriptors.js';
import { startControlServer } from '../../../src/control/server.js';
import { FakeTarget } from './fake-target.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const PYTHON = '/usr/bin/python3';
const CLIENT = join(ROOT, 'test/interop/reflection_client.py');
const tmp = mkdtempSync(join(tmpdir(), 'td-reflection-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the compiled descriptor set', () => {
  it('equals what protoc compiles from proto/ now (run `npm run proto:descriptors` after a .proto change)', () => {
    const fresh = join(tmp, 'fresh.binpb');
    execFileSync(process.execPath, [join(ROOT, 'scripts/gen-descriptors.mjs'), fresh], { stdio: 'pipe' });
    const checkedIn = readFileSync(DESCRIPTORS_PATH);
    expect(checkedIn.equals(readFileSync(fresh)), 'proto/descriptors.binpb is stale: run `npm run proto:descriptors`').toBe(true);
    // routing, fleet, control and the standard health service.
    expect(splitDescriptorSet(checkedIn).length).toBe(4);
  });
});

describe('a client built from reflection alone (Python descriptor_pool)', () => {
  it('lists the services, builds every message and calls GetConfig and GetStats', async () => {
    const require = createRequire(import.meta.url);
    const reflectionProto = resolve(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto');
    execFileSync('protoc', [`--proto_path=${reflectionProto}`, `--python_out=${tmp}`, 'grpc/reflection/v1/reflection.proto']);

    const target = new FakeTarget();
    target.requests = 10;
    target.decisions = 20;
    target.lightweight = 5;
    const server = await startControlServer({ address: '127.0.0.1:0', target });
    try {
      const out = await new Promise<string>((res, rej) =>
        execFile(PYTHON, [CLIENT, '--reflection-pb2', join(tmp, 'grpc/reflection/v1/reflection_pb2.py'), '--addr', server.address], { timeout: 60_000 }, (err, stdout, stderr) =>
          err ? rej(new Error(`${err.message}\n${stderr}`)) : res(stdout),
        ),
      );
      const seen = JSON.parse(out) as {
        services: string[];
        files: Record<string, string[]>;
        reasons_entry: { name: string; map_entry: boolean };
        config: Record<string, any>;
        stats: Record<string, any>;
      };
      expect(seen.services).toEqual(expect.arrayContaining(['tiny_dancer.v1.ControlPlane', 'grpc.health.v1.Health']));
      expect(seen.files['tiny_dancer/v1/control.proto']).toEqual(['tiny_dancer/v1/routing.proto', 'tiny_dancer/v1/fleet.proto']);
      expect(seen.files['tiny_dancer/v1/routing.proto']).toEqual([]);
      expect(seen.files['health/v1/health.proto']).toEqual([]);
      expect(seen.reasons_entry).toEqual({ name: 'ReasonsEntry', map_entry: true });
      expect(seen.config.mode).toBe('fake');
      expect(seen.config.thresholds).toEqual({ confidence: 0.85, max_uncertainty: 0.15 });
      expect(seen.config.settings.groupId).toBe('tiny-dancer');
      expect(seen.config.settings.adminToken).not.toContain('must-not-leak');
      // json_format renders 64-bit integers as strings.
      expect(seen.stats.totals).toMatchObject({ requests: '10', decisions: '20', lightweight: '5', heavyweight: '15', reasons: { model: '20' } });
      expect(seen.stats.model.version).toBe('v1');
      expect(seen.stats.breaker.state).toBe('BREAKER_STATE_OPEN');
    } finally {
      await server.close({ timeoutMs: 200 });
    }
  });
});
