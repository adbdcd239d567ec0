// `tiny-dancer admin`: a gRPC client of the control plane (docs/contracts.md §4, §5). Readable output for
// people, `--json` (one object per line) for scripts. The token comes from TD_ADMIN_TOKEN only:
// a command-line flag would show it to every user of the machine in `ps`.
import { readFile } from 'node:fs/promises';
import { UsageError, errorMessage } from '../../errors.js';
import { numberArg, intArg, parseCommandArgs } from '../args.js';
import type {
  CircuitBreakerMessage,
  ConfigMessage,
  ControlClient,
  ConvergenceMessage,
  LatencyMessage,
  ReloadMessage,
  StatsMessage,
} from '../../control/client.js';
import { formatFleet } from './admin-fleet.js';
import { FEEDBACK_ADMIN_USAGE, feedbackAdminCommand, runFeedbackAdmin } from './admin-models.js';
import { clientTls } from '../common.js';

export const summary = 'drive a running router (and its fleet) over gRPC: stats, reload, breaker, thresholds, policies, config';
export const usage = `usage: tiny-dancer admin <command> [options]

commands:
  stats [--watch [--interval S] [--count N]]
                        counters, rates, latency percentiles, breaker, model, Kafka lag,
                        decision-log backlog, Postgres aggregates and, with prices set,
                        estimated spend and savings; --watch streams them every S seconds
                        (default 1, at least 0.25) until Ctrl-C or N updates
  stats --since D [--database-url URL] [--schema S]
                        the decision log over the last D (e.g. 24h, 7d) from Postgres, no
                        server needed: decisions and lightweight share per model version,
                        with spend and savings when TD_COST_LIGHTWEIGHT and
                        TD_COST_HEAVYWEIGHT are set (DATABASE_URL, TD_DB_SCHEMA by default)
  reload PATH [--bytes] [--wait]
                        hot-reload a model: PATH is a file on the SERVER; with --bytes the
                        local file's content is sent instead (bounded by the server's
                        message limit). Validated first; on failure the old model stays and
                        the reason is printed. With \`serve\` the model becomes the whole
                        fleet's (every replica, and after restarts): one call, through any
                        replica or the Kubernetes Service
  breaker [--reset]     circuit breaker state; --reset closes it
  thresholds [--confidence X] [--max-uncertainty Y] [--wait]
                        set the decision thresholds (either or both, each in [0, 1]),
                        fleet-wide like reload
  policy set TENANT --confidence X --max-uncertainty Y [--wait]
  policy delete TENANT [--wait]
  policy list           per-tenant thresholds (tenant: request metadata key TD_TENANT_KEY),
                        fleet-wide; tenants without a policy use the global thresholds
  config                the effective configuration (secrets redacted)
  health                the grpc.health.v1 status (SERVING / NOT_SERVING); exits 1
                        when not SERVING, for scripts and probes
  fleet [--all]         every live replica of the fleet (any replica answers for all):
                        model, partitions, rates, lag, backlog, breaker, apply errors,
                        and the fleet's sums; --all also lists stale replicas
${FEEDBACK_ADMIN_USAGE}

options:
  --addr HOST:PORT      control plane address (default TD_GRPC_ADDR, else 127.0.0.1:50051)
  --json                machine-readable output, one JSON object per line
  --timeout S           deadline of each call in seconds (default 10)
  --tls                 connect with TLS, verifying the server with the system CA roots
  --tls-ca FILE         connect with TLS, verifying the server with this CA bundle
  --tls-cert FILE       client certificate for mutual TLS (with --tls-key)
  --tls-key FILE        its private key
  --tls-server-name N   name expected in the server certificate (e.g. when dialling an IP)
  --wait                wait until every live replica applied the change (up to --timeout);
                        exits 1 when some had not. Without it the call returns once the
                        replica that took it applied it (the others follow within moments)

reload, breaker --reset, thresholds and policy set|delete need the admin token in TD_ADMIN_TOKEN.
Exit status: 0 ok, 2 bad arguments, 1 the call failed (the message names the gRPC status).`;

