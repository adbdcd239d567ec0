// `tiny-dancer admin fleet`: the fleet view (GetFleet) as a table for people; `--json` prints
// the message as it came. Formatting only: the call itself is made by ./admin.ts.
import type { FleetMessage } from '../../control/client.js';

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function age(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

/** Ranges of sorted partition numbers: [0,1,2,5] → "0-2,5". */
export function partitionRanges(ps: readonly number[]): string {
  if (ps.length === 0) return '-';
  const sorted = [...ps].sort((a, b) => a - b);
  const out: string[] = [];
  let start = sorted[0]!;
  let prev = start;
  for (const p of sorted.slice(1).concat(Number.NaN)) {
    if (p === prev + 1) {
      prev = p;
      continue;
    }
    out.push(start === prev ? String(start) : `${start}-${prev}`);
    start = prev = p;
  }
  return out.join(',');
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

export function formatFleet(f: FleetMessage): string {
  const rows: string[][] = [['INSTANCE', 'HOST', 'VERSION', 'MODEL', 'REV', 'PARTITIONS', 'REQ/S', 'DEC/S', 'LAG', 'BACKLOG', 'BREAKER', 'READY', 'SEEN', 'APPLY ERROR']];
  for (const r of f.replicas) {
    const s = r.status;
    if (!s) continue;
    rows.push([
      `${s.instance}${r.self ? ' *' : ''}`,
      s.host,
      s.version,
      s.model_version || '-',
      String(s.policy_revision),
      partitionRanges(s.partitions),
      s.requests_per_second.toFixed(1),
      s.decisions_per_second.toFixed(1),
      s.consumer_lag === undefined || s.consumer_lag === null ? '-' : int(s.consumer_lag),
      int(s.log_backlog),
      s.breaker.replace('_', '-'),
      s.ready ? 'yes' : 'no',
      r.stale ? `STALE ${age(f.time_unix_ms - r.last_seen_unix_ms)} ago` : `${age(f.time_unix_ms - r.last_seen_unix_ms)} ago`,
      s.last_apply_error || '-',
    ]);
  }
  const lines = rows.length > 1 ? table(rows) : ['no replica has sent a heartbeat yet'];
  const t = f.totals;
  if (t) {
    const versions = Object.entries(t.model_versions).map(([v, n]) => `${v} ×${n}`).join(', ') || 'none';
    lines.push('');
    lines.push(`fleet: ${t.replicas} live (${t.ready} ready)${t.stale > 0 ? `, ${t.stale} stale` : ''}, ${t.partitions} partition(s), ${t.requests_per_second.toFixed(1)} req/s, ${t.decisions_per_second.toFixed(1)} decisions/s, lag ${int(t.consumer_lag)}, backlog ${int(t.log_backlog)}`);
    lines.push(`models: ${versions}${Object.keys(t.model_versions).length > 1 ? ' (NOT converged)' : ''}; breakers not closed: ${t.breakers_open}; apply errors: ${t.apply_errors}`);
  }
  lines.push(`answered by ${f.answered_by} (*)${f.caught_up ? '' : '; it has not read the whole status topic yet: the list may be incomplete'}`);
  return lines.join('\n');
}
