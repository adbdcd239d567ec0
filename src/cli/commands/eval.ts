// `tiny-dancer eval`: a model (and optionally the models it was compressed from) against the
// baselines on labelled data it was not trained on; quality report as JSON, Markdown and PNG.
import { UsageError } from '../../errors.js';
import { intArg, numberArg, parseCommandArgs } from '../args.js';

export const summary = 'evaluate a model against baselines on labelled data (AUC, calibration, coverage, cost/quality)';
export const usage = `usage: tiny-dancer eval --model PATH (--data FILE | --synthetic N) [options]

Scores every sample of the data (JSON lines as for \`train\`: feature lines or labelled
RoutingRequests) with the model and with the baselines — always heavyweight, random, cosine
similarity, the seed's fixed weighted sum, logistic regression — and reports AUC, Brier score,
expected calibration error, log loss, the share routed lightweight at quality-loss budgets of
1 %, 2 % and 5 %, the conformal coverage of the model's calibration, and the share and quality
loss of its stored thresholds under the exact serving rule.

  --model PATH           the model to evaluate (its calibration and thresholds are used)
  --compare PATH         another model to put next to it, e.g. the float model a compressed
                         one came from (repeatable; the first is the reference for Δ AUC)
  --data FILE            labelled JSON lines, held out from training
  --synthetic N          or: N synthetic requests (use a --synthetic-seed the model was not trained on)
  --synthetic-seed N     (default 2; \`train --synthetic\` defaults to 1)
  --dim N                synthetic embedding dimension (384)
  --train-data FILE      fit logistic regression here (default: 2-fold cross-fitting on the data)
  --now SECONDS          clock for request lines without "now"
  --feature-names a,b    names for feature lines
  --seed N               seed of the random baseline and the cross-fitting split (42)
  --report PATH          write PATH(.json), .md and .png

Exit status: 0 ok, 2 bad arguments, bad model or bad input (the line is named), 1 other failures.`;

const pct = (v: number | null | undefined, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '—' : `${(v * 100).toFixed(d)} %`);

export async function run(argv: string[]): Promise<number> {
  const { values: v } = parseCommandArgs(argv, {
    model: { type: 'string' },
    compare: { type: 'string', multiple: true },
    data: { type: 'string' },
    synthetic: { type: 'string' },
    'synthetic-seed': { type: 'string' },
    dim: { type: 'string' },
    'train-data': { type: 'string' },
    now: { type: 'string' },
    'feature-names': { type: 'string' },
    seed: { type: 'string' },
    report: { type: 'string' },
  });
  if (!v.model) throw new UsageError('eval needs --model PATH');
  if ((v.data === undefined) === (v.synthetic === undefined)) throw new UsageError('eval needs exactly one of --data FILE or --synthetic N');
  const featureNames = v['feature-names']?.split(',').map((s) => s.trim());
  const now = v.now !== undefined ? numberArg('now', v.now, 0, 0) : undefined;
  const seed = intArg('seed', v.seed, 42, 0, 2 ** 32 - 1);
  const { loadModelFile } = await import('../../engine/model.js');
  const { loadData } = await import('../../train/source.js');
  const { loadDataset } = await import('../../train/data.js');
  const { evaluationReport } = await import('../../train/evaluate.js');
  const { writeReport } = await import('../../train/report.js');

  const main = { name: v.model, model: loadModelFile(v.model) };
  const compare = (v.compare ?? []).map((p) => ({ name: p, model: loadModelFile(p) }));
  const common = { ...(now !== undefined ? { now } : {}), ...(featureNames ? { featureNames } : {}) };
  const ds = await loadData({
    ...common,
    ...(v.data !== undefined ? { path: v.data } : {}),
    ...(v.synthetic !== undefined ? { synthetic: intArg('synthetic', v.synthetic, 0, 1, 10_000_000) } : {}),
    syntheticSeed: intArg('synthetic-seed', v['synthetic-seed'], 2, 0, 2 ** 32 - 1),
    dim: intArg('dim', v.dim, 384, 1, 4096),
  });
  const train = v['train-data'] !== undefined ? await loadDataset(v['train-data'], common) : undefined;
  const report = evaluationReport(main, compare, ds, { seed, ...(train ? { train } : {}) });
  const written = v.report ? writeReport(v.report, report) : [];

  const lines = [`evaluated ${main.model.version} on ${ds.n} samples from ${ds.lines} lines (base rate ${pct(report.evaluatedOn.baseRate)})`];
  lines.push(`${'scorer'.padEnd(26)} ${'AUC'.padStart(7)} ${'Brier'.padStart(7)} ${'ECE'.padStart(7)} ${'@1%'.padStart(8)} ${'@2%'.padStart(8)} ${'@5%'.padStart(8)}`);
  for (const s of report.scorers) {
    const f = (x: number | null) => (x === null ? '—' : x.toFixed(4)).padStart(7);
    const name = s.name.length > 26 ? `…${s.name.slice(-25)}` : s.name;
    lines.push(`${name.padEnd(26)} ${f(s.auc)} ${f(s.brier)} ${f(s.ece)} ${s.shareAt.map((b) => pct(b.share).padStart(8)).join(' ')}`);
  }
  if (report.conformal) lines.push(`conformal coverage ${pct(report.conformal.coverage, 2)} (alpha ${report.conformal.alpha}: target ${pct(1 - report.conformal.alpha, 0)})`);
  if (report.routing) lines.push(`stored thresholds (confidence >= ${report.routing.confidence.toFixed(4)}, max_uncertainty ${report.routing.maxUncertainty}): share ${pct(report.routing.share)} at quality loss ${pct(report.routing.loss, 2)}`);
  for (const n of report.notes) lines.push(`note: ${n}`);
  if (written.length) lines.push(`report ${written.join(', ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
