// RouterPool against real worker threads (no mocks): results equal the in-process Router's,
// crashes fail exactly the lost tasks and the pool recovers, reloads are atomic under load,
// bad models are refused, the queue is bounded and close() is bounded.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError, ModelError } from '../../../../src/errors.js';
import { defaultModelPath } from '../../../../src/engine/model.js';
import { PoolClosedError, PoolSaturatedError, WorkerCrashedError } from '../../../../src/engine/pool/errors.js';
import { RouterPool } from '../../../../src/engine/pool/pool.js';
import { Router } from '../../../../src/engine/router.js';
import { readSafetensors, writeSafetensors } from '../../../../src/engine/safetensors.js';
import type { RoutingRequest, RoutingResponse } from '../../../../src/wire/types.js';
import { EMPTY_METADATA, validateRequest } from '../../../../src/engine/validate.js';
import { FEATURE_COUNT, extractFeatures, resolveFeatureConfig } from '../../../../src/engine/features.js';
import { encodeRequest } from '../../../../src/wire/index.js';

const NOW = 1_700_000_000;
const features = { nowSeconds: NOW };

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

function request(seed: number, n: number, dim = 16, opts: { metadata?: boolean; arrays?: boolean } = {}): RoutingRequest {
  const meta = (i: number): Record<string, string> => (opts.metadata ? { tier: i % 2 ? 'a' : 'b', model: `m${i}` } : {});
  const r = rng(seed);
  const vec = (): Float32Array | number[] => {
    const v = Float32Array.from({ length: dim }, () => r() * 2 - 1);
    return opts.arrays ? Array.from(v) : v;
  };
  return {
    request_id: `req-${seed}`,
    query_embedding: vec(),
    candidates: Array.from({ length: n }, (_, i) => ({
      id: `c${seed}-${i}`,
      embedding: vec(),
      created_at: NOW - Math.floor(r() * 5000),
      access_count: Math.floor(r() * 500),
      success_rate: r(),
      metadata: meta(i),
    })),
    ...(opts.metadata ? { metadata: { tier: 'a' } } : {}),
  };
}

/** A response without its timing fields, which differ run to run. */
function stable(res: RoutingResponse): unknown {
  return {
    candidates_processed: res.candidates_processed,
    decisions: res.decisions.map(({ inference_time_us: _t, ...d }) => d),
  };
}

/** The default model re-labelled `version` (same weights). */
function relabelled(version: string): Uint8Array {
  const { tensors, metadata } = readSafetensors(readFileSync(defaultModelPath()));
  return writeSafetensors(tensors, { ...metadata, version });
}

