// Trace context followed with a client we did not write: kcat (librdkafka) produces requests
// with W3C traceparent/tracestate headers to a `serve` child process that registers no
// OpenTelemetry SDK; kcat reads the decision records back with the same headers, as received,
// and each decision's row holds the trace id. A bad TD_TRACING stops serve with exit 2.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { serveArgv, startServe, type ServeChild } from './child.js';
import { deleteTopics, dropSchema, envFor, kafkaBrokers, makeRequest, names, query, waitFor } from './helpers.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'td-trace-kcat-'));
let serve: ServeChild | undefined;
const n = names('trkcat');

const TRACE_A = '0af7651916cd43dd8448eb211c80319c';
const TRACE_B = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_A = `00-${TRACE_A}-b7ad6b7169203331-01`;
const STATE_A = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
const PARENT_B = `00-${TRACE_B}-00f067aa0ba902b7-00`;

afterAll(async () => {
  if (serve) {
    serve.kill('SIGTERM');
    await serve.exited;
  }
  await dropSchema(n.schema);
  await deleteTopics(n);
  rmSync(dir, { recursive: true, force: true });
});

async function kcatAvailable(): Promise<boolean> {
  try {
    await run('kcat', ['-V']);
    return true;
  } catch {
    return false;
  }
}

/** Produces `lines` (key<TAB>value), every record with the headers given. */
function kcatProduce(topic: string, lines: string[], headers: Record<string, string>): Promise<void> {
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}=${v}`]);
  return new Promise((resolve, reject) => {
    const p = spawn('kcat', ['-P', '-b', kafkaBrokers().join(','), '-t', topic, '-K', '\t', ...h]);
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kcat -P exited ${code}: ${err}`))));
    p.stdin.end(`${lines.join('\n')}\n`);
  });
}

interface Read {
  key: string;
  headers: Map<string, string>;
}

/** Reads a whole topic with kcat: each record's key and headers (kcat's %h: "k=v,k=v"). */
async function kcatConsume(topic: string): Promise<Read[]> {
  // A tracestate value holds commas, so %h is split where a header we expect begins, not at
  // every comma.
  const { stdout } = await run('kcat', ['-C', '-b', kafkaBrokers().join(','), '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%k\t%h\n'], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const [key, h = ''] = l.split('\t');
      const headers = new Map<string, string>();
      for (const m of h.matchAll(/(?:^|,)(content-type|td-model-version|td-correlation-id|traceparent|tracestate)=(.*?)(?=,(?:content-type|td-model-version|td-correlation-id|traceparent|tracestate)=|$)/g)) {
        headers.set(m[1]!, m[2]!);
      }
      return { key: key!, headers };
    });
}

describe('trace context with kcat against serve (no SDK registered)', () => {
  it('decision records carry the request record traceparent and tracestate as received, and rows the trace id', async (ctx) => {
    if (!(await kcatAvailable())) {
      process.stderr.write('trace kcat test skipped: kcat is not installed (apt-get install kcat)\n');
      ctx.skip();
    }
    serve = await startServe(envFor(n), join(dir, 'serve.log'));
    const a = Array.from({ length: 3 }, (_, i) => makeRequest(`tra-${i}`, 3, 8));
    const b = [makeRequest('trb-0', 2, 8)];
    const none = [makeRequest('trn-0', 2, 8)];
    const line = (r: { request_id: string }) => `${r.request_id}\t${JSON.stringify(r)}`;
    await kcatProduce(n.requests, a.map(line), { traceparent: PARENT_A, tracestate: STATE_A });
    await kcatProduce(n.requests, b.map(line), { traceparent: PARENT_B });
    await kcatProduce(n.requests, none.map(line), {});

    const expected = 3 * 3 + 2 + 2;
    let all: Read[] = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      all = (await Promise.all([kcatConsume(n.lightweight), kcatConsume(n.heavyweight)])).flat();
      if (all.length >= expected) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(all).toHaveLength(expected);
    for (const rec of all) {
      const h = rec.headers;
      expect(h.get('content-type')).toBe('application/json');
      if (rec.key.startsWith('tra-')) {
        expect(h.get('traceparent')).toBe(PARENT_A);
        expect(h.get('tracestate')).toBe(STATE_A);
      } else if (rec.key.startsWith('trb-')) {
        expect(h.get('traceparent')).toBe(PARENT_B);
        expect(h.has('tracestate')).toBe(false);
      } else {
        expect(rec.key).toBe('trn-0');
        expect(h.has('traceparent')).toBe(false);
        expect(h.has('tracestate')).toBe(false);
      }
    }

    await waitFor(async () => (await query(`SELECT 1 FROM "${n.schema}".routing_decisions`)).length >= expected, 60_000, 'every decision as a row');
    const rows = await query<{ request_id: string; trace_id: string | null; n: string }>(
      `SELECT request_id, trace_id, count(*) AS n FROM "${n.schema}".routing_decisions GROUP BY request_id, trace_id ORDER BY request_id`,
    );
    expect(rows.map((r) => ({ ...r, n: Number(r.n) }))).toEqual([
      ...a.map((r) => ({ request_id: r.request_id, trace_id: TRACE_A, n: 3 })),
      { request_id: 'trb-0', trace_id: TRACE_B, n: 2 },
      { request_id: 'trn-0', trace_id: null, n: 2 },
    ]);
  });

  it('TD_TRACING other than on/off: serve exits 2 with one line naming it', async () => {
    const child = spawn(process.execPath, [...serveArgv()], {
      cwd: fileURLToPath(new URL('../../../', import.meta.url)),
      env: { ...process.env, ...envFor(n), TD_TRACING: 'sometimes' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(err.trim().split('\n')).toHaveLength(1);
    expect(err).toMatch(/TD_TRACING="sometimes" is invalid: expected on or off/);
  });
});
