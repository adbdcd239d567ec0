// `tiny-dancer model score PATH` and `tiny-dancer model inspect PATH [--json]` (docs/contracts.md §4).
// WHY: `score` is the raw §3 cell with no feature extraction, so a model written by any tool
// can be checked against that tool's own numbers line by line; `inspect` shows what is
// actually stored (dtypes, bytes, sparsity) and whether uncertainty is calibrated.
import { createInterface } from 'node:readline';
import { InvalidInputError, UsageError } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import type { LoadedModel } from '../../engine/model.js';
import { processIO, type CommandIO } from './route.js';

export const summary = 'score feature vectors with a model file, or inspect one';
export const usage = `usage: tiny-dancer model score PATH
       tiny-dancer model inspect PATH [--json]

score    JSON lines on stdin, each a feature vector (one step, input_dim numbers) or a list of
         feature vectors (a sequence, T >= 1); prints one score per line. No feature
         extraction: the raw FastGRNN cell of docs/contracts.md §3. Blank lines are skipped. A bad line
         stops with exit 2 naming its line number (scores before it are already printed).
inspect  shapes, dtypes, sparsity, parameter counts, bytes, metadata and calibration.

Exit status: 0 ok, 2 bad arguments, bad model file or bad input, 1 other failures.`;

async function load(path: string): Promise<LoadedModel> {
  const { loadModelFile } = await import('../../engine/model.js');
  return loadModelFile(path);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return 'a string';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : String(v);
}

/** Parses one line into buf (grown as needed); returns the number of steps. */
function parseLine(text: string, D: number, holder: { buf: Float64Array }): number {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`malformed JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(v) || v.length === 0) throw new Error(`expected a feature vector or a non-empty list of feature vectors, got ${describe(v)}`);
  const rows: unknown[] = Array.isArray(v[0]) ? v : [v];
  const T = rows.length;
  if (holder.buf.length < T * D) holder.buf = new Float64Array(Math.max(T * D, holder.buf.length * 2));
  const buf = holder.buf;
  for (let t = 0; t < T; t++) {
    const row = rows[t];
    const where = rows === v && Array.isArray(v[0]) ? `step ${t}: ` : '';
    if (!Array.isArray(row)) throw new Error(`${where}expected a feature vector, got ${describe(row)}`);
    if (row.length !== D) throw new Error(`${where}feature vector has ${row.length} values, the model's input_dim is ${D}`);
    for (let j = 0; j < D; j++) {
      const x = row[j];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`${where}value ${j} is ${describe(x)}, not a finite number`);
      buf[t * D + j] = x;
    }
  }
  return T;
}

