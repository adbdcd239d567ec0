// A fleet, not a process: three `serve` processes (bin/tiny-dancer.js from dist/, distinct ports)
// in one consumer group share their desired state through the compacted control topic on the
// real broker. A reload through one is in force on all within 5 s; thresholds set through
// another reach all; a restart of all three and a fourth started later come back with the
// same state; a corrupt model record written straight to the topic by a plain Kafka producer is
// refused by every replica, and the fleet keeps its model.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../../src/control/client.js';
import { encodeModelRecord } from '../../../src/control/control-records.js';
import { prepareModel } from '../../../src/control/reload.js';
import { freePort } from '../stream/child.js';
import {
  collect,
  decision,
  deleteTopics,
  dropSchema,
  envFor,
  makeRequest,
  names,
  produce,
  query,
  record,
  testKafka,
  waitFor,
} from '../stream/helpers.js';
import { withAdmin } from '../../support/infra.js';
import { validModel } from './models.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'tiny-dancer.js');
const TOKEN = 'fleet-test-token';

interface Member {
  name: string;
  grpcAddr: string;
  proc: ChildProcess;
  httpUrl: string;
  client: ControlClient;
  exited: Promise<unknown>;
}

const n = names('fleet');
const logFile = join(tmpdir(), `td-fleet-${n.group}.log`);
const members: Member[] = [];
let dir: string;

async function startMember(name: string): Promise<Member> {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const out = createWriteStream(logFile, { flags: 'a' });
  const proc = spawn(process.execPath, [BIN, 'serve'], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...envFor(n, { TD_ADMIN_TOKEN: TOKEN, TD_LOG_LEVEL: 'info' }),
      TD_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      TD_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.pipe(out, { end: false });
  proc.stderr!.pipe(out, { end: false });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let dead = false;
  void exited.then(() => (dead = true));
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  await waitFor(
    async () => {
      if (dead) throw new Error(`${name} exited during start-up; see ${logFile}`);
      try {
        return (await fetch(`${httpUrl}/readyz`)).status === 200;
      } catch {
        return false;
      }
    },
    90_000,
    `${name} ready (log ${logFile})`,
  );
  const m: Member = { name, grpcAddr: `127.0.0.1:${grpcPort}`, proc, httpUrl, client: new ControlClient({ address: `127.0.0.1:${grpcPort}`, token: TOKEN, deadlineMs: 30_000 }), exited };
  members.push(m);
  return m;
}

async function stopMember(m: Member): Promise<void> {
  m.client.close();
  m.proc.kill('SIGTERM');
  await m.exited;
  members.splice(members.indexOf(m), 1);
}

async function routeVersion(m: Member, id: string): Promise<string> {
  const res = await m.client.route(makeRequest(id));
  return res.decisions[0]!.model_version;
}

async function configOf(m: Member) {
  const c = await m.client.getConfig();
  return { version: c.model_version, confidence: c.thresholds?.confidence, maxUncertainty: c.thresholds?.max_uncertainty, settings: c.settings };
}

let fleet: Member[] = [];
let oldVersion = '';
const NEW_VERSION = 'fleet-v2';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'td-fleet-'));
  // One after another: each joins the group and takes its share of the request partitions.
  for (const name of ['a', 'b', 'c']) fleet.push(await startMember(name));
  oldVersion = (await configOf(fleet[0]!)).version;
}, 300_000);

afterAll(async () => {
  for (const m of [...members]) {
    m.client.close();
    m.proc.kill('SIGKILL');
  }
  await deleteTopics(n);
  await dropSchema(n.schema);
  await rm(dir, { recursive: true, force: true });
});