describe('RouterPool', () => {
  let pool: RouterPool;
  const router = new Router({ features });

  beforeAll(async () => {
    pool = await RouterPool.create({ workers: 2, features });
  });
  afterAll(async () => {
    await pool.close();
  });

  it('routes exactly like the in-process Router (objects, arrays, metadata, pre-validated, 1..300 candidates)', async () => {
    const reqs = [
      request(1, 1), request(2, 7), request(3, 50, 384), request(4, 300, 8),
      request(5, 20, 5, { metadata: true }), request(6, 13, 33, { arrays: true }),
    ];
    const pooled = await Promise.all([...reqs.map((r) => pool.route(r)), pool.route(validateRequest(reqs[2]))]);
    const local = [...reqs.map((r) => router.route(r)), router.route(reqs[2])];
    expect(pooled.map(stable)).toEqual(local.map(stable));
    for (const res of pooled) {
      expect(res.inference_time_us).toBeGreaterThan(0);
      expect(res.decisions.every((d) => d.inference_time_us === res.inference_time_us)).toBe(true);
    }
  });

  it('keeps every answer with its own request when hundreds are in flight across both workers', async () => {
    const reqs = Array.from({ length: 400 }, (_, k) => request(100 + k, 1 + (k % 17), 24));
    const res = await Promise.all(reqs.map((r) => pool.route(r)));
    res.forEach((r, k) => expect(stable(r)).toEqual(stable(router.route(reqs[k]))));
    expect(pool.stats()).toMatchObject({ workers: 2, inFlight: 0, queued: 0 });
  });

  it('rejects invalid input with the Router\'s own message, including a NaN found on the worker', async () => {
    const dup = request(7, 3);
    dup.candidates[2]!.id = dup.candidates[0]!.id;
    const nan = request(8, 5);
    (nan.candidates[3]!.embedding as Float32Array)[2] = Number.NaN;
    const inf = request(9, 2, 4, { arrays: true });
    (inf.candidates[1]!.embedding as number[])[0] = Number.POSITIVE_INFINITY;
    for (const bad of [dup, nan, inf, { request_id: 'x' }, null]) {
      let local: unknown;
      try { router.route(bad); } catch (e) { local = e; }
      expect(local).toBeInstanceOf(InvalidInputError);
      const err = await pool.route(bad).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message).toBe((local as Error).message);
    }
    expect((await pool.route(nan).catch((e: Error) => e.message))).toMatch(/^candidates\[3\] \(id "c8-3"\): embedding\[2\] is NaN/);
    // the pool is unaffected
    expect(stable(await pool.route(request(10, 4)))).toEqual(stable(router.route(request(10, 4))));
  });

  it('decodes JSON and protobuf on the worker (routeEncoded) with the same results, and bad bytes as DecodeError', async () => {
    const req = request(11, 9, 12);
    const want = stable(router.route(req));
    expect(stable(await pool.routeEncoded(encodeRequest(req, 'json'), 'json'))).toEqual(want);
    expect(stable(await pool.routeEncoded(encodeRequest(req, 'protobuf'), 'protobuf'))).toEqual(want);
    const err = await pool.routeEncoded(Buffer.from('{"request_id": '), 'json').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error & { kind?: string }).kind).toBe('json');
    const bad = await pool.routeEncoded(encodeRequest({ ...req, candidates: [] }, 'json'), 'json').catch((e: unknown) => e);
    expect((bad as Error).message).toMatch(/candidates/);
    const big = await pool.routeEncoded(encodeRequest(req, 'json'), 'json', { maxBytes: 100 }).catch((e: unknown) => e);
    expect((big as Error & { kind?: string }).kind).toBe('too_large');
  });

  it('every decision says how many candidates its request had and how many went lightweight; td-top-k is passed on', async () => {
    const req = { ...request(12, 40, 8), metadata: { 'td-top-k': '3' } };
    const results = [
      router.route(req),
      await pool.route(req),
      await pool.route(validateRequest(req)),
      await pool.routeEncoded(encodeRequest(req, 'json'), 'json'),
      await pool.routeEncoded(encodeRequest(req, 'protobuf'), 'protobuf'),
    ];
    for (const res of results) {
      const light = res.decisions.filter((d) => d.use_lightweight).length;
      expect(res.decisions.every((d) => d.candidate_count === 40 && d.lightweight_count === light)).toBe(true);
      expect(res.top_k).toBe(3);
      expect(res.decisions).toHaveLength(40);
    }
    expect((await pool.route(request(13, 4))).top_k).toBeUndefined();
    expect((await pool.routeEncoded(encodeRequest(request(13, 4), 'json'), 'json')).top_k).toBeUndefined();
  });

  it('applies thresholds in every worker before resolving', async () => {
    // candidates spread over every feature, so some score high and some low under any sane model
    const reqs = Array.from({ length: 20 }, (_, k) => {
      const r = request(200 + k, 12);
      r.candidates.forEach((c, i) => {
        c.embedding = Float32Array.from(r.query_embedding as Float32Array, (x, j) => (i % 3 === 0 ? x : (j % 2 ? -x : x) * (i / 12)));
        c.created_at = NOW - (i % 4) * 2000;
        c.success_rate = ((i * 7) % 12) / 11;
        c.access_count = (i % 5) * 2000;
      });
      return r;
    });
    const run = async (t: { confidence: number; maxUncertainty: number }): Promise<unknown[]> => {
      await pool.setThresholds(t);
      expect(pool.thresholds).toEqual(t);
      const local = new Router({ features, confidenceThreshold: t.confidence, maxUncertainty: t.maxUncertainty });
      const res = (await Promise.all(reqs.map((r) => pool.route(r)))).map(stable);
      expect(res).toEqual(reqs.map((r) => stable(local.route(r))));
      return res;
    };
    const loose = await run({ confidence: 0, maxUncertainty: 1 });
    const strict = await run({ confidence: 1, maxUncertainty: 0 });
    expect(loose).not.toEqual(strict); // the change is visible in the decisions
    await expect(pool.setThresholds({ confidence: 2 })).rejects.toBeInstanceOf(InvalidInputError);
    await pool.setThresholds({ confidence: 0.85, maxUncertainty: 0.15 });
  });
});

