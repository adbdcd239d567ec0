// `tiny-dancer triage`: bulk memory triage. JSON lines (or length-delimited protobuf) of
// RoutingRequest in, one ranked RoutingResponse per request out in the same format, through the
// worker pool.
// Decoding happens on the workers (routeEncoded), so this thread only splits records and writes.
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { UsageError } from '../../errors.js';
import { readDelimited } from '../../triage/delimited.js';
import { readLines } from '../../triage/lines.js';
import { triage, type TriageSummary } from '../../triage/triage.js';
import { intArg, numberArg, parseCommandArgs } from '../args.js';
import { Progress, formatDuration, formatRate } from '../progress.js';

export const summary = 'bulk-route JSON lines of RoutingRequest through the worker pool';
export const usage = `usage: tiny-dancer triage --in FILE --out FILE [options]

Reads RoutingRequests (one JSON object per line, or --format protobuf: length-delimited
tiny_dancer.v1.RoutingRequest messages) and writes one answer per request, in input order, in
the same format: its RoutingResponse, the message the responses topic carries (one JSON line
{"request_id", "model_version", "policy", "candidates_processed", "inference_time_us",
"feature_time_us", "decisions": [...ranked...]}, or length-delimited tiny_dancer.v1.RoutingResponse).
'-' means stdin / stdout. Memory stays constant whatever the input size.

  --in FILE             input file, or - for stdin (required)
  --out FILE            output file, or - for stdout (required)
  --model PATH          model file (default: TD_MODEL_PATH or models/default.safetensors)
  --top-k K             keep only the best K decisions of each request (a request's own
                        metadata td-top-k wins)
  --workers N           worker threads (default: cores - 1, at least 1)
  --format F            json (default) or protobuf, for input and output
  --rejects FILE        where bad records go, one JSON line each with its line number and
                        reason (default: <out>.rejects.jsonl, or stderr when --out is -)
  --confidence X        confidence threshold in [0, 1] (default: the model's)
  --max-uncertainty Y   max uncertainty in [0, 1] (default: the model's)
  --quiet               no progress on stderr

Progress goes to stderr: a bar with rate and ETA on a terminal, a line every 5 s otherwise.
Ctrl-C stops reading, finishes what is in flight and leaves the output whole up to its last line.
Exit status: 0 ok, 2 bad arguments or some records rejected, 1 other failures.`;

function openOutput(path: string): Writable {
  return path === '-' ? process.stdout : createWriteStream(path);
}

async function closeOutput(stream: Writable): Promise<void> {
  if (stream === process.stdout || stream === process.stderr) return;
  stream.end();
  await once(stream, 'finish');
}

export function describeSummary(s: TriageSummary, seconds: number): string {
  const share = s.candidates > 0 ? ((s.lightweight / s.candidates) * 100).toFixed(1) : '0.0';
  return [
    `${s.interrupted ? 'interrupted' : 'done'}: ${s.requests} requests, ${s.candidates} candidates`,
    `lightweight ${share}%`,
    `rejects ${s.rejects}`,
    `${formatRate(s.requests / Math.max(seconds, 1e-9))} requests, ${formatRate(s.candidates / Math.max(seconds, 1e-9))} candidates`,
    `in ${formatDuration(seconds)}`,
  ].join(', ');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    in: { type: 'string' },
    out: { type: 'string' },
    model: { type: 'string' },
    'top-k': { type: 'string' },
    workers: { type: 'string' },
    format: { type: 'string' },
    rejects: { type: 'string' },
    confidence: { type: 'string' },
    'max-uncertainty': { type: 'string' },
    quiet: { type: 'boolean' },
  });
  if (!values.in) throw new UsageError('--in FILE is required (- for stdin)');
  if (!values.out) throw new UsageError('--out FILE is required (- for stdout)');
  const format = values.format ?? 'json';
  if (format !== 'json' && format !== 'protobuf') throw new UsageError(`--format must be json or protobuf, got '${format}'`);
  const topK = values['top-k'] === undefined ? undefined : intArg('top-k', values['top-k'], 0, 1, 1000);
  const workers = values.workers === undefined ? undefined : intArg('workers', values.workers, 1, 1, 256);
  const confidence = values.confidence === undefined ? undefined : numberArg('confidence', values.confidence, 0, 0, 1);
  const maxU = values['max-uncertainty'] === undefined ? undefined : numberArg('max-uncertainty', values['max-uncertainty'], 0, 0, 1);

  let inputSize: number | undefined;
  if (values.in !== '-') {
    try {
      inputSize = statSync(values.in).size;
    } catch (err) {
      throw new UsageError(`--in ${values.in}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  }

  const { RouterPool } = await import('../../engine/pool/pool.js');
  const modelPath = values.model ?? (process.env.TD_MODEL_PATH || undefined);
  const pool = await RouterPool.create({
    ...(modelPath !== undefined ? { modelPath } : {}),
    ...(workers !== undefined ? { workers } : {}),
    ...(confidence !== undefined ? { confidenceThreshold: confidence } : {}),
    ...(maxU !== undefined ? { maxUncertainty: maxU } : {}),
  });

  const input = values.in === '-' ? process.stdin : createReadStream(values.in, { highWaterMark: 1024 * 1024 });
  const output = openOutput(values.out);
  const rejectsPath = values.rejects ?? (values.out === '-' ? undefined : `${values.out}.rejects.jsonl`);
  const rejects = rejectsPath === undefined ? process.stderr : createWriteStream(rejectsPath);
  const progress = values.quiet ? undefined : new Progress({ unit: 'requests', ...(inputSize !== undefined ? { total: inputSize } : {}) });

  // First Ctrl-C: stop reading and finish cleanly. A second one: leave at once.
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
    process.stderr.write('\ntriage: interrupted; finishing requests in flight (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const contentType = format === 'protobuf' ? 'protobuf' : 'json';
  // Enough requests in flight to keep every worker's batch full, few enough to bound memory.
  const window = Math.max(8, pool.workers * 32);
  const started = performance.now();
  try {
    const result = await triage({
      records: format === 'protobuf' ? readDelimited(input) : readLines(input),
      route: (bytes) => pool.routeEncoded(bytes, contentType),
      output,
      rejects,
      window,
      ...(topK !== undefined ? { topK } : {}),
      format: contentType,
      signal: controller.signal,
      ...(progress
        ? { onProgress: (s: TriageSummary, position: number) => progress.update({ done: s.requests, position, note: s.rejects > 0 ? `rejects ${s.rejects}` : '' }) }
        : {}),
    });
    progress?.finish();
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(`triage ${describeSummary(result, seconds)}${result.rejects > 0 && rejectsPath ? ` (see ${rejectsPath})` : ''}\n`);
    if (result.interrupted) return 130;
    return result.rejects > 0 ? 2 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (input !== process.stdin) (input as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
    await Promise.all([closeOutput(output), closeOutput(rejects)]);
    await pool.close({ timeout: 5000 });
  }
}
