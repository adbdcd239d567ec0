// The fleet view on the real broker: three `serve` processes (bin/tiny-dancer.js from dist/, so
// run `npm run build` first) in one group, with a status topic of their own. Each answers
// GetFleet for all three; a SIGKILLed one (no tombstone) drops out after three missed heartbeats;
// a SIGTERMed one leaves at once (its tombstone). The status topic is read back with a
// client not written here (librdkafka's Python client): keyed by instance, protobuf values,
// the tombstone a null value.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlClient, type FleetMessage } from '../../../src/control/client.js';
import { decodeReplicaStatus } from '../../../src/control/fleet-status.js';
import { freePort } from '../stream/child.js';
import { deleteTopics, dropSchema, envFor, kafkaBrokers, names, waitFor } from '../stream/helpers.js';
import { removeTopics } from '../../support/infra.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin/tiny-dancer.js');
const HEARTBEAT_MS = 500;

const n = names('fleet');
const statusTopic = `${n.group}.status`;
const logFile = join(tmpdir(), `td-fleet-${n.group}.log`);

interface Replica {
  instance: string;
  proc: ChildProcess;
  grpcAddr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}
const replicas: Replica[] = [];
const clients: ControlClient[] = [];

afterAll(async () => {
  for (const c of clients) c.close();
  for (const r of replicas) r.proc.kill('SIGKILL');
  await dropSchema(n.schema);
  await deleteTopics(n);
  await removeTopics([statusTopic]);
});

