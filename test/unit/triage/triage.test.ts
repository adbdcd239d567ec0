// The triage pipeline's own guarantees (order, bounded window, rejects, interruption) with a
// scorer that answers after random delays; the real RouterPool is exercised in the CLI tests.
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { InvalidInputError, TinyDancerError } from '../../../src/errors.js';
import type { RoutingResponse } from '../../../src/wire/types.js';
import { readLines } from '../../../src/triage/lines.js';
import { answerRecord, triage } from '../../../src/triage/triage.js';
import { encodeDelimited } from '../../../src/triage/delimited.js';
import { responseMessage } from '../../../src/stream/producer.js';
import { MessageLists, ROUTE } from '../../../src/stream/records.js';
import { decodeResponse } from '../../../src/wire/client.js';

const enc = new TextEncoder();

function sink(): { stream: Writable; text: () => string } {
  const parts: string[] = [];
  const stream = new Writable({
    highWaterMark: 64,
    write(chunk, _enc, cb) {
      parts.push(String(chunk));
      setImmediate(cb); // a slow writer, so backpressure paths run
    },
  });
  return { stream, text: () => parts.join('') };
}

async function* source(text: string, chunk = 7): AsyncGenerator<Uint8Array> {
  const bytes = enc.encode(text);
  for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
}

let inFlight = 0;
let maxInFlight = 0;
async function fakeRoute(bytes: Uint8Array): Promise<RoutingResponse> {
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  try {
    await new Promise((r) => setTimeout(r, Math.random() * 5));
    let req: { request_id: string; candidates: Array<{ id: string }> };
    try {
      req = JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      throw new InvalidInputError(`not JSON: ${(err as Error).message}`);
    }
    return {
      decisions: req.candidates.map((c, rank) => ({
        request_id: req.request_id, candidate_id: c.id, confidence: 1 - rank / 10, uncertainty: 0,
        use_lightweight: rank === 0, rank, model_version: 't', reason: 'model' as const, metadata: {}, inference_time_us: 1,
      })),
      inference_time_us: 1, feature_time_us: 1, candidates_processed: req.candidates.length,
    };
  } finally {
    inFlight--;
  }
}

const request = (i: number, n = 3) =>
  JSON.stringify({ request_id: `r${i}`, candidates: Array.from({ length: n }, (_, j) => ({ id: `c${j}` })) });

describe('triage output', () => {
  it('is the responses topic’s message: the same bytes, JSON or (length-delimited) protobuf', async () => {
    const response = await fakeRoute(enc.encode(request(1, 6)));
    response.top_k = 4;
    for (const format of ['json', 'protobuf'] as const) {
      const topic = new MessageLists();
      responseMessage(response, format, 2, {}, topic);
      const value = topic.lists[ROUTE.responses][0]!.value as Buffer;
      const record = answerRecord(response, 2, format);
      if (format === 'json') expect(record).toBe(`${value.toString('utf8')}\n`);
      else expect(Buffer.from(record).equals(Buffer.concat([encodeDelimited(value)]))).toBe(true);
      expect(decodeResponse(value, format).decisions).toHaveLength(4);
    }
  });
});

describe('triage pipeline', () => {
  it('writes one line per request in input order, bounded in flight, rejects with line numbers', async () => {
    inFlight = 0;
    maxInFlight = 0;
    const lines = Array.from({ length: 60 }, (_, i) => (i % 17 === 5 ? '{not json' : request(i)));
    lines.splice(10, 0, '   '); // blank lines are skipped, but still counted in numbering
    const out = sink();
    const rejects = sink();
    const summary = await triage({
      records: readLines(source(lines.join('\n') + '\n')),
      route: fakeRoute, output: out.stream, rejects: rejects.stream, window: 4, topK: 2,
    });
    const written = out.text().trim().split('\n').map((l) => JSON.parse(l));
    const badLines = lines.map((l, i) => (l.startsWith('{not') ? i + 1 : 0)).filter(Boolean);
    expect(summary.rejects).toBe(badLines.length);
    expect(summary.requests).toBe(lines.length - 1 - badLines.length);
    expect(written.map((w) => w.request_id)).toEqual(
      lines.filter((l) => l.startsWith('{"')).map((l) => JSON.parse(l).request_id),
    );
    expect(written.every((w) => w.decisions.length === 2 && w.decisions[0].rank === 0)).toBe(true);
    expect(rejects.text().trim().split('\n').map((l) => JSON.parse(l).line)).toEqual(badLines);
    expect(maxInFlight).toBeLessThanOrEqual(4);
    expect(summary.lightweight).toBe(summary.requests);
  });

  it('stops reading on abort and ends the output on a whole line', async () => {
    const controller = new AbortController();
    const input = new PassThrough();
    const out = sink();
    let routed = 0;
    const done = triage({
      records: readLines(input),
      route: async (b) => {
        routed++;
        if (routed === 5) controller.abort();
        return fakeRoute(b);
      },
      output: out.stream, rejects: sink().stream, window: 2, signal: controller.signal,
    });
    for (let i = 0; i < 50; i++) input.write(`${request(i)}\n`);
    input.end();
    const summary = await done;
    expect(summary.interrupted).toBe(true);
    expect(summary.requests).toBeLessThan(50);
    expect(out.text().endsWith('\n')).toBe(true);
    expect(out.text().trim().split('\n')).toHaveLength(summary.requests);
  });

  it('retries a retriable failure, and fails loudly on a persistent one', async () => {
    let calls = 0;
    const flaky = async (b: Uint8Array) => {
      if (calls++ === 0) throw new TinyDancerError('worker crashed', { retriable: true });
      return fakeRoute(b);
    };
    const ok = await triage({ records: readLines(source(`${request(1)}\n`)), route: flaky, output: sink().stream, rejects: sink().stream, window: 2 });
    expect(ok.requests).toBe(1);
    const broken = async () => {
      throw new TinyDancerError('engine gone', { retriable: false });
    };
    await expect(
      triage({ records: readLines(source(`${request(1)}\n`)), route: broken, output: sink().stream, rejects: sink().stream, window: 2 }),
    ).rejects.toThrow(/triage stopped: engine gone/);
  });
});
