// The fleet view on the wire (proto/tiny_dancer/v1/fleet.proto): heartbeats as status-topic
// record values (protobuf ReplicaStatus), and the GetFleet / Stats.fleet messages for the
// control plane (snake_case plain objects for proto-loader, as ./convert.ts does).
//
// A heartbeat read from the topic is untrusted input (anything with write access may produce
// to it): decodeReplicaStatus checks what the table relies on and throws on the rest, and the
// reader skips such a record.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { BreakerStateText, FleetTotalsView, FleetViewSnapshot, ReplicaStatus } from './fleet-table.js';
import type { Fleet__Output } from './generated/tiny_dancer/v1/Fleet.js';
import type { FleetTotals__Output } from './generated/tiny_dancer/v1/FleetTotals.js';
import type { ReplicaStatus__Output } from './generated/tiny_dancer/v1/ReplicaStatus.js';

const PROTO_PATH = fileURLToPath(new URL('../../proto/tiny_dancer/v1/fleet.proto', import.meta.url));

let statusType: protobuf.Type | undefined;

function replicaStatusType(): protobuf.Type {
  if (!statusType) {
    const root = new protobuf.Root().loadSync(PROTO_PATH, { keepCase: true });
    root.resolveAll();
    statusType = root.lookupType('tiny_dancer.v1.ReplicaStatus');
  }
  return statusType;
}

type Msg = Record<string, unknown>;

/** Non-negative finite, else 0 (uint fields refuse negatives and NaN). */
function u(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function d(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) ? n : 0;
}

/** ReplicaStatus as the proto message (snake_case). */
export function replicaStatusMsg(s: ReplicaStatus): Msg {
  const m: Msg = {
    instance: s.instance,
    host: s.host,
    version: s.version,
    model_version: s.modelVersion,
    policy_revision: Math.trunc(d(s.policyRevision)),
    partitions: s.partitions.map(u),
    requests_per_second: d(s.requestsPerSecond),
    decisions_per_second: d(s.decisionsPerSecond),
    log_backlog: u(s.logBacklog),
    breaker: s.breaker,
    last_apply_error: s.lastApplyError,
    sent_at_unix_ms: u(s.sentAt),
    started_at_unix_ms: u(s.startedAt),
    heartbeat_interval_ms: u(s.heartbeatMs),
    requests: u(s.requests),
    decisions: u(s.decisions),
    lightweight: u(s.lightweight),
    ready: s.ready,
    control_address: s.controlAddress,
  };
  if (s.consumerLag !== undefined && Number.isFinite(s.consumerLag)) m.consumer_lag = Math.max(0, Math.floor(s.consumerLag));
  return m;
}

/** A heartbeat's record value. */
export function encodeReplicaStatus(s: ReplicaStatus): Buffer {
  const t = replicaStatusType();
  const bytes = t.encode(t.fromObject(replicaStatusMsg(s))).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const BREAKER_STATES: readonly string[] = ['closed', 'open', 'half_open'];

function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return 0;
}

/** Decodes a status-topic record value. Throws Error with a one-line reason for a bad one. */
export function decodeReplicaStatus(value: Uint8Array, key: string): ReplicaStatus {
  const t = replicaStatusType();
  const m = t.toObject(t.decode(value), { longs: Number, defaults: true }) as Record<string, unknown>;
  const instance = String(m.instance ?? '');
  if (instance === '' || instance !== key) throw new Error(`heartbeat names instance ${JSON.stringify(instance)} under key ${JSON.stringify(key)}`);
  const heartbeatMs = num(m.heartbeat_interval_ms);
  if (!(heartbeatMs > 0)) throw new Error(`heartbeat of ${instance} has no interval`);
  const breaker = String(m.breaker ?? '');
  const status: ReplicaStatus = {
    instance,
    host: String(m.host ?? ''),
    version: String(m.version ?? ''),
    modelVersion: String(m.model_version ?? ''),
    policyRevision: num(m.policy_revision),
    partitions: Array.isArray(m.partitions) ? m.partitions.map(num) : [],
    requestsPerSecond: num(m.requests_per_second),
    decisionsPerSecond: num(m.decisions_per_second),
    logBacklog: num(m.log_backlog),
    breaker: (BREAKER_STATES.includes(breaker) ? breaker : 'closed') as BreakerStateText,
    lastApplyError: String(m.last_apply_error ?? ''),
    sentAt: num(m.sent_at_unix_ms),
    startedAt: num(m.started_at_unix_ms),
    heartbeatMs,
    requests: num(m.requests),
    decisions: num(m.decisions),
    lightweight: num(m.lightweight),
    ready: m.ready === true,
    controlAddress: String(m.control_address ?? ''),
  };
  if (m.consumer_lag !== undefined && m.consumer_lag !== null) status.consumerLag = num(m.consumer_lag);
  return status;
}

// ---- control-plane messages ------------------------------------------------------------------

export function fleetTotalsMsg(t: FleetTotalsView): Msg {
  const versions: Record<string, number> = {};
  for (const [k, v] of Object.entries(t.modelVersions)) versions[k] = u(v);
  return {
    replicas: u(t.replicas),
    stale: u(t.stale),
    ready: u(t.ready),
    partitions: u(t.partitions),
    requests_per_second: d(t.requestsPerSecond),
    decisions_per_second: d(t.decisionsPerSecond),
    consumer_lag: u(t.consumerLag),
    log_backlog: u(t.logBacklog),
    breakers_open: u(t.breakersOpen),
    apply_errors: u(t.applyErrors),
    model_versions: versions,
    requests: u(t.requests),
    decisions: u(t.decisions),
    lightweight: u(t.lightweight),
  };
}

export function fleetMsg(f: FleetViewSnapshot): Msg {
  return {
    answered_by: f.answeredBy,
    time_unix_ms: u(f.time),
    replicas: f.replicas.map((r) => ({ status: replicaStatusMsg(r.status), last_seen_unix_ms: u(r.lastSeen), stale: r.stale, self: r.self })),
    totals: fleetTotalsMsg(f.totals),
    caught_up: f.caughtUp,
  };
}

// ---- what a client receives: generated from proto/ (npm run proto:types) with the loader's
// options (snake_case, defaults filled) ---------------------------------------------------------

export type ReplicaStatusMessage = ReplicaStatus__Output;
export type FleetTotalsMessage = FleetTotals__Output;
export type FleetMessage = Fleet__Output;