const OPTIONS = {
  addr: { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
  watch: { type: 'boolean' },
  interval: { type: 'string' },
  count: { type: 'string' },
  bytes: { type: 'boolean' },
  reset: { type: 'boolean' },
  confidence: { type: 'string' },
  'max-uncertainty': { type: 'string' },
  since: { type: 'string' },
  'database-url': { type: 'string' },
  schema: { type: 'string' },
  wait: { type: 'boolean' },
  all: { type: 'boolean' },
} as const;


const COMMAND_OPTIONS: Record<string, readonly (keyof typeof OPTIONS)[]> = {
  stats: ['watch', 'interval', 'count', 'since', 'database-url', 'schema'],
  reload: ['bytes', 'wait'],
  breaker: ['reset'],
  thresholds: ['confidence', 'max-uncertainty', 'wait'],
  policy: ['confidence', 'max-uncertainty', 'wait'],
  config: [],
  health: [],
  fleet: ['all'],
};
const COMMON: readonly (keyof typeof OPTIONS)[] = ['addr', 'json', 'timeout', 'tls', 'tls-ca', 'tls-cert', 'tls-key', 'tls-server-name'];

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

// ---- formatting ------------------------------------------------------------------------------

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function us(x: number): string {
  if (x >= 1_000_000) return `${(x / 1_000_000).toFixed(2)}s`;
  if (x >= 1000) return `${(x / 1000).toFixed(x >= 100_000 ? 0 : 2)}ms`;
  return `${x.toFixed(0)}µs`;
}

function duration(seconds: number): string {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts = [d ? `${d}d` : '', d || h ? `${h}h` : '', d || h || m ? `${m}m` : '', `${s % 60}s`].filter(Boolean);
  return parts.join(' ');
}

function when(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : 'never';
}

function latency(l: LatencyMessage | null): string {
  if (!l || l.count === 0) return 'no samples yet';
  return `p50 ${us(l.p50_us)}  p90 ${us(l.p90_us)}  p99 ${us(l.p99_us)}  max ${us(l.max_us)}  (last ${int(l.count)})`;
}

function breakerState(state: string): string {
  return state.replace(/^BREAKER_STATE_/, '').toLowerCase().replace('_', '-');
}

function breakerLine(b: CircuitBreakerMessage): string {
  let line = `${breakerState(b.state)}, ${int(b.trips)} trip(s), ${int(b.fallbacks)} fallback request(s)`;
  if (b.opened_at_unix_ms > 0) line += `, last opened ${when(b.opened_at_unix_ms)}`;
  if (b.window) line += `; window: ${int(b.window.successes)} ok, ${int(b.window.failures)} failed, ${int(b.window.timeouts)} timed out, ${int(b.window.rejects)} short-circuited`;
  return line;
}

function counts(rec: Record<string, number>): string {
  const entries = Object.entries(rec).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} ${int(v)}`).join(', ');
}

function formatStats(s: StatsMessage): string {
  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`${label.padEnd(14)}${text}`);
  row('service', `tiny-dancer ${s.service_version} (${s.mode}), ${s.health}, up ${duration(s.uptime_seconds)}`);
  if (s.model) {
    const cal = s.model.calibrated ? `calibrated α=${s.model.calibration_alpha} over ${int(s.model.calibration_n)}` : 'uncalibrated';
    row('model', `${s.model.version} (${cal}), loaded ${when(s.model.loaded_at_unix_ms)}${s.model.source ? ` from ${s.model.source}` : ''}`);
  }
  if (s.thresholds) row('thresholds', `confidence ≥ ${s.thresholds.confidence}, uncertainty ≤ ${s.thresholds.max_uncertainty}`);
  if (s.totals) {
    const r = s.rates;
    const rate = (x: number | undefined) => (r ? ` (${(x ?? 0).toFixed(1)}/s)` : '');
    row('requests', `${int(s.totals.requests)}${rate(r?.requests_per_second)}, rejected ${int(s.totals.rejected)}, failed ${int(s.totals.failed)}`);
    row('decisions', `${int(s.totals.decisions)}${rate(r?.decisions_per_second)}: lightweight ${int(s.totals.lightweight)} (${pct(s.lightweight_share)}), heavyweight ${int(s.totals.heavyweight)}`);
    row('reasons', counts(s.totals.reasons));
    if (r && r.window_seconds > 0) row('rates', `over ${r.window_seconds.toFixed(1)}s, lightweight share ${pct(r.lightweight_share)}`);
  }
  row('engine', latency(s.engine_latency));
  if (s.end_to_end_latency) row('end-to-end', latency(s.end_to_end_latency));
  if (s.breaker) row('breaker', breakerLine(s.breaker));
  if (s.pool) row('pool', `${s.pool.workers} worker(s), ${int(s.pool.in_flight)} in flight, ${int(s.pool.queued)} queued, ${int(s.pool.completed)} done, ${int(s.pool.crashes)} crash(es)`);
  if (s.stream) {
    const lag = s.stream.consumer_lag === undefined ? 'not sampled yet' : int(s.stream.consumer_lag);
    row('kafka', `${s.stream.connected ? 'connected' : 'DISCONNECTED'}, ${s.stream.assigned_partitions} partition(s), consumed ${int(s.stream.consumed)}, produced ${int(s.stream.produced)}, DLQ ${int(s.stream.dlq)}, lag ${lag}`);
  }
  if (s.feedback) {
    // Rolling conformal coverage per model version, from outcomes.
    for (const f of s.feedback.versions) {
      const cov = f.coverage === undefined || f.coverage === null ? 'no labelled outcomes yet' : `coverage ${pct(f.coverage)}${f.calibrated ? ` (target ${pct(f.target_coverage)})` : ''}`;
      row('feedback', `${f.version}: ${cov} over ${int(f.labeled)}, ${f.drifting ? 'DRIFTING, ' : ''}lightweight ok ${f.lightweight_success_rate == null ? '—' : pct(f.lightweight_success_rate)}`);
    }
  }
  if (s.cost) {
    const c = s.cost;
    row('cost', `spend ${c.spend} (lightweight ${c.lightweight_spend} at ${c.lightweight_price}, heavyweight ${c.heavyweight_spend} at ${c.heavyweight_price}); all-heavyweight ${c.all_heavyweight_spend}; saved ${c.savings} (${pct(c.savings_share)})`);
  }
  if (s.fleet) {
    const f = s.fleet;
    row('fleet', `${f.replicas} live replica(s)${f.stale > 0 ? `, ${f.stale} stale` : ''}, ${f.partitions} partition(s), ${f.requests_per_second.toFixed(1)} req/s, lag ${int(f.consumer_lag)}, models: ${counts(f.model_versions)}`);
  }
  if (s.decision_log) row('decision log', `${s.decision_log.healthy ? 'healthy' : 'UNHEALTHY'}, backlog ${int(s.decision_log.backlog)}, written ${int(s.decision_log.written)}, failed batches ${int(s.decision_log.failed_batches)}`);
  if (s.store) {
    if (!s.store.available) row('postgres', `unavailable: ${s.store.error}`);
    else {
      row('postgres', `last ${duration(s.store.window_seconds)}: ${int(s.store.decisions)} decisions for ${int(s.store.requests)} requests, lightweight ${pct(s.store.lightweight_share)}, mean confidence ${s.store.mean_confidence.toFixed(3)}`);
      row('', `inference p50 ${us(s.store.p50_inference_us)}  p95 ${us(s.store.p95_inference_us)}  p99 ${us(s.store.p99_inference_us)}; by version: ${counts(s.store.model_versions)}`);
    }
  }
  return lines.join('\n');
}

function formatReload(r: ReloadMessage): string {
  const lines = [`reloaded: now serving ${r.model?.version ?? '?'} (was ${r.previous_version}) in ${r.duration_ms.toFixed(0)} ms`];
  if (r.model) lines.push(`  ${r.model.input_dim} inputs [${r.model.features.join(', ')}], hidden ${r.model.hidden_dim}, ${r.calibrated ? 'calibrated' : 'NOT calibrated'}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines.join('\n');
}

