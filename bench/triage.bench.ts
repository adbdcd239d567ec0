// Triage throughput and memory, against the RouterPool alone on the same requests, in one run.
//
//   node --import tsx bench/triage.bench.ts [--requests 2000] [--candidates 100] [--dim 384]
//        [--workers N] [--size-mb M]
//
// Baseline: the same encoded requests pushed straight into pool.routeEncoded with the same
// window (decode + validate + score on the workers, no file, no output). Triage adds reading and
// splitting the file, ordering and writing the output. Goal: triage ≥ 80 % of the baseline.
// --size-mb writes a file of about that size instead (repeating the generated requests) and
// reports peak RSS during triage, to show memory stays flat whatever the input size.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { RouterPool } from '../src/engine/pool/pool.js';
import { Rng } from '../src/train/rng.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    candidates: { type: 'string', default: '100' },
    dim: { type: 'string', default: '384' },
    workers: { type: 'string' },
    'size-mb': { type: 'string' },
  },
});
const N = Number(values.requests);
const C = Number(values.candidates);
const DIM = Number(values.dim);
const root = resolve(import.meta.dirname, '..');

function requestLine(i: number, rand: () => number, now: number): string {
  const vec = () => Array.from({ length: DIM }, () => Math.round((rand() - 0.5) * 1e4) / 1e4);
  return JSON.stringify({
    request_id: `r${i}`,
    query_embedding: vec(),
    metadata: { team: i % 3 ? 'search' : 'support' },
    candidates: Array.from({ length: C }, (_, j) => ({
      id: `m${j}`,
      embedding: vec(),
      created_at: now - Math.floor(rand() * 2_592_000),
      access_count: Math.floor(rand() * 500),
      success_rate: Math.round(rand() * 100) / 100,
      metadata: { team: j % 2 ? 'search' : 'support' },
    })),
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'td-triage-bench-'));
  const seeded = new Rng(42);
const rand = (): number => seeded.next();
  const now = Math.floor(Date.now() / 1000);
  const distinct = Math.min(N, 500);
  const lines = Array.from({ length: distinct }, (_, i) => requestLine(i, rand, now));
  const input = join(dir, 'requests.jsonl');
  const target = values['size-mb'] ? Number(values['size-mb']) * 1024 * 1024 : undefined;
  const writer = createWriteStream(input);
  let written = 0;
  let count = 0;
  while (target !== undefined ? written < target : count < N) {
    const line = `${lines[count % distinct]}\n`;
    if (!writer.write(line)) await once(writer, 'drain');
    written += line.length;
    count++;
  }
  writer.end();
  await once(writer, 'finish');
  const requests = count;
  process.stderr.write(`input: ${requests} requests × ${C} candidates × ${DIM} dims, ${(statSync(input).size / 1e6).toFixed(1)} MB\n`);

  const workers = values.workers ? Number(values.workers) : undefined;
  let baselineRps = NaN;
  if (target === undefined) {
    // Baseline: the pool alone, same bytes, same window as triage uses.
    const pool = await RouterPool.create(workers ? { workers } : {});
    const window = Math.max(8, pool.workers * 32);
    const encoded = lines.map((l) => new TextEncoder().encode(l));
    for (let i = 0; i < 200; i++) await pool.routeEncoded(encoded[i % distinct]!, 'json'); // warm-up
    const t0 = performance.now();
    const inflight = new Set<Promise<unknown>>();
    for (let i = 0; i < requests; i++) {
      const p = pool.routeEncoded(encoded[i % distinct]!, 'json').finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= window) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    baselineRps = requests / ((performance.now() - t0) / 1000);
    await pool.close();
  }

  // Triage as a user runs it: the CLI in its own process, so its RSS is measured alone.
  const out = join(dir, 'out.jsonl');
  const args = ['bin/tiny-dancer.js', 'triage', '--in', input, '--out', out, '--quiet', ...(workers ? ['--workers', String(workers)] : [])];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let peakRss = 0;
  const sampler = setInterval(() => {
    try {
      // VmRSS of the child (and its worker threads: same process) from /proc.
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      peakRss = Math.max(peakRss, kb * 1024);
    } catch {
      /* exited */
    }
  }, 100);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number];
  clearInterval(sampler);
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`triage exited ${code}: ${stderr}`);
  const triageRps = requests / seconds;

  const rows = [
    ['measure', 'value'],
    ['requests', String(requests)],
    ['triage (CLI, incl. start-up) req/s', triageRps.toFixed(0)],
    ['triage candidates/s', (triageRps * C).toFixed(0)],
    ['peak RSS of triage', `${(peakRss / 1e6).toFixed(0)} MB`],
  ];
  if (Number.isFinite(baselineRps)) {
    rows.push(['RouterPool alone (routeEncoded) req/s', baselineRps.toFixed(0)]);
    rows.push(['triage / RouterPool', `${((triageRps / baselineRps) * 100).toFixed(0)} %`]);
  }
  console.log(rows.map((r) => `| ${r.join(' | ')} |`).join('\n'));
  rmSync(dir, { recursive: true, force: true });
}

await main();