async function startReplica(instance: string): Promise<Replica> {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const out = createWriteStream(logFile, { flags: 'a' });
  const env = {
    ...process.env,
    ...envFor(n, {
      TD_TOPIC_STATUS: statusTopic,
      TD_HEARTBEAT_MS: String(HEARTBEAT_MS),
      TD_INSTANCE_ID: instance,
      TD_TRANSACTIONAL_ID: `${n.group}-${instance}`,
      TD_LOG_LEVEL: 'info',
    }),
    TD_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    TD_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
  };
  const proc = spawn(process.execPath, [BIN, 'serve'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.pipe(out, { end: false });
  proc.stderr!.pipe(out, { end: false });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const r: Replica = { instance, proc, grpcAddr: `127.0.0.1:${grpcPort}`, exited };
  replicas.push(r);
  let dead = false;
  void exited.then(() => (dead = true));
  await waitFor(async () => {
    if (dead) throw new Error(`${instance} exited during start-up; see ${logFile}`);
    try {
      return (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200;
    } catch {
      return false;
    }
  }, 90_000, `${instance} ready (log: ${logFile})`);
  return r;
}

function client(r: Replica): ControlClient {
  const c = new ControlClient({ address: r.grpcAddr, deadlineMs: 10_000 });
  clients.push(c);
  return c;
}

const live = (f: FleetMessage) => f.replicas.filter((r) => !r.stale).map((r) => r.status!.instance).sort();

/** `tiny-dancer admin fleet --json` against `r`, as an operator would run it. */
function adminFleet(r: Replica, ...args: string[]): { status: number | null; json: FleetMessage | undefined; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [BIN, 'admin', 'fleet', '--addr', r.grpcAddr, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  let json: FleetMessage | undefined;
  if (args.includes('--json') && res.status === 0) json = JSON.parse(res.stdout) as FleetMessage;
  return { status: res.status, json, stdout: res.stdout, stderr: res.stderr };
}

// librdkafka's Python client reads the status topic from its beginning to its end (assigned,
// no group): the last value per key, hex, or null for a tombstone.
const READ_STATUS_PY = `
import json, sys
from confluent_kafka import Consumer, KafkaError, TopicPartition
brokers, topic = sys.argv[1], sys.argv[2]
c = Consumer({'bootstrap.servers': brokers, 'group.id': 'unused', 'enable.auto.commit': False, 'enable.partition.eof': True})
lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
c.assign([TopicPartition(topic, 0, lo)])
last = {}
while hi > lo:
    m = c.poll(10)
    if m is None:
        sys.exit('no record within 10 s')
    if m.error():
        if m.error().code() == KafkaError._PARTITION_EOF and m.offset() >= hi:
            break
        continue
    last[m.key().decode()] = None if m.value() is None else m.value().hex()
    if m.offset() >= hi - 1:
        break
c.close()
print(json.dumps(last))
`;

/** The status topic as another client reads it: key → last value (null for a tombstone). */
function statusOnTopic(): Map<string, Buffer | null> {
  const res = spawnSync('/usr/bin/python3', ['-c', READ_STATUS_PY, kafkaBrokers().join(','), statusTopic], { encoding: 'utf8', timeout: 60_000 });
  if (res.status !== 0) throw new Error(`the Python reader failed: ${res.stderr}`);
  const last = JSON.parse(res.stdout) as Record<string, string | null>;
  return new Map(Object.entries(last).map(([k, v]) => [k, v === null ? null : Buffer.from(v, 'hex')]));
}

describe('the fleet view across three serve processes', () => {
  it('any replica lists all three; a SIGKILLed one drops out after 3 missed beats, a SIGTERMed one at once', async () => {
    const [a, b, c] = [await startReplica('fleet-a'), await startReplica('fleet-b'), await startReplica('fleet-c')];

    // Every replica answers for the whole fleet.
    for (const r of [a, b, c]) {
      const cl = client(r);
      await waitFor(async () => live(await cl.getFleet()).length === 3, 30_000, `${r.instance} sees three replicas`);
      const f = await cl.getFleet();
      expect(live(f)).toEqual(['fleet-a', 'fleet-b', 'fleet-c']);
      expect(f.answered_by).toBe(r.instance);
      expect(f.replicas.find((x) => x.self)!.status!.instance).toBe(r.instance);
      expect(f.totals!.replicas).toBe(3);
    }

    // The group's partitions (3 on the requests topic) are owned across the fleet, each once.
    await waitFor(async () => {
      const f = await clients[0]!.getFleet();
      const owned = f.replicas.flatMap((r) => r.status!.partitions);
      return owned.length === 3 && new Set(owned).size === 3 && f.replicas.every((r) => r.status!.ready);
    }, 60_000, 'every partition owned once, every replica ready');
    const f0 = await clients[0]!.getFleet();
    for (const r of f0.replicas) {
      const s = r.status!;
      expect(s.model_version).toMatch(/.+/);
      expect(s.breaker).toBe('closed');
      expect(s.heartbeat_interval_ms).toBe(HEARTBEAT_MS);
      expect(s.control_address).toBe(replicas.find((x) => x.instance === s.instance)!.grpcAddr);
    }
    expect(f0.totals).toMatchObject({ replicas: 3, ready: 3, partitions: 3, breakers_open: 0, apply_errors: 0 });
    expect(Object.values(f0.totals!.model_versions)).toEqual([3]);

    // GetStats carries the fleet totals (field 21).
    const stats = await clients[1]!.getStats();
    expect(stats.fleet).toMatchObject({ replicas: 3, partitions: 3 });

    // The CLI, as an operator runs it: a table, and --json.
    const table = adminFleet(b);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^INSTANCE\s+HOST\s+VERSION\s+MODEL/);
    for (const id of ['fleet-a', 'fleet-b \\*', 'fleet-c']) expect(table.stdout).toMatch(new RegExp(`\\n${id}\\s`));
    expect(table.stdout).toContain('fleet: 3 live (3 ready)');
    expect(live(adminFleet(b, '--json').json!)).toEqual(['fleet-a', 'fleet-b', 'fleet-c']);

    // The status topic as another client sees it: one heartbeat per instance, protobuf ReplicaStatus.
    let onTopic = new Map<string, Buffer | null>();
    await waitFor(() => {
      onTopic = statusOnTopic();
      return ['fleet-a', 'fleet-b', 'fleet-c'].every((id) => (onTopic.get(id)?.length ?? 0) > 0);
    }, 30_000, 'a heartbeat of each instance on the topic');
    for (const id of ['fleet-a', 'fleet-b', 'fleet-c']) {
      const v = onTopic.get(id);
      expect(v, `${id} among ${JSON.stringify([...onTopic.keys()])}`).toBeTruthy();
      expect(decodeReplicaStatus(v!, id).instance).toBe(id);
    }

    // SIGKILL: no tombstone. Listed while its beats are recent, gone after 3 × 500 ms of silence.
    c.proc.kill('SIGKILL');
    expect((await c.exited).signal).toBe('SIGKILL');
    const killedAt = Date.now();
    await waitFor(async () => live(await clients[0]!.getFleet()).length === 2, 30_000, 'the killed replica goes stale');
    const staleAfter = Date.now() - killedAt;
    expect(staleAfter).toBeGreaterThanOrEqual(3 * HEARTBEAT_MS - 600); // not before its beats were missed
    for (const cl of clients.slice(0, 2)) expect(live(await cl.getFleet())).toEqual(['fleet-a', 'fleet-b']);
    const withStale = await clients[1]!.getFleet(true);
    expect(withStale.replicas.map((r) => [r.status!.instance, r.stale])).toEqual([['fleet-a', false], ['fleet-b', false], ['fleet-c', true]]);
    expect(withStale.totals).toMatchObject({ replicas: 2, stale: 1 });
    expect(adminFleet(a, '--all').stdout).toMatch(/\nfleet-c\s.*STALE/);

    // SIGTERM: a clean stop writes the tombstone; the others forget it without waiting.
    b.proc.kill('SIGTERM');
    expect(await b.exited).toEqual({ code: 0, signal: null });
    // Gone altogether, not merely stale: even the list with stale replicas no longer has it.
    await waitFor(async () => !(await clients[0]!.getFleet(true)).replicas.some((r) => r.status!.instance === 'fleet-b'), 10_000, 'the tombstone read');
    await waitFor(() => statusOnTopic().get('fleet-b') === null, 15_000, 'a tombstone for fleet-b on the topic');
    expect(live(await clients[0]!.getFleet())).toEqual(['fleet-a']);
  });
});