/** One line on how far a fleet change spread; `ok` false when --wait ended with replicas behind. */
function convergenceLine(c: ConvergenceMessage | null | undefined, waited: boolean): { line: string; ok: boolean } {
  if (!c) return { line: '', ok: true };
  if (c.live === 0) return { line: `fleet: revision ${c.revision} applied by this replica; the fleet view is not available, others follow the control topic`, ok: true };
  const all = c.converged >= c.live;
  return { line: `fleet: revision ${c.revision} applied by ${c.converged} of ${c.live} live replicas${all ? '' : waited ? ' when the wait ended' : ' so far'}`, ok: all || !waited };
}

function formatConfig(c: ConfigMessage): string {
  const lines = [
    `service     tiny-dancer ${c.service_version} (${c.mode})`,
    `model       ${c.model_version}${c.model_path ? ` from ${c.model_path}` : ''}`,
  ];
  if (c.thresholds) lines.push(`thresholds  confidence ≥ ${c.thresholds.confidence}, uncertainty ≤ ${c.thresholds.max_uncertainty}`);
  if (c.breaker) {
    const b = c.breaker;
    lines.push(`breaker     timeout ${b.timeout_ms} ms, opens at ${b.error_threshold_percentage}% errors over ≥ ${b.volume_threshold} calls in ${b.rolling_window_ms} ms, retries after ${b.reset_timeout_ms} ms`);
  }
  for (const k of Object.keys(c.settings).sort()) lines.push(`${k} = ${c.settings[k]}`);
  return lines.join('\n');
}