describe('RouterPool reload', () => {
  it('swaps the model atomically under load: nothing fails, no response mixes, all later requests use the new one', async () => {
    const pool = await RouterPool.create({ workers: 2, features });
    try {
      const oldVersion = pool.modelVersion;
      const results: { res: RoutingResponse; afterReload: boolean }[] = [];
      let reloaded = false;
      let stop = false;
      const lane = async (k: number): Promise<void> => {
        for (let i = 0; !stop; i++) {
          const after = reloaded;
          const res = await pool.route(request(1000 * k + i, 1 + (i % 30), 32));
          results.push({ res, afterReload: after });
        }
      };
      const lanes = Array.from({ length: 12 }, (_, k) => lane(k));
      await new Promise((r) => setTimeout(r, 150));
      const { version } = await pool.reload({ bytes: relabelled('reload-B'), source: 'test B' });
      reloaded = true;
      expect(version).toBe('reload-B');
      expect(pool.modelVersion).toBe('reload-B');
      await new Promise((r) => setTimeout(r, 150));
      stop = true;
      await Promise.all(lanes); // a failed route would reject here

      const versions = (r: RoutingResponse): Set<string> => new Set(r.decisions.map((d) => d.model_version));
      for (const { res } of results) {
        expect(versions(res).size).toBe(1);
        expect([oldVersion, 'reload-B']).toContain(res.decisions[0]!.model_version);
      }
      const after = results.filter((r) => r.afterReload);
      expect(after.length).toBeGreaterThan(0);
      for (const { res } of after) expect(res.decisions[0]!.model_version).toBe('reload-B');
      expect(results.some((r) => !r.afterReload && r.res.decisions[0]!.model_version === oldVersion)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('refuses a bad model (bytes, wrong features, missing file) and keeps the old one', async () => {
    const pool = await RouterPool.create({ workers: 1, features });
    try {
      const before = pool.modelVersion;
      await expect(pool.reload({ bytes: new Uint8Array([1, 2, 3]) })).rejects.toBeInstanceOf(ModelError);
      const { tensors, metadata } = readSafetensors(readFileSync(defaultModelPath()));
      const wrongFeatures = writeSafetensors(tensors, { ...metadata, version: 'wrong', features: JSON.stringify(['a', 'b', 'c', 'd', 'e']) });
      await expect(pool.reload({ bytes: wrongFeatures })).rejects.toThrow(/features/);
      await expect(pool.reload('/nonexistent/model.safetensors')).rejects.toBeInstanceOf(ModelError);
      expect(pool.modelVersion).toBe(before);
      const res = await pool.route(request(1, 3));
      expect(res.decisions[0]!.model_version).toBe(before);
    } finally {
      await pool.close();
    }
  });
});

describe('RouterPool failures and shutdown', () => {
  it('fails the tasks of a crashed worker with WorkerCrashedError and replaces the worker', async () => {
    const pool = await RouterPool.create({ workers: 1, features, testHooks: true });
    try {
      expect((await pool.route(request(1, 3))).decisions).toHaveLength(3);
      // Enqueue, then crash before the batches are posted: the exit message is ahead of them.
      // Batches posted to the dying worker fail with WorkerCrashedError; batches still queued
      // here when it died (the pool sizes batches from the load, so five requests may be split)
      // wait for the replacement and succeed.
      const doomed = Array.from({ length: 5 }, (_, k) => pool.route(request(10 + k, 4)));
      pool.crashWorkerForTest(0, 7);
      const settled = await Promise.allSettled(doomed);
      let crashed = 0;
      for (const [k, s] of settled.entries()) {
        if (s.status === 'fulfilled') {
          expect(stable(s.value)).toEqual(stable(new Router({ features }).route(request(10 + k, 4))));
          continue;
        }
        crashed++;
        const err = s.reason as WorkerCrashedError;
        expect(err).toBeInstanceOf(WorkerCrashedError);
        expect(err.retriable).toBe(true);
        expect(err.message).toMatch(/exited with code 7/);
      }
      expect(crashed).toBeGreaterThan(0);
      // FIFO: what was posted first failed, so no success precedes a failure
      const firstOk = settled.findIndex((s) => s.status === 'fulfilled');
      if (firstOk >= 0) expect(settled.slice(firstOk).every((s) => s.status === 'fulfilled')).toBe(true);
      // replaced: the next request succeeds on the new worker
      const after = await pool.route(request(20, 6));
      expect(stable(after)).toEqual(stable(new Router({ features }).route(request(20, 6))));
      expect(pool.stats()).toMatchObject({ crashes: 1, workers: 1, inFlight: 0 });
    } finally {
      await pool.close();
    }
  });

  it('rejects with PoolSaturatedError instead of queueing without bound', async () => {
    const pool = await RouterPool.create({ workers: 1, features, maxQueue: 3 });
    try {
      const all = await Promise.allSettled(Array.from({ length: 10 }, (_, k) => pool.route(request(k, 2))));
      const ok = all.filter((s) => s.status === 'fulfilled');
      const refused = all.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(ok).toHaveLength(3);
      expect(refused).toHaveLength(7);
      for (const r of refused) {
        expect(r.reason).toBeInstanceOf(PoolSaturatedError);
        expect((r.reason as PoolSaturatedError).retriable).toBe(true);
      }
      expect((await pool.route(request(99, 2))).decisions).toHaveLength(2);
    } finally {
      await pool.close();
    }
  });

  it('close({ timeout }) is bounded: stops accepting, rejects unfinished work, terminates the workers', async () => {
    const pool = await RouterPool.create({ workers: 1, features, maxQueue: 10_000, maxQueueBytes: 1 << 30 });
    const big = Array.from({ length: 4 }, (_, k) => request(500 + k, 1000, 384));
    // ~60 MB of work, far more than 30 ms of it; each promise gets its handler at once
    const work = Array.from({ length: 40 }, (_, k) => pool.route(big[k % big.length]).then(
      (value) => ({ status: 'fulfilled' as const, value }),
      (reason: unknown) => ({ status: 'rejected' as const, reason }),
    ));
    const t0 = performance.now();
    await pool.close({ timeout: 30 });
    const took = performance.now() - t0;
    expect(took).toBeLessThan(2000);
    const settled = await Promise.all(work);
    const closed = settled.filter((s) => s.status === 'rejected');
    expect(closed.length).toBeGreaterThan(0);
    for (const c of closed) expect(c.reason).toBeInstanceOf(PoolClosedError);
    expect(pool.stats()).toMatchObject({ workers: 0, inFlight: 0, queued: 0 });
    await expect(pool.route(request(1, 2))).rejects.toBeInstanceOf(PoolClosedError);
    await expect(pool.close()).resolves.toBeUndefined();
  });

  it('close() lets in-flight work finish when it can', async () => {
    const pool = await RouterPool.create({ workers: 1, features });
    const work = Array.from({ length: 50 }, (_, k) => pool.route(request(k, 10)));
    await pool.close({ timeout: 20_000 });
    const settled = await Promise.allSettled(work);
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
  });

  it('refuses a bad model at create()', async () => {
    await expect(RouterPool.create({ workers: 1, model: { bytes: new Uint8Array(16) } })).rejects.toBeInstanceOf(ModelError);
    await expect(RouterPool.create({ workers: 0 })).rejects.toBeInstanceOf(InvalidInputError);
  });
});

describe('RouterPool responses', () => {
  it('a burst of small requests after a quiet spell keeps small arenas, not a 256 KiB one per batch', async () => {
    const pool = await RouterPool.create({ workers: 1, features });
    try {
      // A quiet spell: one request at a time sizes the batches to 1 task.
      for (let i = 0; i < 3; i++) await pool.route(request(100 + i, 10, 384));
      // Then a burst, all queued before the pool re-sizes: dozens of small batches at once.
      const burst = Array.from({ length: 64 }, (_, i) => request(200 + i, 10, 384));
      const answers = await Promise.all(burst.map((r) => pool.route(r)));
      expect(answers.every((a) => a.decisions.length === 10)).toBe(true);
      // With a 256 KiB arena per batch the pool kept ~16 MB after this burst.
      expect(pool.stats().arenaBytes).toBeGreaterThan(0);
      expect(pool.stats().arenaBytes).toBeLessThanOrEqual(64 * 32 * 1024 + 3 * 256 * 1024);
    } finally {
      await pool.close();
    }
  });

  it('returnFeatures: every decision\'s feature vector, in rank order, as the engine computes it', async () => {
    const pool = await RouterPool.create({ workers: 1, features, returnFeatures: true });
    const plain = await RouterPool.create({ workers: 1, features });
    try {
      for (const [seed, req] of [[31, request(31, 12, 24, { metadata: true })], [32, request(32, 7)]] as const) {
        const res = await pool.route(req);
        const v = validateRequest(req);
        const expected = new Float32Array(v.n * FEATURE_COUNT);
        extractFeatures(v, resolveFeatureConfig(features), expected, NOW);
        expect(res.features, `request ${seed}`).toHaveLength(v.n * FEATURE_COUNT);
        res.decisions.forEach((d, r) => {
          const i = v.ids.indexOf(d.candidate_id);
          for (let k = 0; k < FEATURE_COUNT; k++) expect(res.features![r * FEATURE_COUNT + k]).toBeCloseTo(expected[i * FEATURE_COUNT + k]!, 6);
        });
        // The same decisions as a pool without them, and that one sends none.
        const other = await plain.route(req);
        expect(stable(other)).toEqual(stable(res));
        expect(other.features).toBeUndefined();
      }
    } finally {
      await pool.close();
      await plain.close();
    }
  });

  it('candidates without metadata share the frozen EMPTY_METADATA; others keep their own object', async () => {
    const pool = await RouterPool.create({ workers: 1, features });
    try {
      // Absent metadata → EMPTY_METADATA; given metadata (even `{}`) → that very object.
      const mixed = request(33, 4);
      for (const c of mixed.candidates) delete c.metadata;
      mixed.candidates[1]!.metadata = { k: 'v' };
      const none = request(34, 3);
      for (const c of none.candidates) delete c.metadata; // the pool's "no metadata at all" path
      for (const [req, res] of [
        [mixed, await pool.route(mixed)], [mixed, new Router({ features }).route(mixed)], [none, await pool.route(none)],
      ] as const) {
        for (const d of res.decisions) {
          const c = req.candidates.find((x) => x.id === d.candidate_id)!;
          if (c.metadata) expect(d.metadata).toBe(c.metadata);
          else {
            expect(d.metadata).toBe(EMPTY_METADATA);
            expect(Object.isFrozen(d.metadata)).toBe(true);
          }
        }
      }
    } finally {
      await pool.close();
    }
  });
});
