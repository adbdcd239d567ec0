// The fleet table: what one replica knows of every replica, from the heartbeats on the status
// topic (docs/contracts.md §10). Pure: records go in with the time they were written, and the
// view at a given time comes out — the Kafka reading lives in ./fleet-view.ts.
//
// WHY "stale" is judged from the time a heartbeat was written, not from when this replica read
// it: a replica starting up reads the whole topic at once, and a replica killed an hour ago must
// not look alive for three more intervals because its last record was only just read. The
// status topic keeps the broker's append time, so one clock (the broker's) stamps every record.
// Each replica's own interval decides when it is stale, so replicas may beat at different rates.

export type BreakerStateText = 'closed' | 'open' | 'half_open';

/** One heartbeat (proto tiny_dancer.v1.ReplicaStatus, camelCase). */
export interface ReplicaStatus {
  instance: string;
  host: string;
  version: string;
  modelVersion: string;
  policyRevision: number;
  partitions: number[];
  requestsPerSecond: number;
  decisionsPerSecond: number;
  /** Absent until sampled. */
  consumerLag?: number;
  logBacklog: number;
  breaker: BreakerStateText;
  /** '' when none. */
  lastApplyError: string;
  sentAt: number;
  startedAt: number;
  heartbeatMs: number;
  requests: number;
  decisions: number;
  lightweight: number;
  ready: boolean;
  controlAddress: string;
}

export interface FleetReplicaView {
  status: ReplicaStatus;
  /** When its latest heartbeat was written (Unix ms). */
  lastSeen: number;
  stale: boolean;
  self: boolean;
}

export interface FleetTotalsView {
  replicas: number;
  stale: number;
  ready: number;
  partitions: number;
  requestsPerSecond: number;
  decisionsPerSecond: number;
  consumerLag: number;
  logBacklog: number;
  breakersOpen: number;
  applyErrors: number;
  modelVersions: Record<string, number>;
  requests: number;
  decisions: number;
  lightweight: number;
}

export interface FleetViewSnapshot {
  answeredBy: string;
  time: number;
  replicas: FleetReplicaView[];
  totals: FleetTotalsView;
  caughtUp: boolean;
}

/** Heartbeats a replica may miss before it is stale. */
export const MISSED_BEATS = 3;

/** True when `entry`, last seen at `lastSeen`, has missed MISSED_BEATS heartbeats by `now`. */
export function isStale(status: Pick<ReplicaStatus, 'heartbeatMs'>, lastSeen: number, now: number): boolean {
  return now - lastSeen > MISSED_BEATS * Math.max(1, status.heartbeatMs);
}

interface Entry {
  status: ReplicaStatus;
  lastSeen: number;
}

export class FleetTable {
  readonly self: string;
  readonly #entries = new Map<string, Entry>();

  constructor(self: string) {
    this.self = self;
  }

  /**
   * A heartbeat read from the topic, written at `writtenAt` and read at `readAt` (Unix ms). A
   * record's time is capped at when it was read, so a clock ahead of ours cannot keep a replica
   * alive. An older heartbeat than the one held (reordered, replayed) changes nothing.
   */
  upsert(status: ReplicaStatus, writtenAt: number, readAt: number): void {
    const lastSeen = Number.isFinite(writtenAt) && writtenAt > 0 ? Math.min(writtenAt, readAt) : readAt;
    const held = this.#entries.get(status.instance);
    if (held && held.lastSeen > lastSeen) return;
    this.#entries.set(status.instance, { status, lastSeen });
  }

  /** A tombstone: the replica stopped cleanly. */
  remove(instance: string): void {
    this.#entries.delete(instance);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Instances stale for longer than `forgetAfterMs` at `now`: their records may be tombstoned. */
  forgotten(now: number, forgetAfterMs: number): string[] {
    const out: string[] = [];
    for (const [id, e] of this.#entries) if (id !== this.self && now - e.lastSeen > forgetAfterMs) out.push(id);
    return out;
  }

  /** True when this replica is the live one with the smallest instance id (it tidies the topic). */
  isSteward(now: number): boolean {
    for (const [id, e] of this.#entries) {
      if (id < this.self && !isStale(e.status, e.lastSeen, now)) return false;
    }
    return true;
  }

  replicas(now: number, includeStale: boolean): FleetReplicaView[] {
    const out: FleetReplicaView[] = [];
    for (const [id, e] of this.#entries) {
      const stale = isStale(e.status, e.lastSeen, now);
      if (stale && !includeStale) continue;
      out.push({ status: e.status, lastSeen: e.lastSeen, stale, self: id === this.self });
    }
    // Live first, then by instance id.
    return out.sort((a, b) => Number(a.stale) - Number(b.stale) || (a.status.instance < b.status.instance ? -1 : a.status.instance > b.status.instance ? 1 : 0));
  }

  totals(now: number): FleetTotalsView {
    const t: FleetTotalsView = {
      replicas: 0, stale: 0, ready: 0, partitions: 0, requestsPerSecond: 0, decisionsPerSecond: 0, consumerLag: 0,
      logBacklog: 0, breakersOpen: 0, applyErrors: 0, modelVersions: {}, requests: 0, decisions: 0, lightweight: 0,
    };
    for (const e of this.#entries.values()) {
      const s = e.status;
      if (isStale(s, e.lastSeen, now)) {
        t.stale++;
        continue;
      }
      t.replicas++;
      if (s.ready) t.ready++;
      t.partitions += s.partitions.length;
      t.requestsPerSecond += s.requestsPerSecond;
      t.decisionsPerSecond += s.decisionsPerSecond;
      t.consumerLag += s.consumerLag ?? 0;
      t.logBacklog += s.logBacklog;
      if (s.breaker !== 'closed') t.breakersOpen++;
      if (s.lastApplyError !== '') t.applyErrors++;
      t.modelVersions[s.modelVersion] = (t.modelVersions[s.modelVersion] ?? 0) + 1;
      t.requests += s.requests;
      t.decisions += s.decisions;
      t.lightweight += s.lightweight;
    }
    return t;
  }

  snapshot(now: number, includeStale: boolean, caughtUp: boolean): FleetViewSnapshot {
    return { answeredBy: this.self, time: now, replicas: this.replicas(now, includeStale), totals: this.totals(now), caughtUp };
  }
}