async function score(path: string, io: CommandIO): Promise<number> {
  const model = await load(path);
  const { forward } = await import('../../engine/model.js');
  const D = model.inputDim;
  const holder = { buf: new Float64Array(D * 4) };
  const rl = createInterface({ input: io.stdin, crlfDelay: Infinity });
  let out: string[] = [];
  const flush = async (): Promise<void> => {
    if (out.length === 0) return;
    const chunk = `${out.join('\n')}\n`;
    out = [];
    if (!io.stdout.write(chunk)) await new Promise<void>((resolve) => io.stdout.once('drain', resolve));
  };
  let lineNo = 0;
  try {
    for await (const line of rl) {
      lineNo++;
      if (line.trim() === '') continue;
      let steps: number;
      try {
        steps = parseLine(line, D, holder);
      } catch (err) {
        await flush();
        throw new InvalidInputError(`line ${lineNo}: ${(err as Error).message}`);
      }
      out.push(String(forward(model, holder.buf, steps)));
      if (out.length >= 1024) await flush();
    }
  } finally {
    rl.close();
  }
  await flush();
  return 0;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

async function inspect(path: string, json: boolean, io: CommandIO): Promise<number> {
  const model = await load(path);
  const params = model.tensors.reduce((s, t) => s + t.params, 0);
  const nonZeros = model.tensors.reduce((s, t) => s + t.nonZeros, 0);
  const tensorBytes = model.tensors.reduce((s, t) => s + t.bytes, 0);
  const report = {
    path,
    format: model.metadata.format,
    version: model.version,
    input_dim: model.inputDim,
    hidden_dim: model.hiddenDim,
    features: model.features,
    W: model.wKind,
    U: model.uKind,
    normalised: model.normalised,
    tensors: model.tensors.map((t) => ({
      name: t.name, dtype: t.dtype, shape: t.shape, params: t.params, non_zeros: t.nonZeros,
      sparsity: t.sparsity, bytes: t.bytes, ...(t.scale !== undefined ? { scale: t.scale } : {}),
    })),
    params,
    non_zeros: nonZeros,
    sparsity: params === 0 ? 0 : 1 - nonZeros / params,
    tensor_bytes: tensorBytes,
    file_bytes: model.fileBytes,
    calibration: model.calibration ?? null,
    uncertainty: model.calibration ? 'conformal' : 'heuristic',
    thresholds: model.thresholds ?? null,
    metadata: model.metadata,
  };
  if (json) {
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  const lines: string[] = [];
  lines.push(`model      ${path}`);
  lines.push(`format     ${report.format}`);
  lines.push(`version    ${model.version}`);
  lines.push(`dims       input ${model.inputDim}, hidden ${model.hiddenDim}`);
  lines.push(`features   ${model.features.join(', ')}`);
  lines.push(`W          ${model.wKind}${model.wKind === 'low-rank' ? ` (rank ${model.tensors.find((t) => t.name === 'W1')?.shape[1]})` : ''}`);
  lines.push(`U          ${model.uKind}${model.uKind === 'low-rank' ? ` (rank ${model.tensors.find((t) => t.name === 'U1')?.shape[1]})` : ''}`);
  lines.push(`normalise  ${model.normalised ? 'yes (norm_mean, norm_std)' : 'no'}`);
  lines.push('');
  lines.push(`${'tensor'.padEnd(12)} ${'dtype'.padEnd(5)} ${'shape'.padEnd(10)} ${'params'.padStart(8)} ${'non-zero'.padStart(8)} ${'sparsity'.padStart(8)} ${'bytes'.padStart(8)}`);
  for (const t of model.tensors) {
    lines.push(`${t.name.padEnd(12)} ${t.dtype.padEnd(5)} ${`[${t.shape.join(',')}]`.padEnd(10)} ${String(t.params).padStart(8)} ${String(t.nonZeros).padStart(8)} ${pct(t.sparsity).padStart(8)} ${String(t.bytes).padStart(8)}${t.scale !== undefined ? `  scale ${t.scale}` : ''}`);
  }
  lines.push(`${'total'.padEnd(12)} ${''.padEnd(5)} ${''.padEnd(10)} ${String(params).padStart(8)} ${String(nonZeros).padStart(8)} ${pct(report.sparsity).padStart(8)} ${String(tensorBytes).padStart(8)}`);
  lines.push(`file size  ${model.fileBytes} bytes`);
  lines.push('');
  lines.push(model.calibration
    ? `calibration: split conformal, alpha ${model.calibration.alpha}, qhat ${model.calibration.qhat}, n ${model.calibration.n}`
    : 'calibration: none (heuristic uncertainty: 1 - |2p - 1|)');
  if (model.thresholds) {
    lines.push(`thresholds: ${model.thresholds.confidence !== undefined ? `confidence ${model.thresholds.confidence}` : ''}${model.thresholds.confidence !== undefined && model.thresholds.maxUncertainty !== undefined ? ', ' : ''}${model.thresholds.maxUncertainty !== undefined ? `max_uncertainty ${model.thresholds.maxUncertainty}` : ''}`);
  } else {
    lines.push('thresholds: none stored (defaults: confidence 0.85, max_uncertainty 0.15)');
  }
  lines.push('');
  lines.push('metadata:');
  for (const [k, v] of Object.entries(model.metadata)) lines.push(`  ${k}: ${v.length > 200 ? `${v.slice(0, 199)}…` : v}`);
  io.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

export async function run(argv: string[], io: CommandIO = processIO()): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'score') {
    const { positionals } = parseCommandArgs(rest, {}, true);
    if (positionals.length !== 1) throw new UsageError('model score needs exactly one PATH');
    return score(positionals[0]!, io);
  }
  if (sub === 'inspect') {
    const { values, positionals } = parseCommandArgs(rest, { json: { type: 'boolean' } }, true);
    if (positionals.length !== 1) throw new UsageError('model inspect needs exactly one PATH');
    return inspect(positionals[0]!, values.json === true, io);
  }
  throw new UsageError(sub === undefined ? 'model needs a subcommand: score or inspect' : `unknown model subcommand '${sub}' (score or inspect)`);
}