// ---- the command ------------------------------------------------------------------------------

function checkAddress(addr: string): string {
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/.test(addr)) throw new UsageError(`--addr must be host:port, got '${addr}'`);
  return addr;
}

async function call<T>(what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    // RpcError's message is "STATUS: details"; prefix the command for context. Not an
    // InvalidInputError, so the dispatcher exits 1.
    throw new Error(`${what}: ${errorMessage(err)}`, { cause: err });
  }
}

export async function run(argv: string[]): Promise<number> {
  // `admin models` and `admin rollback VERSION` (the model registry) live in ./admin-models.ts,
  // with their own options (--database-url, --schema, --promoted-by).
  if (feedbackAdminCommand(argv, OPTIONS)) return runFeedbackAdmin(argv, process.env);
  const { values, positionals } = parseCommandArgs(argv, OPTIONS, true);
  const [command, ...rest] = positionals;
  if (!command) throw new UsageError('a command is required: stats, reload, breaker, thresholds, policy, config, health or fleet');
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed) throw new UsageError(`unknown admin command '${command}' (stats, reload, breaker, thresholds, policy, config, health, fleet)`);
  for (const [k, v] of Object.entries(values)) {
    if (v !== undefined && !COMMON.includes(k as keyof typeof OPTIONS) && !allowed.includes(k as keyof typeof OPTIONS)) {
      throw new UsageError(`--${k} does not apply to 'admin ${command}'`);
    }
  }
  let policy: { action: 'set' | 'delete' | 'list'; tenant?: string; confidence?: number; maxUncertainty?: number } | undefined;
  if (command === 'policy') {
    const [action, tenant, ...extra] = rest;
    if (action !== 'set' && action !== 'delete' && action !== 'list') throw new UsageError("'admin policy' takes set TENANT, delete TENANT or list");
    if (action === 'list' ? tenant !== undefined : tenant === undefined || extra.length > 0) {
      throw new UsageError(action === 'list' ? "'admin policy list' takes no arguments" : `'admin policy ${action}' takes exactly one TENANT`);
    }
    if (action !== 'set' && (values.confidence !== undefined || values['max-uncertainty'] !== undefined)) throw new UsageError(`--confidence and --max-uncertainty go with 'admin policy set'`);
    if (action === 'list' && values.wait) throw new UsageError("--wait does not apply to 'admin policy list'");
    policy = { action, ...(tenant === undefined ? {} : { tenant }) };
    if (action === 'set') {
      if (values.confidence === undefined || values['max-uncertainty'] === undefined) throw new UsageError("'admin policy set' needs --confidence X and --max-uncertainty Y");
      policy.confidence = numberArg('confidence', values.confidence, 0, 0, 1);
      policy.maxUncertainty = numberArg('max-uncertainty', values['max-uncertainty'], 0, 0, 1);
    }
  } else if (command === 'reload' ? rest.length !== 1 : rest.length !== 0) {
    throw new UsageError(command === 'reload' ? "'admin reload' takes exactly one PATH" : `'admin ${command}' takes no arguments, got '${rest.join(' ')}'`);
  }
  if (command === 'stats' && !values.watch && (values.interval !== undefined || values.count !== undefined)) {
    throw new UsageError('--interval and --count go with --watch');
  }
  if (command === 'stats' && values.since === undefined && (values['database-url'] !== undefined || values.schema !== undefined)) {
    throw new UsageError('--database-url and --schema go with --since');
  }
  if (command === 'stats' && values.since !== undefined) {
    if (values.watch) throw new UsageError('--since reads Postgres once: it does not go with --watch');
    const { runWindowStats } = await import('./admin-window.js');
    return runWindowStats(
      {
        since: values.since,
        json: values.json === true,
        ...(values['database-url'] !== undefined ? { databaseUrl: values['database-url'] } : {}),
        ...(values.schema !== undefined ? { schema: values.schema } : {}),
      },
      process.env,
    );
  }

  const addr = checkAddress(values.addr ?? (process.env.TD_GRPC_ADDR?.trim() || '127.0.0.1:50051'));
  const timeoutS = numberArg('timeout', values.timeout, 10, 0.1, 3600);
  const tls = clientTls(values);
  const token = process.env.TD_ADMIN_TOKEN?.trim() || undefined;
  const json = values.json === true;
  // The server waits for the fleet a second less than the call's deadline, so its answer (how
  // many replicas had converged) arrives before the deadline does.
  const change = values.wait ? { waitMs: Math.max(100, timeoutS * 1000 - 1000) } : {};

  // Argument checks before connecting, so bad arguments are exit 2 without network.
  let thresholds: { confidence?: number; maxUncertainty?: number } | undefined;
  if (command === 'thresholds') {
    thresholds = {};
    if (values.confidence !== undefined) thresholds.confidence = numberArg('confidence', values.confidence, 0, 0, 1);
    if (values['max-uncertainty'] !== undefined) thresholds.maxUncertainty = numberArg('max-uncertainty', values['max-uncertainty'], 0, 0, 1);
    if (thresholds.confidence === undefined && thresholds.maxUncertainty === undefined) {
      throw new UsageError('give --confidence X and/or --max-uncertainty Y');
    }
  }
  let reloadSource: { path: string } | { bytes: Uint8Array } | undefined;
  if (command === 'reload') {
    const path = rest[0]!;
    if (values.bytes) {
      try {
        reloadSource = { bytes: await readFile(path) };
      } catch (err) {
        throw new UsageError(`cannot read ${path}: ${errorMessage(err)}`);
      }
    } else {
      reloadSource = { path };
    }
  }
  const intervalS = numberArg('interval', values.interval, 1, 0.25, 3600);
  const count = intArg('count', values.count, 0, 1, 1_000_000_000);

  const { ControlClient } = await import('../../control/client.js');
  let client: ControlClient;
  try {
    client = new ControlClient({ address: addr, ...(token ? { token } : {}), ...(tls ? { tls } : {}), deadlineMs: timeoutS * 1000 });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  try {
    switch (command) {
      case 'stats': {
        if (!values.watch) {
          const s = await call('stats', client.getStats());
          out(json ? JSON.stringify(s) : formatStats(s));
          return 0;
        }
        let seen = 0;
        const w = client.watchStats(Math.round(intervalS * 1000), (s) => {
          seen++;
          if (json) out(JSON.stringify(s));
          else out(`${seen > 1 ? '\n' : ''}── ${new Date(s.time_unix_ms).toISOString()}\n${formatStats(s)}`);
          if (count > 0 && seen >= count) w.cancel();
        });
        const onSignal = () => w.cancel();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          await call('stats --watch', w.done);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
        return 0;
      }
      case 'reload': {
        const r = await call('reload', client.reloadModel(reloadSource!, change));
        const c = convergenceLine(r.convergence, values.wait === true);
        out(json ? JSON.stringify(r) : [formatReload(r), c.line].filter(Boolean).join('\n'));
        return c.ok ? 0 : 1;
      }
      case 'breaker': {
        const b = await call(values.reset ? 'breaker --reset' : 'breaker', values.reset ? client.resetCircuitBreaker() : client.getCircuitBreaker());
        out(json ? JSON.stringify(b) : `breaker ${breakerLine(b)}`);
        return 0;
      }
      case 'thresholds': {
        const t = await call('thresholds', client.setThresholds(thresholds!, change));
        const c = convergenceLine(t.convergence, values.wait === true);
        out(json ? JSON.stringify(t) : [`thresholds now: confidence ≥ ${t.confidence}, uncertainty ≤ ${t.max_uncertainty}`, c.line].filter(Boolean).join('\n'));
        return c.ok ? 0 : 1;
      }
      case 'policy': {
        const p = policy!;
        if (p.action === 'list') {
          const l = await call('policy list', client.listTenantPolicies());
          if (json) out(JSON.stringify(l));
          else if (l.policies.length === 0) out('no tenant policies: every request uses the global thresholds');
          else for (const x of l.policies) out(`${x.tenant.padEnd(24)} confidence ≥ ${x.confidence}, uncertainty ≤ ${x.max_uncertainty}`);
          return 0;
        }
        const r =
          p.action === 'set'
            ? await call('policy set', client.setTenantPolicy({ tenant: p.tenant!, confidence: p.confidence!, maxUncertainty: p.maxUncertainty! }, change))
            : await call('policy delete', client.deleteTenantPolicy(p.tenant!, change));
        const c = convergenceLine(r.convergence, values.wait === true);
        const what = p.action === 'set' ? `policy of ${r.tenant}: confidence ≥ ${r.policy?.confidence ?? p.confidence}, uncertainty ≤ ${r.policy?.max_uncertainty ?? p.maxUncertainty}` : r.changed ? `policy of ${r.tenant} deleted: it uses the global thresholds` : `no policy for ${r.tenant}; nothing changed`;
        out(json ? JSON.stringify(r) : [what, c.line].filter(Boolean).join('\n'));
        return c.ok ? 0 : 1;
      }
      case 'config': {
        const c = await call('config', client.getConfig());
        out(json ? JSON.stringify(c) : formatConfig(c));
        return 0;
      }
      case 'fleet': {
        const f = await call('fleet', client.getFleet(values.all === true));
        out(json ? JSON.stringify(f) : formatFleet(f));
        return 0;
      }
      case 'health': {
        const h = await call('health', client.health());
        out(json ? JSON.stringify({ status: h }) : h);
        return h === 'SERVING' ? 0 : 1;
      }
    }
    return 2;
  } finally {
    client.close();
  }
}
