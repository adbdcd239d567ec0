// ControlCore is what both deployments' targets delegate to: the same counters (failed
// included), the same rule for engine latency (never a fallback's), the same errors on reload.
import { describe, expect, it } from 'vitest';
import { ControlCore, type RoutingPool } from '../../../src/control/core.js';
import { prepareModel } from '../../../src/control/reload.js';
import { PoolControlTarget } from '../../../src/control/standalone.js';
import { ControlError } from '../../../src/control/target.js';
import { defaultModelPath } from '../../../src/engine/model.js';
import type { RoutingResponse } from '../../../src/engine/types.js';
import type { ValidatedRequest } from '../../../src/engine/validate.js';
import { InvalidInputError } from '../../../src/errors.js';

function request(id: string) {
  const v = Array.from({ length: 8 }, (_, i) => (i + 1) / 8);
  return { request_id: id, query_embedding: v, candidates: [{ id: 'a', embedding: v }, { id: 'b', embedding: v.map((x) => -x) }] };
}

class FlakyPool implements RoutingPool {
  modelVersion = 'v1';
  mode: 'ok' | 'fail' | 'invalid' = 'ok';
  reloadError: unknown;
  async route(r: ValidatedRequest): Promise<RoutingResponse> {
    if (this.mode === 'fail') throw new Error('engine down');
    const decisions = r.ids.map((id, rank) => ({ request_id: r.request_id, candidate_id: id, confidence: 0.9, uncertainty: 0.1, use_lightweight: true, rank, model_version: this.modelVersion, reason: 'model' as const, metadata: {}, inference_time_us: 50 }));
    return { decisions, inference_time_us: 50, feature_time_us: 1, candidates_processed: r.n };
  }
  async reload(): Promise<{ version: string }> {
    if (this.reloadError) throw this.reloadError;
    return { version: this.modelVersion };
  }
  async setThresholds(): Promise<void> {}
  stats() {
    return { workers: 1, inFlight: 0, queued: 0, completed: 0, failed: 0, crashes: 0 };
  }
  async close(): Promise<void> {}
}

describe('ControlCore', () => {
  it('answers a failing engine with the heavyweight fallback, never records a fallback as engine latency, and counts a bad request rejected', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    const pool = new FlakyPool();
    const core = new ControlCore({ pool, model: prepared.model, modelSource: 'test', breaker: { volumeThreshold: 1000 } });
    await core.route(request('ok'));
    expect(core.latency().engine.count).toBe(1);
    pool.mode = 'fail';
    const r = await core.route(request('fallback'));
    expect(r.decisions.every((d) => d.reason === 'breaker_open' && !d.use_lightweight)).toBe(true);
    expect(core.latency().engine.count).toBe(1);
    await expect(core.route({ request_id: 'bad', query_embedding: [], candidates: [] })).rejects.toBeInstanceOf(InvalidInputError);
    expect(core.routeTotals()).toMatchObject({ requests: 2, rejected: 1 });
    core.shutdown();
  });

  it('passes InvalidInputError and ControlError through on reload, maps other pool failures to UNAVAILABLE, and keeps the old model', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    const pool = new FlakyPool();
    const target = new PoolControlTarget({ pool, model: prepared.model, modelSource: 'test' });
    const before = target.stats().model.version;
    pool.reloadError = new InvalidInputError('refused by a worker');
    await expect(target.reload({ path: defaultModelPath() })).rejects.toBeInstanceOf(InvalidInputError);
    pool.reloadError = new Error('pool closing');
    await expect(target.reload({ path: defaultModelPath() })).rejects.toMatchObject({ kind: 'unavailable' });
    pool.reloadError = new ControlError('aborted', 'busy');
    await expect(target.reload({ path: defaultModelPath() })).rejects.toMatchObject({ kind: 'aborted' });
    expect(target.stats().model.version).toBe(before);
    // The target's answers ARE the core's: one implementation.
    expect(target.stats().totals).toEqual(target.core.routeTotals());
    target.close();
  });
});
