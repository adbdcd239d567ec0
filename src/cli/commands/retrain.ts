// `tiny-dancer retrain`: closes the feedback loop. Reads logged decisions that have
// outcomes, trains and calibrates a candidate with the training pipeline, compares it with the
// serving model on the most recent outcomes, writes the candidate and a report, registers it,
// and with --promote hot-reloads it through the control plane — only when it passes every gate.
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { TinyDancerError, UsageError, errorMessage } from '../../errors.js';
import { intArg, numberArg, parseCommandArgs } from '../args.js';
import { TLS_OPTIONS, actor, clientTls, controlAddress, databaseUrl, parseDuration, schemaName } from '../common.js';
import type { ModelEvaluation } from '../../feedback/evaluate.js';
import type { RetrainResult } from '../../feedback/retrain.js';

export const summary = 'retrain from decisions with outcomes; promote only a candidate that passes every gate';
export const usage = `usage: tiny-dancer retrain [--window 7d] [--min-count N] [--holdout 0.2] [--promote] [options]

Builds a training set from the decisions logged in Postgres that have outcomes (their feature
vectors, labelled "the lightweight model sufficed" as src/feedback/label.ts defines), trains and
calibrates a candidate with the training pipeline, and evaluates candidate and serving model on
the same held-out slice of the MOST RECENT outcomes. Writes the candidate to
<candidates-dir>/<version>.safetensors and the comparison to <version>.report.json, and records
the candidate in the model registry. With --promote it hot-reloads the candidate through the
control plane (validated, atomic) only if it is at least as good on every gate:
  auc                 AUC ≥ serving AUC − --auc-tolerance
  coverage            conformal coverage within max(--coverage-tolerance, 2 standard errors)
                      of 1 − α
  lightweight_share   share routed lightweight at the --budget quality loss ≥ serving's −
                      --share-tolerance
otherwise it names the failed gates, changes nothing in service and exits 1.

data:
  --window D            outcomes received in the last D (s, m, h, d, w; default 7d)
  --min-count N         fewest labelled examples to train on (default 1000)
  --holdout F           share of the most recent requests held out (default 0.2)
  --quality-threshold Q shadow quality at which the lightweight model sufficed (default 0.5)
model:
  --alpha A             conformal α (default: the serving model's, else 0.1)
  --seed N              training seed (default 42)
  --hidden H            hidden units (default: the training pipeline's)
  --epochs N            training epochs (default: the training pipeline's)
  --cal-fraction F      share of the training requests kept for conformal calibration
                        (default 0.3)
  --candidate PATH      evaluate (and maybe promote) this model file instead of training one
  --serving PATH        the serving model's file (default: asked from the control plane, then
                        found in the registry; else the registry's active version)
gates:
  --budget B            quality-loss budget of the lightweight-share gate (default 0.02)
  --auc-tolerance X     (default 0)
  --coverage-tolerance X (default 0.02)
  --share-tolerance X   (default 0)
promotion:
  --promote             reload the candidate if every gate passes (needs TD_ADMIN_TOKEN)
  --promoted-by NAME    recorded in the registry (default TD_PROMOTED_BY, else the user name)
  --addr HOST:PORT      control plane (default TD_GRPC_ADDR, else 127.0.0.1:50051)
  --timeout S           deadline of each control-plane call in seconds (default 30)
  --tls, --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --tls-server-name N   as for admin
storage:
  --database-url URL    Postgres (default DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
  --schema NAME         schema of the tables (default TD_DB_SCHEMA, else public)
  --candidates-dir DIR  where candidate models and reports go (default TD_CANDIDATES_DIR, else
                        models/candidates)
  --json                print the report as JSON on stdout (progress stays on stderr)

Exit status: 0 done (candidate written; promoted when asked), 1 a gate failed under --promote,
too few outcomes, or a failure, 2 bad arguments.`;

const OPTIONS = {
  window: { type: 'string' },
  'min-count': { type: 'string' },
  holdout: { type: 'string' },
  'quality-threshold': { type: 'string' },
  alpha: { type: 'string' },
  seed: { type: 'string' },
  hidden: { type: 'string' },
  epochs: { type: 'string' },
  'cal-fraction': { type: 'string' },
  candidate: { type: 'string' },
  serving: { type: 'string' },
  budget: { type: 'string' },
  'auc-tolerance': { type: 'string' },
  'coverage-tolerance': { type: 'string' },
  'share-tolerance': { type: 'string' },
  promote: { type: 'boolean' },
  'promoted-by': { type: 'string' },
  addr: { type: 'string' },
  timeout: { type: 'string' },
  'database-url': { type: 'string' },
  schema: { type: 'string' },
  'candidates-dir': { type: 'string' },
  json: { type: 'boolean' },
  ...TLS_OPTIONS,
} as const;

/** A promotion the gate refused: exit 1, nothing changed in service. */
export class PromotionRefusedError extends TinyDancerError {}

function f4(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(4);
}

