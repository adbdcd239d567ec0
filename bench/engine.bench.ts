// Engine benchmarks: the seed README's rows, plus throughput against the seed's own engine
// (@ruvector/tiny-dancer, native Rust via N-API) routing the same requests in the same run.
//
//   npm run bench                 (≈ 1–2 minutes)
//   BENCH_QUICK=1 npm run bench   (shorter rounds, for a smoke run)
//
// Method. The machine is shared and noisy, so every throughput figure is the MEDIAN of several
// rounds, and the rounds of the seed and of ours are interleaved (seed, Router, pool, seed, …) so
// that background load hits all of them alike; ratios are taken between those medians. Each
// round runs for a fixed time after its own warm-up. Micro rows (features, inference) use
// tinybench with an inner loop so timer overhead does not dominate sub-microsecond calls, and
// report the median per call.
//
// Workload: 384-dim embeddings (the seed's), random unit-ish vectors from a fixed seed,
// candidates with created_at / access_count / success_rate set, no metadata. The seed takes the
// same Float32Arrays (createdAt in milliseconds, its unit). The seed's Router is built with a
// model path that does not exist, which makes it use its built-in default FastGRNN — the same
// computation as with a file. Output: a markdown table on stdout and JSON in bench/results/.
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, cosineBatchScalar, extractFeatures } from '../src/engine/features.js';
import { loadModelFile, defaultModelPath, scoreBatch } from '../src/engine/model.js';
import { RouterPool } from '../src/engine/pool/pool.js';
import { Router } from '../src/engine/router.js';
import { cosineBatchSimd, stagingEmbeddings } from '../src/engine/simd/cosine.js';
import { scoreRowsSimd } from '../src/engine/simd/fastgrnn-simd.js';
import type { PackedRoutingRequest, RoutingDecision, RoutingRequest } from '../src/wire/types.js';
import { validateRequest, type ValidatedRequest } from '../src/engine/validate.js';
import { REASONS } from '../src/engine/pool/messages.js';
import { Rng } from '../src/train/rng.js';

const QUICK = process.env.BENCH_QUICK === '1';
const DIM = 384;
const NOW = 1_700_000_000;
const ROUND_MS = QUICK ? 250 : 1000;
const WARM_MS = QUICK ? 50 : 200;
const ROUNDS = QUICK ? 2 : 5;
const POOL_CONCURRENCY = [16, 64] as const;
/** Prefix of the throughput rows whose requests carry packed candidate_embeddings. */
const PACKED = 'packed:';

// ---------------------------------------------------------------------------------------------
// workload

function makeRequests(n: number, count: number, seed: number, idOf: (request: number, i: number) => string = (_k, i) => `cand-${i}`): RoutingRequest[] {
  const rng = new Rng(seed);
  const r = (): number => rng.next();
  const vec = (): Float32Array => Float32Array.from({ length: DIM }, () => r() * 2 - 1);
  return Array.from({ length: count }, (_, k) => ({
    request_id: `bench-${n}-${k}`,
    query_embedding: vec(),
    candidates: Array.from({ length: n }, (_, i) => ({
      id: idOf(k, i),
      embedding: vec(),
      created_at: NOW - Math.floor(r() * 86_400),
      access_count: Math.floor(r() * 1000),
      success_rate: r(),
    })),
  }));
}

/** The same request with its candidates' embeddings in one Float32Array (the library's packed input). */
function toPacked(req: RoutingRequest): PackedRoutingRequest {
  const all = new Float32Array(req.candidates.length * DIM);
  req.candidates.forEach((c, i) => all.set(c.embedding as Float32Array, i * DIM));
  return {
    request_id: req.request_id,
    query_embedding: req.query_embedding,
    candidates: req.candidates.map(({ embedding: _e, ...rest }) => rest),
    candidate_embeddings: all,
  };
}

interface SeedCandidate { id: string; embedding: Float32Array; createdAt: number; accessCount: number; successRate: number }
interface SeedRequest { queryEmbedding: Float32Array; candidates: SeedCandidate[] }
interface SeedRouter { route(req: SeedRequest): Promise<{ decisions: unknown[] }> }

