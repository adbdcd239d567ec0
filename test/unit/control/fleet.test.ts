// The fleet view's pure parts: the table (stale after three missed beats, tombstones, one clock),
// the heartbeat (rates, tombstone on stop, a failed send is not fatal), the status record codec
// (protobuf, untrusted input refused) and the admin table.
import { describe, expect, it } from 'vitest';
import { formatFleet, partitionRanges } from '../../../src/cli/commands/admin-fleet.js';
import { decodeReplicaStatus, encodeReplicaStatus, fleetMsg } from '../../../src/control/fleet-status.js';
import { FleetTable, isStale, type ReplicaStatus } from '../../../src/control/fleet-table.js';
import { loadSchema } from '../../../src/wire/index.js';
import { Heartbeat, type ReplicaSample } from '../../../src/observe/heartbeat.js';
import { silentLogger } from '../../../src/observe/logger.js';
import type { FleetMessage } from '../../../src/control/client.js';

function status(instance: string, over: Partial<ReplicaStatus> = {}): ReplicaStatus {
  return {
    instance, host: 'h', version: '0.1.0', modelVersion: 'v1', policyRevision: 3, partitions: [0, 1], requestsPerSecond: 10,
    decisionsPerSecond: 40, consumerLag: 5, logBacklog: 7, breaker: 'closed', lastApplyError: '', sentAt: 1000, startedAt: 0,
    heartbeatMs: 1000, requests: 100, decisions: 400, lightweight: 300, ready: true, controlAddress: '127.0.0.1:50051', ...over,
  };
}

describe('FleetTable', () => {
  it('lists a replica until it has missed three heartbeats of its own interval', () => {
    const t = new FleetTable('a');
    t.upsert(status('a'), 10_000, 10_000);
    t.upsert(status('b', { heartbeatMs: 5000 }), 10_000, 10_000);
    expect(t.replicas(13_000, false).map((r) => r.status.instance)).toEqual(['a', 'b']);
    expect(t.replicas(13_001, false).map((r) => r.status.instance)).toEqual(['b']);
    expect(t.replicas(13_001, true).map((r) => [r.status.instance, r.stale, r.self])).toEqual([['b', false, false], ['a', true, true]]);
    expect(t.replicas(25_001, false)).toEqual([]);
    expect(isStale({ heartbeatMs: 2000 }, 0, 6000)).toBe(false);
    expect(isStale({ heartbeatMs: 2000 }, 0, 6001)).toBe(true);
  });

  it('judges by when a heartbeat was written, capped at when it was read; an older one changes nothing', () => {
    const t = new FleetTable('self');
    // Read now, written long ago (a replica that died before this one started): stale at once.
    t.upsert(status('dead'), 1_000, 100_000);
    expect(t.replicas(100_000, false)).toEqual([]);
    // A clock ahead of ours cannot keep a replica alive.
    t.upsert(status('ahead'), 1_000_000, 100_000);
    expect(t.replicas(103_001, false)).toEqual([]);
    t.upsert(status('x', { modelVersion: 'new' }), 50_000, 50_000);
    t.upsert(status('x', { modelVersion: 'old' }), 40_000, 50_100);
    expect(t.replicas(50_200, false).find((r) => r.status.instance === 'x')!.status.modelVersion).toBe('new');
  });

  it('forgets a replica on its tombstone, sums the live ones and names the steward', () => {
    const t = new FleetTable('b');
    t.upsert(status('a', { breaker: 'open', lastApplyError: 'bad hash', modelVersion: 'v2' }), 10_000, 10_000);
    t.upsert(status('b', { consumerLag: undefined }), 10_000, 10_000);
    t.upsert(status('c'), 1_000, 10_000);
    const tot = t.totals(10_500);
    expect(tot).toMatchObject({ replicas: 2, stale: 1, ready: 2, partitions: 4, requestsPerSecond: 20, decisionsPerSecond: 80, consumerLag: 5, logBacklog: 14, breakersOpen: 1, applyErrors: 1, requests: 200 });
    expect(tot.modelVersions).toEqual({ v1: 1, v2: 1 });
    expect(t.isSteward(10_500)).toBe(false); // 'a' is live and smaller
    expect(t.forgotten(10_500, 5000)).toEqual(['c']);
    t.remove('a');
    expect(t.isSteward(10_500)).toBe(true);
    expect(t.totals(10_500).replicas).toBe(1);
  });
});