function table(r: RetrainResult): string {
  const c = r.evaluation.candidate;
  const s = r.evaluation.serving;
  const rows: [string, (e: ModelEvaluation) => string][] = [
    ['version', (e) => e.version],
    ['AUC', (e) => f4(e.auc)],
    [`coverage (target ${f4(1 - r.alpha)})`, (e) => f4(e.coverage)],
    [`lightweight share @${(c.budget * 100).toFixed(1)}% loss`, (e) => f4(e.lightweightShare)],
    ['Brier', (e) => f4(e.brier)],
    ['calibration error', (e) => f4(e.ece)],
    ['q̂ (α)', (e) => (e.qhat === null ? 'uncalibrated' : `${e.qhat.toFixed(4)} (${e.alpha})`)],
  ];
  const lines = [`held out: ${c.n} outcomes (${r.data.holdoutFrom ?? '?'} on), ${(r.data.holdoutPositiveShare * 100).toFixed(1)}% lightweight sufficed`];
  lines.push(`${''.padEnd(34)}${'candidate'.padEnd(30)}serving`);
  for (const [label, get] of rows) lines.push(`${label.padEnd(34)}${get(c).padEnd(30)}${s ? get(s) : '(none)'}`);
  for (const g of r.verdict.gates) lines.push(`gate ${g.gate.padEnd(18)} ${g.passed ? 'PASS' : 'FAIL'}  ${g.detail}`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseCommandArgs(argv, OPTIONS, true);
  if (positionals.length > 0) throw new UsageError(`retrain takes no arguments, got '${positionals.join(' ')}'`);
  const env = process.env;
  const windowMs = parseDuration('window', v.window ?? '7d');
  const minCount = intArg('min-count', v['min-count'], 1000, 1, 1_000_000_000);
  const holdout = numberArg('holdout', v.holdout, 0.2, 0.01, 0.9);
  const qualityThreshold = numberArg('quality-threshold', v['quality-threshold'], 0.5, 0, 1);
  const alpha = v.alpha === undefined ? undefined : numberArg('alpha', v.alpha, 0.1, 0.001, 0.5);
  const budget = numberArg('budget', v.budget, 0.02, 0, 1);
  const gate = {
    aucTolerance: numberArg('auc-tolerance', v['auc-tolerance'], 0, 0, 1),
    coverageTolerance: numberArg('coverage-tolerance', v['coverage-tolerance'], 0.02, 0, 1),
    shareTolerance: numberArg('share-tolerance', v['share-tolerance'], 0, 0, 1),
  };
  const train: Record<string, number> = { seed: intArg('seed', v.seed, 42, 0, 2 ** 31 - 1) };
  if (v.hidden !== undefined) train.hidden = intArg('hidden', v.hidden, 16, 1, 1024);
  if (v.epochs !== undefined) train.epochs = intArg('epochs', v.epochs, 40, 1, 100_000);
  if (v['cal-fraction'] !== undefined) train.calFraction = numberArg('cal-fraction', v['cal-fraction'], 0.3, 0.05, 0.6);
  const timeoutS = numberArg('timeout', v.timeout, 30, 0.1, 3600);
  const tls = clientTls(v);
  const promote = v.promote === true;
  const token = env.TD_ADMIN_TOKEN?.trim() || undefined;
  if (promote && !token) throw new UsageError('--promote reloads through the control plane and needs the admin token in TD_ADMIN_TOKEN');
  const by = actor(v['promoted-by'], env);
  const dir = resolve(v['candidates-dir'] ?? (env.TD_CANDIDATES_DIR?.trim() || 'models/candidates'));
  const say = (line: string) => void process.stderr.write(`retrain: ${line}\n`);

  const readModelFile = async (what: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new UsageError(`cannot read ${what} ${path}: ${errorMessage(err)}`);
    }
  };
  const candidateBytes = v.candidate === undefined ? undefined : await readModelFile('--candidate', v.candidate);
  const servingFile = v.serving === undefined ? undefined : { path: resolve(v.serving), bytes: await readModelFile('--serving', v.serving) };

  const { createPool, migrate, redactUrl } = await import('../../store/index.js');
  const url = databaseUrl(v['database-url'], env, redactUrl);
  const schema = schemaName(v.schema, env);
  const address = promote || v.addr !== undefined ? controlAddress(v.addr, env) : undefined;

  const { parseModel } = await import('../../engine/model.js');
  const { ModelRegistry, sha256Hex, storeModelFile } = await import('../../feedback/registry.js');
  const { retrainCandidate, retrainReport } = await import('../../feedback/retrain.js');
  const { activateVersion } = await import('../../feedback/promote.js');
  const { describeVerdict } = await import('../../feedback/gate.js');
  const { ControlClient } = await import('../../control/client.js');

  const { loadPgTls } = await import('../../config-security.js');
  const pool = createPool({ url, tls: loadPgTls(env), max: 2, applicationName: 'tiny-dancer retrain' });
  let client: InstanceType<typeof ControlClient> | undefined;
  try {
    // The same migrations `serve` runs, but only when the tables are missing (a new database):
    // migrating takes a transaction, which on the embedded Postgres (one session shared by all
    // connections) would enclose a running serve's inserts too.
    const present = await pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`"${schema}".model_registry`]);
    if (present.rows[0]?.t == null) await migrate(pool, { schema });
    const registry = new ModelRegistry(pool, schema);

    // The serving model: the baseline of every gate.
    if (address !== undefined) client = new ControlClient({ address, ...(token ? { token } : {}), ...(tls ? { tls } : {}), deadlineMs: timeoutS * 1000 });
    let serving: { bytes: Uint8Array; path: string | null } | undefined;
    let liveVersion: string | undefined;
    if (client) {
      const stats = await client.getStats().catch((err: unknown) => {
        throw new TinyDancerError(`cannot ask the control plane at ${address} which model is serving: ${errorMessage(err)}`, { cause: err });
      });
      liveVersion = stats.model?.version;
    }
    if (servingFile) serving = servingFile;
    else if (liveVersion !== undefined) {
      const entry = await registry.get(liveVersion);
      if (entry?.path) serving = { bytes: (await registry.readVerifiedFile(liveVersion)).bytes, path: entry.path };
      else {
        const cfg = await client!.getConfig();
        if (!cfg.model_path) throw new TinyDancerError(`serving model '${liveVersion}' is not in the registry and was loaded from bytes; pass --serving PATH`);
        serving = { bytes: await readModelFile('the serving model', cfg.model_path), path: resolve(cfg.model_path) };
      }
    } else {
      const active = await registry.active();
      if (active?.path) serving = { bytes: (await registry.readVerifiedFile(active.version)).bytes, path: active.path };
      else say('no serving model known (no --serving, no control plane, no active registry version): gates compare against chance');
    }
    const servingModel = serving ? parseModel(serving.bytes, serving.path ?? 'serving model') : undefined;
    if (servingModel && liveVersion !== undefined && servingModel.version !== liveVersion) {
      throw new UsageError(`--serving is ${servingModel.version}, but the control plane serves ${liveVersion}`);
    }
    if (servingModel && serving) {
      await registry.register({
        version: servingModel.version,
        sha256: sha256Hex(serving.bytes),
        path: serving.path,
        metrics: servingModel.calibration ? { calibration: servingModel.calibration } : {},
      });
      say(`serving model ${servingModel.version}`);
    }

    const result = await retrainCandidate({
      pool,
      schema,
      windowMs,
      minCount,
      holdout,
      budget,
      ...(alpha === undefined ? {} : { alpha }),
      label: { qualityThreshold },
      gate,
      train,
      ...(servingModel ? { serving: servingModel } : {}),
      ...(candidateBytes ? { candidateBytes } : {}),
      progress: say,
    });
    const version = result.candidate.version;
    const sha256 = sha256Hex(result.candidate.bytes);
    const path = await storeModelFile(dir, version, result.candidate.bytes);
    const reportPath = join(dir, `${version}.report.json`);
    const report: Record<string, unknown> = { ...retrainReport(result), file: { path, sha256 }, report: reportPath };
    await registry.register({
      version,
      sha256,
      path,
      metrics: {
        ...(result.candidate.calibration ? { calibration: result.candidate.calibration } : {}),
        retrain: { evaluation: result.evaluation, gates: { passed: result.verdict.passed, failed: result.verdict.failed }, data: result.data, at: new Date().toISOString() },
      },
    });
    const writeReport = () => writeFile(reportPath, `${JSON.stringify(report, null, 2)}\n`);
    const print = () => process.stdout.write(v.json ? `${JSON.stringify(report)}\n` : `${table(result)}\ncandidate ${version}: ${path}\nreport: ${reportPath}\n`);

    if (!promote) {
      report.promotion = { requested: false };
      await writeReport();
      print();
      return 0;
    }
    if (!result.verdict.passed) {
      report.promotion = { requested: true, promoted: false, failed: result.verdict.failed, reason: describeVerdict(result.verdict) };
      await writeReport();
      print();
      throw new PromotionRefusedError(`not promoted, nothing changed: ${describeVerdict(result.verdict)}`);
    }
    const promotion = {
      by,
      at: new Date().toISOString(),
      replaced: liveVersion ?? null,
      gates: result.verdict.gates.map((g) => ({ gate: g.gate, candidate: g.candidate, serving: g.serving })),
    };
    const activated = await activateVersion(client!, registry, version, by, { promotion });
    report.promotion = { requested: true, promoted: true, ...promotion, previousVersion: activated.previousVersion };
    await writeReport();
    print();
    if (!v.json) process.stdout.write(`promoted ${version} (was ${activated.previousVersion}) by ${by}\n`);
    return 0;
  } finally {
    client?.close();
    await pool.end().catch(() => {});
  }
}