function toSeed(req: RoutingRequest): SeedRequest {
  return {
    queryEmbedding: req.query_embedding as Float32Array,
    candidates: req.candidates.map((c) => ({
      id: c.id,
      embedding: c.embedding as Float32Array,
      createdAt: (c.created_at ?? 0) * 1000,
      accessCount: c.access_count ?? 0,
      successRate: c.success_rate ?? 0,
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// measurement helpers

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** CPU time (all threads of this process) per request of the last measured round, µs. */
let lastCpuUs = NaN;

/** Requests per second of a synchronous call, for ROUND_MS after a short warm-up. */
function syncRate(fn: (i: number) => void): number {
  const warm = performance.now() + WARM_MS;
  let i = 0;
  while (performance.now() < warm) fn(i++);
  let done = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + ROUND_MS;
  while (true) {
    for (let k = 0; k < 16; k++) fn(done++);
    if (performance.now() >= end) break;
  }
  const rate = done / ((performance.now() - t0) / 1000);
  const c = process.cpuUsage(c0);
  lastCpuUs = (c.user + c.system) / done;
  return rate;
}

/** Requests per second of an async call with `concurrency` callers in flight. */
async function asyncRate(fn: (i: number) => Promise<unknown>, concurrency: number): Promise<number> {
  const run = async (ms: number): Promise<number> => {
    let i = 0;
    let done = 0;
    const end = performance.now() + ms;
    const lane = async (): Promise<void> => {
      while (performance.now() < end) {
        await fn(i++);
        done++;
      }
    };
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: concurrency }, lane));
    const rate = done / ((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    lastCpuUs = (c.user + c.system) / done;
    return rate;
  };
  await run(WARM_MS);
  return run(ROUND_MS);
}

function fmtRate(x: number): string {
  return x >= 10_000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0);
}

function fmtUs(x: number): string {
  return x < 10 ? x.toFixed(2) : x.toFixed(1);
}

/**
 * Heap bytes allocated per call of `fn`: the growth of the used heap over a few calls right
 * after a full GC, median of many rounds (a round a scavenge interrupts reads low; the median
 * ignores it). The results are dropped at once, so the growth is what the calls allocated.
 */
function allocatedPerCall(fn: (i: number) => unknown, calls = 16, rounds = 41): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 2000; i++) fn(i);
  const xs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    gc();
    const h0 = getHeapStatistics().used_heap_size;
    for (let i = 0; i < calls; i++) fn(i);
    xs.push((getHeapStatistics().used_heap_size - h0) / calls);
  }
  return median(xs);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const require = createRequire(import.meta.url);
  const seedPkg = require('@ruvector/tiny-dancer') as { Router: new (cfg: { modelPath: string }) => SeedRouter };
  const seedVersion = (require('@ruvector/tiny-dancer/package.json') as { version: string }).version;
  const seed = new seedPkg.Router({ modelPath: '/nonexistent/seed-default.safetensors' });

  const sizes = [10, 50, 100] as const;
  const requests = new Map(sizes.map((n) => [n, makeRequests(n, 32, n)]));
  const seedRequests = new Map(sizes.map((n) => [n, requests.get(n)!.map(toSeed)]));
  const packedRequests = new Map(sizes.map((n) => [n, requests.get(n)!.map(toPacked)]));
  const features = { nowSeconds: NOW };
  const router = new Router({ features });
  const model = loadModelFile(defaultModelPath());

  // ----- micro rows (the seed README's table)
  const micro = new Bench({ time: QUICK ? 150 : 400, warmupTime: 50 });
  const microInner = new Map<string, number>();
  const microItems = new Map<string, number>();
  /** A row: `inner` calls per timed iteration, each handling `items` candidates. */
  const add = (name: string, inner: number, items: number, fn: () => void): void => {
    microInner.set(name, inner);
    microItems.set(name, items);
    micro.add(name, () => { for (let k = 0; k < inner; k++) fn(); });
  };
  for (const n of sizes) {
    const v = validateRequest(requests.get(n)![0]);
    const out = new Float32Array(n * FEATURE_COUNT);
    add(`feature extraction, ${n} candidates`, 4, n, () => extractFeatures(v, DEFAULT_FEATURE_CONFIG, out, NOW));
  }
  const featRows = new Float32Array(100 * FEATURE_COUNT);
  extractFeatures(validateRequest(requests.get(100)![0]), DEFAULT_FEATURE_CONFIG, featRows, NOW);
  const scores = new Float32Array(100);
  // The Router's path (the per-model SIMD cell), then ENGINE's float64 kernel that `model score` uses.
  add('inference, single', 200, 1, () => scoreRowsSimd(model.cell, featRows, 1, scores));
  add('inference, batch 10', 20, 10, () => scoreRowsSimd(model.cell, featRows, 10, scores));
  add('inference, batch 100', 2, 100, () => scoreRowsSimd(model.cell, featRows, 100, scores));
  add('inference, single (float64 kernel)', 200, 1, () => scoreBatch(model, featRows, 1, scores));
  add('inference, batch 100 (float64 kernel)', 2, 100, () => scoreBatch(model, featRows, 100, scores));
  for (const n of sizes) {
    const reqs = requests.get(n)!;
    let i = 0;
    add(`complete routing, ${n} candidates`, 2, n, () => router.route(reqs[i++ & 31]!));
  }
  // The same requests with their embeddings packed in one Float32Array each (copied in one
  // piece), and already in the Router's staging view (read in place: the caller's writing them
  // there is not timed, and they stay cache-hot).
  for (const n of sizes) {
    const reqs = packedRequests.get(n)!;
    let i = 0;
    add(`complete routing, ${n} candidates, packed candidate_embeddings`, 2, n, () => router.route(reqs[i++ & 31]!));
  }
  {
    // Ids as many callers have them: 36-character UUIDs, parsed from JSON like a request's. The
    // same requests otherwise, built the same way: candidates of another object shape would
    // make the Router's property loads polymorphic for the rows measured after this one.
    const rng = new Rng(4242);
    const hex = (k: number): string => Array.from({ length: k }, () => Math.floor(rng.next() * 16).toString(16)).join('');
    const uuids = JSON.parse(JSON.stringify(Array.from({ length: 32 }, () => Array.from({ length: 100 }, () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`)))) as string[][];
    const reqs = makeRequests(100, 32, 100, (k, i) => uuids[k]![i]!);
    let i = 0;
    add('complete routing, 100 candidates with UUID ids', 2, 100, () => router.route(reqs[i++ & 31]!));
  }
  {
    const src = packedRequests.get(100)!;
    const staged: PackedRoutingRequest[] = src.map((r) => ({ ...r, candidate_embeddings: new Float32Array(0) }));
    let i = 0;
    add('complete routing, 100 candidates, embeddings in the staging view (fill not timed)', 2, 100, () => {
      const r = staged[i++ & 31]!;
      r.candidate_embeddings = router.stagingEmbeddings(100, DIM); // the same view each time
      return router.route(r);
    });
    // fill it once with a real request's embeddings
    router.stagingEmbeddings(100, DIM).set(src[0]!.candidate_embeddings);
  }
  {
    // What bounds complete routing at 100 × 384: reading the request's 150 KB of embeddings. The
    // rows above rotate through 32 requests (4.9 MB, beyond the per-core cache), like traffic;
    // these copy the same arrays into the kernel's staging memory alone, rotating and hot.
    const reqs = requests.get(100)!;
    const copyAll = (req: RoutingRequest): void => {
      const stage = stagingEmbeddings(100, DIM); // (a view per call: memory growth would detach a kept one)
      const cands = req.candidates;
      for (let i = 0; i < 100; i++) stage.set(cands[i]!.embedding as Float32Array, i * DIM);
    };
    let i = 0;
    add('copy of the embeddings 100 × 384 into staging (32 requests rotating)', 2, 100, () => copyAll(reqs[i++ & 31]!));
    add('copy of the embeddings 100 × 384 into staging (one request, cache-hot)', 2, 100, () => copyAll(reqs[0]!));
    add('complete routing, 100 candidates (one request, cache-hot)', 2, 100, () => router.route(reqs[0]!));
  }
  {
    const v = validateRequest(requests.get(100)![0]);
    const out = new Float32Array(100);
    add('similarity 100 × 384, WASM SIMD', 4, 100, () => cosineBatchSimd(v.query, v.embeddings, 100, DIM, out));
    add('similarity 100 × 384, scalar JS', 1, 100, () => cosineBatchScalar(v.query, v.embeddings, 100, DIM, out));
  }
  await micro.run();
  const microRows = micro.tasks.map((t) => {
    const res = t.result as { latency?: { p50?: number } } | undefined;
    const p50ms = res?.latency?.p50 ?? NaN;
    const us = (p50ms * 1000) / microInner.get(t.name)!;
    return { name: t.name, us, items: microItems.get(t.name)! };
  });
  const perItem = (name: string, n: number): number => microRows.find((r) => r.name === name)!.us / n;

  // ----- heap allocated per request (what the GC must collect)
  // Router.route returns n fresh decision objects, which it must: the reference row builds that
  // same response (same shapes, same values) and nothing else. Router.rankValidated is what a
  // pool worker runs per task (on a request as the pool sends it: numbers and similarities).
  const heap: { name: string; bytes: number }[] = [];
  {
    const none = allocatedPerCall(() => null);
    heap.push({ name: 'measurement floor (an empty call)', bytes: none });
    for (const n of [10, 100] as const) {
      const reqs = requests.get(n)!;
      heap.push({ name: `Router.route, ${n} candidates`, bytes: allocatedPerCall((i) => router.route(reqs[i & 31]!)) });
      const sample = router.route(reqs[0]!);
      heap.push({
        name: `  of which the response itself (${n} decision objects, array, envelope)`,
        bytes: allocatedPerCall((k) => {
          const t = k * 1e-3;
          const src = sample.decisions;
          const decisions = new Array<RoutingDecision>(n);
          for (let r = 0; r < n; r++) {
            const d = src[r]!;
            decisions[r] = {
              request_id: d.request_id, candidate_id: d.candidate_id, confidence: d.confidence + t, uncertainty: d.uncertainty + t,
              use_lightweight: d.use_lightweight, rank: r, model_version: d.model_version, reason: d.reason, metadata: d.metadata,
              inference_time_us: 0, candidate_count: n, lightweight_count: 0, policy: d.policy,
            };
          }
          for (let r = 0; r < n; r++) {
            decisions[r]!.inference_time_us = 12.5 + t;
            decisions[r]!.lightweight_count = k & 7;
          }
          return { decisions, inference_time_us: 12.5 + t, feature_time_us: 1.5 + t, candidates_processed: n, policy: sample.policy };
        }),
      });
      const reduced: ValidatedRequest[] = reqs.map((q) => {
        const v = validateRequest(q);
        const sims = new Float32Array(n);
        for (let k = 0; k < n; k++) sims[k] = Math.cos(k);
        return { ...v, query: new Float32Array(0), embeddings: new Float32Array(0), similarity: sims, finitePending: false };
      });
      const results = new Float64Array(8 * n);
      heap.push({ name: `Router.rankValidated (pool worker, per task), ${n} candidates`, bytes: allocatedPerCall((i) => router.rankValidated(reduced[i & 31]!, results, 0, 5, REASONS)) });
    }
  }

  // ----- throughput: seed vs Router vs RouterPool, interleaved rounds
  const pools = [await RouterPool.create({ features })];
  const poolWorkers = pools[0]!.workers;
  if (availableParallelism() > 1) pools.push(await RouterPool.create({ features, workers: availableParallelism() }));

  interface Series { [key: string]: number[] }
  const tp = new Map<number, Series>();
  const cpu = new Map<number, Series>();
  const load0 = loadavg()[0]!;
  for (const n of [10, 100] as const) {
    const reqs = requests.get(n)!;
    const preqs = packedRequests.get(n)!;
    const sreqs = seedRequests.get(n)!;
    const s: Series = {};
    const cs: Series = {};
    const push = (k: string, v: number): void => {
      (s[k] ??= []).push(v);
      (cs[k] ??= []).push(lastCpuUs);
    };
    for (let round = 0; round < ROUNDS; round++) {
      push('seed c=1', await asyncRate((i) => seed.route(sreqs[i & 31]!), 1));
      push('seed c=16', await asyncRate((i) => seed.route(sreqs[i & 31]!), 16));
      push('Router (in-process)', syncRate((i) => router.route(reqs[i & 31]!)));
      for (const pool of pools) {
        for (const c of POOL_CONCURRENCY) push(`RouterPool ${pool.workers}w c=${c}`, await asyncRate((i) => pool.route(reqs[i & 31]!), c));
      }
      // the packed input (one Float32Array of embeddings per request): separate rows, never
      // counted against the goals, which are for the ordinary request
      push(`${PACKED} Router (in-process)`, syncRate((i) => router.route(preqs[i & 31]!)));
      const pool = pools[0]!;
      for (const c of POOL_CONCURRENCY) push(`${PACKED} RouterPool ${pool.workers}w c=${c}`, await asyncRate((i) => pool.route(preqs[i & 31]!), c));
    }
    tp.set(n, s);
    cpu.set(n, cs);
  }
  const load1 = loadavg()[0]!;
  for (const p of pools) await p.close();

  // ----- report
  const lines: string[] = [];
  const hw = `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, Node ${process.version}`;
  lines.push(`### Engine benchmark (${hw})`, '');
  lines.push('| operation | median | per item |', '| --- | ---: | ---: |');
  for (const r of microRows) {
    lines.push(`| ${r.name} | ${fmtUs(r.us)} µs | ${r.items > 1 ? `${fmtUs((r.us * 1000) / r.items)} ns` : ''} |`);
  }
  lines.push('');
  lines.push('Heap allocated per call (median of rounds of 16 calls after a full GC; includes the measurement floor):', '');
  lines.push('| call | bytes |', '| --- | ---: |');
  for (const h of heap) lines.push(`| ${h.name} | ${h.bytes.toFixed(0)} |`);
  lines.push('');
  const summary: Record<string, unknown> = {};
  lines.push(`Throughput, requests/s (median of ${ROUNDS} interleaved rounds of ${ROUND_MS} ms; seed = @ruvector/tiny-dancer ${seedVersion}; ` +
    `load average ${load0.toFixed(1)} → ${load1.toFixed(1)} on ${availableParallelism()} CPUs). CPU = process CPU time (all threads) per request:`, '');
  lines.push('| engine | 10 candidates | × seed best | CPU µs/req | 100 candidates | × seed best | CPU µs/req |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  const keys = Object.keys(tp.get(10)!);
  const med = (n: number, k: string): number => median(tp.get(n)![k]!);
  const medCpu = (n: number, k: string): number => median(cpu.get(n)![k]!);
  const seedBest = (n: number): number => Math.max(med(n, 'seed c=1'), med(n, 'seed c=16'));
  for (const k of keys) {
    const r10 = med(10, k);
    const r100 = med(100, k);
    lines.push(`| ${k} | ${fmtRate(r10)} | ${(r10 / seedBest(10)).toFixed(1)}× | ${medCpu(10, k).toFixed(1)} | ${fmtRate(r100)} | ${(r100 / seedBest(100)).toFixed(1)}× | ${medCpu(100, k).toFixed(1)} |`);
    summary[k] = {
      rps10: r10, rps100: r100, ratio10: r10 / seedBest(10), ratio100: r100 / seedBest(100),
      cpuUs10: medCpu(10, k), cpuUs100: medCpu(100, k), rounds10: tp.get(10)![k], rounds100: tp.get(100)![k],
    };
  }
  const routing100Us = microRows.find((r) => r.name === 'complete routing, 100 candidates')!.us;
  const singleUs = perItem('inference, single', 1);
  const batchUs = perItem('inference, batch 100', 100);
  const poolKeys = keys.filter((k) => k.startsWith(`RouterPool ${poolWorkers}w`));
  const packedPoolKeys = keys.filter((k) => k.startsWith(`${PACKED} RouterPool ${poolWorkers}w`));
  const bestOf = (n: number, ks: string[]): number => Math.max(...ks.map((k) => med(n, k)));
  const bestPool = (n: number): number => bestOf(n, poolKeys);
  const packedRouting100Us = microRows.find((r) => r.name === 'complete routing, 100 candidates, packed candidate_embeddings')!.us;
  const stagedRouting100Us = microRows.find((r) => r.name.startsWith('complete routing, 100 candidates, embeddings in the staging view'))!.us;
  const packedRouter = `${PACKED} Router (in-process)`;
  // What the two kernels alone take for 100 × 384: the similarity row copies the packed
  // embeddings into the kernel's memory (one memcpy, cache-hot) and runs the kernel; the cell
  // row scores 100 feature rows. No validation, features, ranking or decisions: a lower bound
  // on complete routing on this machine.
  const similarity100Us = microRows.find((r) => r.name === 'similarity 100 × 384, WASM SIMD')!.us;
  const kernelFloor100Us = similarity100Us + batchUs * 100;
  const targets = {
    routerPool10x: { ratio10: bestPool(10) / seedBest(10), ratio100: bestPool(100) / seedBest(100) },
    router10x: { ratio10: med(10, 'Router (in-process)') / seedBest(10), ratio100: med(100, 'Router (in-process)') / seedBest(100) },
    inferenceUs: { single: singleUs, perItemBatch100: batchUs },
    routing100Us,
    kernelFloor100Us,
    packed: {
      routerPool: { ratio10: bestOf(10, packedPoolKeys) / seedBest(10), ratio100: bestOf(100, packedPoolKeys) / seedBest(100) },
      router: { ratio10: med(10, packedRouter) / seedBest(10), ratio100: med(100, packedRouter) / seedBest(100) },
      routing100Us: packedRouting100Us,
      stagedRouting100Us,
    },
  };
  lines.push('');
  lines.push(`Targets: RouterPool (default ${poolWorkers} worker${poolWorkers > 1 ? 's' : ''}, best concurrency) ${targets.routerPool10x.ratio10.toFixed(1)}× / ${targets.routerPool10x.ratio100.toFixed(1)}× the seed's best (10 / 100 candidates, goal ≥ 10×); ` +
    `Router ${targets.router10x.ratio10.toFixed(1)}× / ${targets.router10x.ratio100.toFixed(1)}× (goal ≥ 10×); ` +
    `one FastGRNN inference ${(singleUs * 1000).toFixed(0)} ns single, ${(batchUs * 1000).toFixed(0)} ns per item in a batch of 100 (goal ≤ 80 ns); ` +
    `complete routing of 100 candidates ${fmtUs(routing100Us)} µs in-process (goal ≤ 15 µs).`);
  lines.push('');
  lines.push(`The kernels alone at 100 × 384 on this machine: similarity with its one copy ${fmtUs(similarity100Us)} µs + FastGRNN cell ${fmtUs(batchUs * 100)} µs = ` +
    `${fmtUs(kernelFloor100Us)} µs, before validation, features, ranking and decisions.`);
  lines.push('');
  lines.push(`Packed input (candidate_embeddings, not the goals' request): Router ${targets.packed.router.ratio10.toFixed(1)}× / ${targets.packed.router.ratio100.toFixed(1)}×, ` +
    `RouterPool ${targets.packed.routerPool.ratio10.toFixed(1)}× / ${targets.packed.routerPool.ratio100.toFixed(1)}× the seed's best; complete routing of 100 candidates ` +
    `${fmtUs(packedRouting100Us)} µs packed, ${fmtUs(stagedRouting100Us)} µs from the staging view.`);
  process.stdout.write(`${lines.join('\n')}\n`);

  const dir = fileURLToPath(new URL('./results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const record = {
    date: new Date().toISOString(), node: process.version, cpus: availableParallelism(), cpuModel: cpus()[0]?.model,
    quick: QUICK, roundMs: ROUND_MS, rounds: ROUNDS, seedVersion, poolWorkers, loadAverage: [load0, load1], modelVersion: model.version,
    micro: microRows.map((r) => ({ name: r.name, medianUs: r.us })), heap, throughput: summary, targets,
  };
  const json = `${JSON.stringify(record, null, 2)}\n`;
  writeFileSync(`${dir}engine-${record.date.replace(/[:.]/g, '-')}.json`, json);
  writeFileSync(`${dir}engine-latest.json`, json);
  process.stdout.write(`\nwrote bench/results/engine-latest.json\n`);
}

await main();