describe('status records', () => {
  it('round-trip through protobuf with the fields of fleet.proto', () => {
    const s = status('replica-1', { partitions: [2, 0], consumerLag: 0 });
    const back = decodeReplicaStatus(encodeReplicaStatus(s), 'replica-1');
    expect(back).toEqual(s);
    const noLag = status('r2', { consumerLag: undefined });
    expect(decodeReplicaStatus(encodeReplicaStatus(noLag), 'r2').consumerLag).toBeUndefined();
  });

  it('refuse a record whose key and instance differ, or with no interval, or that is not protobuf', () => {
    expect(() => decodeReplicaStatus(encodeReplicaStatus(status('a')), 'b')).toThrow(/under key "b"/);
    expect(() => decodeReplicaStatus(encodeReplicaStatus(status('a', { heartbeatMs: 0 })), 'a')).toThrow(/no interval/);
    expect(() => decodeReplicaStatus(Buffer.from('{"instance":"a"}'), 'a')).toThrow();
  });

  it('are not RoutingDecisions (a separate message type in its own file)', () => {
    expect(() => loadSchema().root.lookupType('tiny_dancer.v1.ReplicaStatus')).toThrow();
  });
});

describe('Heartbeat', () => {
  const sample = (requests: number): ReplicaSample => ({
    modelVersion: 'v1', policyRevision: 0, lastApplyError: undefined, partitions: [3, 1], requests, decisions: requests * 4,
    lightweight: requests, consumerLag: undefined, logBacklog: 0, breaker: 'closed', ready: true,
  });

  it('sends rates since the previous beat, and a tombstone on a clean stop', async () => {
    let now = 10_000;
    let requests = 0;
    const sent: [string, ReplicaStatus | null][] = [];
    const hb = new Heartbeat({
      identity: { instance: 'i1', host: 'h', version: '0.1.0', startedAt: 0, controlAddress: 'x:1' },
      source: { sample: () => sample(requests) },
      send: async (k, v) => { sent.push([k, v]); },
      intervalMs: 2000,
      logger: silentLogger,
      now: () => now,
    });
    await hb.beat();
    requests = 100;
    now += 2000;
    await hb.beat();
    expect(sent[1]![1]).toMatchObject({ instance: 'i1', requestsPerSecond: 50, decisionsPerSecond: 200, partitions: [1, 3], heartbeatMs: 2000, sentAt: 12_000, lastApplyError: '' });
    await hb.stop({ tombstone: true });
    expect(sent.at(-1)).toEqual(['i1', null]);
  });

  it('survives a failed send and beats again', async () => {
    let fail = true;
    const sent: string[] = [];
    const hb = new Heartbeat({
      identity: { instance: 'i2', host: 'h', version: 'v', startedAt: 0, controlAddress: '' },
      source: { sample: () => sample(1) },
      send: async (k) => {
        if (fail) throw new Error('broker down');
        sent.push(k);
      },
      intervalMs: 20,
      logger: silentLogger,
    });
    hb.start();
    await new Promise((r) => setTimeout(r, 100));
    fail = false;
    const deadline = Date.now() + 5000;
    while (sent.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await hb.stop({ tombstone: false });
    expect(sent.length).toBeGreaterThan(0);
  });
});

describe('admin fleet table', () => {
  it('prints one row per replica, the stale mark and the sums', () => {
    const t = new FleetTable('a');
    t.upsert(status('a'), 10_000, 10_000);
    t.upsert(status('b', { modelVersion: 'v2', lastApplyError: 'sha256 mismatch' }), 5_000, 10_000);
    const msg = fleetMsg(t.snapshot(10_000, true, true)) as unknown as FleetMessage;
    const text = formatFleet(msg);
    expect(text).toMatch(/^INSTANCE\s+HOST/);
    expect(text).toMatch(/\na \*\s+h\s+0\.1\.0\s+v1\s+3\s+0-1\s+10\.0\s+40\.0\s+5\s+7\s+closed\s+yes\s+0ms ago\s+-/);
    expect(text).toMatch(/\nb\s+.*STALE 5\.0s ago\s+sha256 mismatch/);
    expect(text).toContain('fleet: 1 live (1 ready), 1 stale');
    expect(partitionRanges([5, 0, 1, 2, 7, 8])).toBe('0-2,5,7-8');
    expect(partitionRanges([])).toBe('-');
  });
});