describe('a fleet of three serve processes', () => {
  it('creates the control topic compacted, with one partition', async () => {
    await withAdmin(async (admin) => {
      const meta = await admin.fetchTopicMetadata({ topics: [n.control] });
      expect(meta.topics[0]!.partitions).toHaveLength(1);
      const cfg = await admin.describeConfigs({ resources: [{ type: 2, name: n.control, configNames: ['cleanup.policy'] }], includeSynonyms: false });
      expect(cfg.resources[0]!.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue).toBe('compact');
    });
  });

  it('a reload through one replica is in force on every replica within 5 s (Route and the Kafka stream)', async () => {
    const bytes = validModel(NEW_VERSION, { calibrated: true, seed: 11 });
    const t0 = Date.now();
    const r = await fleet[0]!.client.reloadModel({ bytes });
    expect(r.model?.version).toBe(NEW_VERSION);
    expect(r.convergence?.revision).toBeGreaterThanOrEqual(0);
    const seen = new Map<string, number>();
    await waitFor(
      async () => {
        for (const m of fleet) {
          if (!seen.has(m.name) && (await routeVersion(m, `probe-${m.name}-${Date.now()}`)) === NEW_VERSION) seen.set(m.name, Date.now() - t0);
        }
        return seen.size === fleet.length;
      },
      5000,
      'every replica deciding with the new model',
    );
    // Every partition of the request topic is owned by some replica: all stream decisions carry it.
    const out = await collect([n.lightweight, n.heavyweight]);
    try {
      const reqs = Array.from({ length: 30 }, (_, i) => makeRequest(`after-reload-${i}`));
      await produce(n.requests, reqs.map((q) => record(q, 'json')));
      await out.until((rs) => new Set(rs.map((x) => decision(x.message).request_id)).size === reqs.length, 60_000, 'decisions of 30 requests');
      expect(new Set(out.records.map((x) => decision(x.message).model_version))).toEqual(new Set([NEW_VERSION]));
    } finally {
      await out.stop();
    }
    console.log(`reload visible on every replica after (ms): ${JSON.stringify(Object.fromEntries(seen))}`);
  });

  it('thresholds set through another replica are applied by all', async () => {
    // Through the CLI, as an operator would: one call, --wait for the fleet.
    const cli = await new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [BIN, 'admin', 'thresholds', '--confidence', '0.61', '--max-uncertainty', '0.27', '--wait', '--json', '--addr', fleet[1]!.grpcAddr, '--timeout', '20'],
        { cwd: ROOT, env: { ...process.env, TD_ADMIN_TOKEN: TOKEN } },
        (err, stdout, stderr) => done({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(cli.code, cli.stderr).toBe(0);
    const t = JSON.parse(cli.stdout) as { confidence: number; max_uncertainty: number; convergence: { revision: number; converged: number } };
    expect(t).toMatchObject({ confidence: 0.61, max_uncertainty: 0.27 });
    expect(t.convergence.converged).toBeGreaterThanOrEqual(1);
    await waitFor(
      async () => (await Promise.all(fleet.map(configOf))).every((c) => c.confidence === 0.61 && c.maxUncertainty === 0.27),
      5000,
      'every replica with the new thresholds',
    );
  });

  it('all three restarted come back with the same model and thresholds; a fourth started later starts with them', async () => {
    await Promise.all(fleet.map((m) => stopMember(m)));
    fleet = [];
    for (const name of ['a2', 'b2', 'c2']) fleet.push(await startMember(name));
    for (const c of await Promise.all(fleet.map(configOf))) expect(c).toMatchObject({ version: NEW_VERSION, confidence: 0.61, maxUncertainty: 0.27 });
    for (const m of fleet) expect(await routeVersion(m, `restarted-${m.name}`)).toBe(NEW_VERSION);
    const fourth = await startMember('d');
    fleet.push(fourth);
    expect(await configOf(fourth)).toMatchObject({ version: NEW_VERSION, confidence: 0.61, maxUncertainty: 0.27 });
    expect(await routeVersion(fourth, 'fourth')).toBe(NEW_VERSION);
  });

  it('a corrupt model record written straight to the topic is refused by every replica; the fleet keeps its model', async () => {
    // A well-formed record for another model whose bytes were damaged after hashing.
    const prepared = await prepareModel({ bytes: validModel('fleet-corrupt', { seed: 5 }) });
    const value = encodeModelRecord(prepared, { writtenBy: 'a raw producer', writtenAt: Date.now() });
    const at = value.indexOf(Buffer.from(prepared.bytes)) + Math.floor(prepared.bytes.byteLength / 2);
    value[at] = value[at]! ^ 0x5a;
    const producer = testKafka().producer();
    await producer.connect();
    let offset: number;
    try {
      const [meta] = await producer.send({ topic: n.control, acks: -1, messages: [{ key: 'model', value }] });
      offset = Number(meta!.baseOffset);
    } finally {
      await producer.disconnect();
    }
    await waitFor(
      async () => (await Promise.all(fleet.map(configOf))).every((c) => Number(c.settings.controlRevision) >= offset),
      10_000,
      'every replica past the corrupt record',
    );
    for (const m of fleet) {
      const c = await configOf(m);
      expect(c.version).toBe(NEW_VERSION);
      expect(c.settings.controlApplyError).toMatch(/SHA-256 of the bytes is/);
      expect(await routeVersion(m, `after-corrupt-${m.name}`)).toBe(NEW_VERSION);
      const metrics = await (await fetch(`${m.httpUrl}/metrics`)).text();
      expect(metrics).toMatch(/td_control_apply_errors_total\{key="model"\} [1-9]/);
    }
    expect(oldVersion).not.toBe(NEW_VERSION);
  });

  it('a state-changing call without the token changes nothing on any replica', async () => {
    const anon = new ControlClient({ address: fleet[0]!.grpcAddr, deadlineMs: 10_000 });
    try {
      await expect(anon.setThresholds({ confidence: 0.99 })).rejects.toThrow(/UNAUTHENTICATED/);
      await expect(anon.setTenantPolicy({ tenant: 'acme', confidence: 0.5, maxUncertainty: 0.5 })).rejects.toThrow(/UNAUTHENTICATED/);
    } finally {
      anon.close();
    }
    for (const c of await Promise.all(fleet.map(configOf))) expect(c.confidence).toBe(0.61);
  });

  it('a tenant policy set through one replica is listed and applied by every replica; a delete removes it everywhere', async () => {
    const r = await fleet[2]!.client.setTenantPolicy({ tenant: 'acme', confidence: 0.9, maxUncertainty: 0.1 });
    expect(r).toMatchObject({ tenant: 'acme', changed: true, policy: { tenant: 'acme', confidence: 0.9, max_uncertainty: 0.1 } });
    await waitFor(async () => (await Promise.all(fleet.map((m) => m.client.listTenantPolicies()))).every((l) => l.policies.length === 1 && l.policies[0]!.tenant === 'acme'), 5000, 'the policy on every replica');
    // Every replica decides acme's requests under the policy, and everyone else's under the global one.
    const policiesOf = async (m: Member, tenant: string | undefined) => {
      const req = { ...makeRequest(`pol-${m.name}-${tenant ?? 'none'}-${Date.now()}`), ...(tenant ? { metadata: { tenant } } : {}) };
      const res = await m.client.route(req);
      return new Set(res.decisions.map((d) => (d as { policy?: string }).policy));
    };
    await waitFor(async () => (await Promise.all(fleet.map((m) => policiesOf(m, 'acme')))).every((p) => p.size === 1 && p.has('tenant:acme')), 5000, 'acme decided under its policy everywhere');
    for (const m of fleet) expect([...(await policiesOf(m, 'other'))]).toEqual(['global']);
    for (const m of fleet) expect([...(await policiesOf(m, undefined))]).toEqual(['global']);
    await fleet[0]!.client.deleteTenantPolicy('acme');
    await waitFor(async () => (await Promise.all(fleet.map((m) => m.client.listTenantPolicies()))).every((l) => l.policies.length === 0), 5000, 'the policy gone everywhere');
    await waitFor(async () => (await Promise.all(fleet.map((m) => policiesOf(m, 'acme')))).every((p) => p.size === 1 && p.has('global')), 5000, 'acme back on the global policy everywhere');
  });

  it('Postgres keeps the history: every control record once, applied or refused, by whom', async () => {
    type Row = { control_offset: string; kind: string; outcome: string; written_by: string | null; detail: Record<string, unknown>; error: string | null };
    const rows = () => query<Row>(`SELECT control_offset, kind, outcome, written_by, detail, error FROM "${n.schema}".control_history ORDER BY control_offset`);
    let history: Row[] = [];
    // The policy delete is the last record written; every replica mirrors it, the first insert wins.
    await waitFor(async () => (history = await rows()).some((r) => r.kind === 'policy-delete'), 10_000, 'the history up to the policy delete');
    const offsets = history.map((r) => Number(r.control_offset));
    expect(new Set(offsets).size).toBe(offsets.length);
    expect(history.filter((r) => r.kind === 'model' && r.outcome === 'applied').map((r) => r.detail.version)).toContain(NEW_VERSION);
    const refused = history.filter((r) => r.outcome === 'refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ kind: 'model' });
    expect(refused[0]!.error).toMatch(/SHA-256 of the bytes is/);
    const thresholds = history.filter((r) => r.kind === 'thresholds' && r.outcome === 'applied').at(-1)!.detail as { confidence: number; max_uncertainty: number };
    expect(thresholds.confidence).toBeCloseTo(0.61, 6);
    expect(thresholds.max_uncertainty).toBeCloseTo(0.27, 6);
    const policies = history.filter((r) => r.kind === 'policy').map((r) => r.detail as { tenant: string; confidence: number; max_uncertainty: number });
    expect(policies.map((p) => p.tenant)).toEqual(['acme']);
    expect(policies[0]!.confidence).toBeCloseTo(0.9, 6);
    for (const r of history.filter((h) => h.outcome === 'applied' && h.kind !== 'policy-delete')) expect(r.written_by).toBeTruthy();
    // No model bytes in the history.
    for (const r of history) expect(JSON.stringify(r.detail).length).toBeLessThan(300);
  });
});
