// `tiny-dancer route`: one RoutingRequest (JSON) on stdin → its RoutingResponse (JSON) on stdout.
// WHY so thin: the same Router runs in the worker pool and behind gRPC `Route`; the CLI only
// adds stdin/stdout and turns bad input into exit 2 with one line (via InvalidInputError).
import { InvalidInputError } from '../../errors.js';
import { parseCommandArgs, numberArg } from '../args.js';

export const summary = 'route one RoutingRequest (JSON on stdin) and print its decisions (JSON)';
export const usage = `usage: tiny-dancer route [--model PATH] [--confidence X] [--max-uncertainty Y] [--pretty]

Reads ONE RoutingRequest as JSON from stdin (docs/contracts.md §1, snake_case) and prints the
RoutingResponse as JSON on stdout: decisions ordered by rank, inference_time_us,
feature_time_us, candidates_processed.

  --model PATH          model file (default: TD_MODEL_PATH or models/default.safetensors)
  --confidence X        confidence threshold in [0, 1] (default: the model's, else 0.85)
  --max-uncertainty Y   max uncertainty in [0, 1] (default: the model's, else 0.15)
  --pretty              indent the JSON output

Exit status: 0 ok, 2 bad arguments, bad model file or bad request, 1 other failures.`;

/** Largest stdin accepted: 1000 candidates × 4096 dims of JSON numbers fit well within it. */
const MAX_STDIN_BYTES = 512 * 1024 * 1024;

/** Where a command reads and writes; tests pass in-memory streams, the CLI the process's. */
export interface CommandIO {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
}

export const processIO = (): CommandIO => ({ stdin: process.stdin, stdout: process.stdout });

export async function readAll(stdin: NodeJS.ReadableStream, limit = MAX_STDIN_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stdin as AsyncIterable<Buffer | string>) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    total += b.length;
    if (total > limit) throw new InvalidInputError(`stdin is larger than ${limit} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function run(argv: string[], io: CommandIO = processIO()): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    model: { type: 'string' },
    confidence: { type: 'string' },
    'max-uncertainty': { type: 'string' },
    pretty: { type: 'boolean' },
  });
  const confidence = values.confidence === undefined ? undefined : numberArg('confidence', values.confidence, 0, 0, 1);
  const maxU = values['max-uncertainty'] === undefined ? undefined : numberArg('max-uncertainty', values['max-uncertainty'], 0, 0, 1);
  const { Router } = await import('../../engine/router.js');
  const modelPath = values.model ?? (process.env.TD_MODEL_PATH || undefined);
  const router = new Router({
    ...(modelPath !== undefined ? { modelPath } : {}),
    ...(confidence !== undefined ? { confidenceThreshold: confidence } : {}),
    ...(maxU !== undefined ? { maxUncertainty: maxU } : {}),
  });

  const text = await readAll(io.stdin);
  if (text.trim() === '') throw new InvalidInputError('no request on stdin (expected one RoutingRequest as JSON)');
  let request: unknown;
  try {
    request = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`malformed JSON on stdin: ${(err as Error).message}`);
  }
  // top_k is the engine's note of the request's td-top-k, not a field of the response.
  const { top_k: _topK, ...response } = router.route(request);
  io.stdout.write(`${JSON.stringify(response, null, values.pretty ? 2 : undefined)}\n`);
  return 0;
}
