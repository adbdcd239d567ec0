// Bulk triage: a stream of RoutingRequests in, one ranked answer per request out, in input
// order: the request's RoutingResponse as the responses topic carries it (wire/response.ts, the
// same encoder), a JSON line or a length-delimited protobuf message. Memory stays constant whatever the file size: at most `window` requests are in
// flight, the next record is read only when a slot frees, and output waits for the writer.
import type { Writable } from 'node:stream';
import { InvalidInputError, errorMessage, oneLine } from '../errors.js';
import type { RoutingResponse } from '../wire/types.js';
import { answerOf, encodeResponseDelimited, responseJson } from '../wire/response.js';
import { LineTooLongError, isBlank, type LineItem } from './lines.js';

/** One input record: its bytes and where it came from (line number, or record index). */
export type TriageRecord = LineItem;

export interface TriageOptions {
  records: AsyncIterable<TriageRecord>;
  /** Scores one encoded request; an InvalidInputError means the record is bad (a reject). */
  route: (bytes: Uint8Array) => Promise<RoutingResponse>;
  output: Writable;
  rejects: Writable;
  /** Keep only the best K decisions of each request (a request's own td-top-k wins). */
  topK?: number;
  /** JSON lines (the default), or length-delimited protobuf RoutingResponse messages. */
  format?: 'json' | 'protobuf';
  /** Requests in flight at once (bounded memory, enough to keep every worker busy). */
  window: number;
  /** Stops reading; what is in flight is finished and written, so the output ends on a whole line. */
  signal?: AbortSignal;
  onProgress?: (summary: TriageSummary, position: number) => void;
  /** Transient failures (a crashed worker) are retried this many times before giving up. */
  retries?: number;
}

export interface TriageSummary {
  requests: number;
  candidates: number;
  lightweight: number;
  rejects: number;
  interrupted: boolean;
}

interface Pending {
  number: number;
  result: Promise<RoutingResponse | InvalidInputError>;
}

function write(stream: Writable, text: string | Uint8Array): Promise<void> | undefined {
  // Honour backpressure: only wait when the writer's buffer is full.
  if (stream.write(text)) return undefined;
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.off('error', onError);
      resolve();
    };
    const onError = (err: Error) => {
      stream.off('drain', onDrain);
      reject(err);
    };
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

/** One request's answer as triage writes it: a JSON line, or a length-delimited protobuf message. */
export function answerRecord(response: RoutingResponse, topK?: number, format: 'json' | 'protobuf' = 'json'): string | Buffer {
  const answer = answerOf(response, topK);
  return format === 'protobuf' ? encodeResponseDelimited(answer) : `${responseJson(answer)}\n`;
}

export async function triage(options: TriageOptions): Promise<TriageSummary> {
  const summary: TriageSummary = { requests: 0, candidates: 0, lightweight: 0, rejects: 0, interrupted: false };
  const queue: Pending[] = [];
  const retries = options.retries ?? 2;
  let position = 0;

  const attempt = async (bytes: Uint8Array): Promise<RoutingResponse | InvalidInputError> => {
    for (let tries = 0; ; tries++) {
      try {
        return await options.route(bytes);
      } catch (err) {
        if (err instanceof InvalidInputError) return err;
        const retriable = (err as { retriable?: boolean }).retriable === true;
        if (!retriable || tries >= retries) throw err;
      }
    }
  };

  const reject = async (number: number, reason: string) => {
    summary.rejects += 1;
    await write(options.rejects, `${JSON.stringify({ line: number, reason: oneLine(reason) })}\n`);
  };

  const settleHead = async () => {
    const head = queue.shift()!;
    const result = await head.result;
    if (result instanceof InvalidInputError) {
      await reject(head.number, result.message);
      return;
    }
    summary.requests += 1;
    summary.candidates += result.candidates_processed;
    for (const d of result.decisions) if (d.use_lightweight) summary.lightweight += 1;
    await write(options.output, answerRecord(result, options.topK, options.format));
    options.onProgress?.(summary, position);
  };

  try {
    for await (const record of options.records) {
      if (options.signal?.aborted) {
        summary.interrupted = true;
        break;
      }
      if (record instanceof LineTooLongError) {
        // Keep output order simple: rejects are written as their turn comes, like results.
        queue.push({ number: record.lineNumber, result: Promise.resolve(record) });
      } else {
        position = record.offset;
        if (isBlank(record.bytes)) continue;
        const result = attempt(record.bytes);
        // A rejection is awaited in settleHead; mark it handled so a full window does not warn.
        result.catch(() => undefined);
        queue.push({ number: record.number, result });
      }
      while (queue.length >= options.window) await settleHead();
    }
    if (options.signal?.aborted) summary.interrupted = true;
    while (queue.length > 0) await settleHead();
  } catch (err) {
    // Finish what is already in flight so the output stays whole, then report the failure.
    await Promise.allSettled(queue.map((p) => p.result));
    throw new Error(`triage stopped: ${errorMessage(err)}`, { cause: err });
  }
  return summary;
}
