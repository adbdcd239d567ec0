// Per-tenant policy: the pure choice, the Router deciding with it, and the RouterPool's real
// worker threads deciding with the table they were sent (request objects and wire bytes alike),
// including a worker that replaces a crashed one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { DEFAULT_THRESHOLDS } from '../../../src/engine/decide.js';
import { GLOBAL_POLICY, PolicyTable, tenantPolicyLabel } from '../../../src/engine/policy.js';
import { RouterPool } from '../../../src/engine/pool/pool.js';
import { Router } from '../../../src/engine/router.js';
import type { RoutingRequest, RoutingResponse } from '../../../src/engine/types.js';
import { encodeRequest } from '../../../src/wire/index.js';

const NOW = 1_700_000_000;
const features = { nowSeconds: NOW };
// Global thresholds that let the model's lightweight answers through; the "strict" tenant's
// policy sends everything heavyweight, the "open" tenant's lets everything the set allows through.
const GLOBAL = { confidence: 0, maxUncertainty: 1 };
const STRICT = { confidence: 1, maxUncertainty: 0 };

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

function request(seed: number, tenant: string | undefined, n = 8, dim = 16): RoutingRequest {
  const r = rng(seed);
  const vec = () => Array.from({ length: dim }, () => r() * 2 - 1);
  return {
    request_id: `req-${seed}`,
    query_embedding: vec(),
    candidates: Array.from({ length: n }, (_, i) => ({
      id: `c${seed}-${i}`,
      embedding: vec(),
      created_at: NOW - Math.floor(r() * 5000),
      access_count: Math.floor(r() * 500),
      success_rate: 0.9 + r() / 10,
    })),
    ...(tenant === undefined ? {} : { metadata: { tenant, other: 'x' } }),
  };
}

function lightweight(res: RoutingResponse): number {
  return res.decisions.filter((d) => d.use_lightweight).length;
}

describe('PolicyTable.choose', () => {
  const table = new PolicyTable('tenant', new Map([['acme', { confidence: 0.5, maxUncertainty: 0.3 }]]));

  it('gives a tenant with a policy its thresholds and label', () => {
    const c = table.choose({ tenant: 'acme' }, DEFAULT_THRESHOLDS);
    expect(c).toEqual({ thresholds: { confidence: 0.5, maxUncertainty: 0.3 }, policy: 'tenant:acme' });
    expect(tenantPolicyLabel('acme')).toBe('tenant:acme');
  });

  it('gives the global thresholds to requests without a tenant, or of a tenant with no policy', () => {
    const metas: (Record<string, string> | undefined)[] = [undefined, {}, { tenant: 'other' }, { Tenant: 'acme' }, { customer: 'acme' }];
    for (const m of metas) {
      const c = table.choose(m, DEFAULT_THRESHOLDS);
      expect(c.policy).toBe(GLOBAL_POLICY);
      expect(c.thresholds).toBe(DEFAULT_THRESHOLDS);
    }
  });

  it('follows a new global thresholds object and reads the configured key', () => {
    const t2 = { confidence: 0.1, maxUncertainty: 0.9 };
    expect(table.choose({}, t2).thresholds).toBe(t2);
    const byCustomer = new PolicyTable('customer', new Map([['acme', STRICT]]));
    expect(byCustomer.choose({ customer: 'acme' }, t2).policy).toBe('tenant:acme');
    expect(byCustomer.choose({ tenant: 'acme' }, t2).policy).toBe('global');
  });

  it('refuses bad policies and keys with a message naming the tenant', () => {
    expect(() => new PolicyTable('tenant', new Map([['a', { confidence: 1.5, maxUncertainty: 0 }]]))).toThrow(/tenant "a": confidence must be a number in \[0, 1\]/);
    expect(() => new PolicyTable('tenant', new Map([['a', { confidence: 0.5, maxUncertainty: Number.NaN }]]))).toThrow(InvalidInputError);
    expect(() => new PolicyTable('tenant', new Map([['', STRICT]]))).toThrow(/non-empty tenant name/);
    expect(() => new PolicyTable('tenant', new Map([['x'.repeat(200), STRICT]]))).toThrow(/longer than 128 bytes/);
    expect(() => new PolicyTable('')).toThrow(/tenant key/);
  });
});

describe('Router with tenant policies', () => {
  it('decides a tenant\'s requests with its thresholds and labels every decision', () => {
    const router = new Router({ confidenceThreshold: GLOBAL.confidence, maxUncertainty: GLOBAL.maxUncertainty, features });
    // A request the global thresholds send (partly) lightweight.
    let seed = 1;
    while (lightweight(router.route(request(seed, 'strict'))) === 0) seed++;
    const before = router.route(request(seed, 'strict'));
    expect(before.policy).toBe('global');
    expect(before.decisions.every((d) => d.policy === 'global')).toBe(true);

    router.setPolicies(new PolicyTable('tenant', new Map([['strict', STRICT]])));
    const strict = router.route(request(seed, 'strict'));
    expect(strict.policy).toBe('tenant:strict');
    expect(strict.decisions.every((d) => d.policy === 'tenant:strict' && !d.use_lightweight)).toBe(true);
    // Same scores: only the rule's thresholds changed.
    expect(strict.decisions.map((d) => d.confidence)).toEqual(before.decisions.map((d) => d.confidence));

    // Another tenant, and no tenant, keep the global thresholds.
    for (const other of [request(seed, 'someone-else'), request(seed, undefined)]) {
      const res = router.route(other);
      expect(res.policy).toBe('global');
      expect(lightweight(res)).toBe(lightweight(before));
    }
  });
});

describe('RouterPool with tenant policies (real workers)', () => {
  let pool: RouterPool;
  let seed = 1;

  beforeAll(async () => {
    pool = await RouterPool.create({ workers: 2, confidenceThreshold: GLOBAL.confidence, maxUncertainty: GLOBAL.maxUncertainty, features, testHooks: true });
    const probe = new Router({ confidenceThreshold: GLOBAL.confidence, maxUncertainty: GLOBAL.maxUncertainty, features });
    while (lightweight(probe.route(request(seed, 'strict'))) === 0) seed++;
  });
  afterAll(async () => {
    await pool?.close({ timeout: 2000 });
  });

  const routeAll = (tenant: string | undefined) => {
    const req = request(seed, tenant);
    return Promise.all([
      pool.route(req),
      pool.routeEncoded(encodeRequest(req, 'json'), 'json'),
      pool.routeEncoded(encodeRequest(req, 'protobuf'), 'protobuf'),
    ]);
  };

  it('decides with the table sent to the workers, for request objects and encoded requests', async () => {
    for (const res of await routeAll('strict')) {
      expect(res.policy).toBe('global');
      expect(lightweight(res)).toBeGreaterThan(0);
    }
    await pool.setTenantPolicies(new Map([['strict', STRICT]]));
    expect(pool.tenantPolicies.size).toBe(1);
    for (const res of await routeAll('strict')) {
      expect(res.policy).toBe('tenant:strict');
      expect(res.decisions.every((d) => d.policy === 'tenant:strict' && !d.use_lightweight)).toBe(true);
    }
    for (const res of [...(await routeAll('other')), ...(await routeAll(undefined))]) {
      expect(res.policy).toBe('global');
      expect(lightweight(res)).toBeGreaterThan(0);
    }
  });

  it('mixes tenants within one batch: each request gets its own policy', async () => {
    const tenants = ['strict', undefined, 'other', 'strict', undefined, 'strict'];
    const results = await Promise.all(tenants.map((t) => pool.route(request(seed, t))));
    results.forEach((res, i) => {
      expect(res.policy).toBe(tenants[i] === 'strict' ? 'tenant:strict' : 'global');
      expect(lightweight(res) === 0).toBe(tenants[i] === 'strict');
    });
  });

  it('refuses a bad table before any worker sees it, and a replaced worker starts with the current table', async () => {
    await expect(pool.setTenantPolicies(new Map([['x', { confidence: 2, maxUncertainty: 0 }]]))).rejects.toThrow(InvalidInputError);
    expect(pool.tenantPolicies.size).toBe(1);
    pool.crashWorkerForTest(0);
    pool.crashWorkerForTest(1);
    // Wait until both replacements answer.
    for (let i = 0; ; i++) {
      try {
        const rs = await Promise.all([pool.route(request(seed, 'strict')), pool.route(request(seed, 'strict'))]);
        if (pool.stats().crashes >= 2 && pool.stats().workers === 2) {
          for (const r of rs) expect(r.policy).toBe('tenant:strict');
          break;
        }
      } catch {
        // a task that was in flight on a crashing worker
      }
      if (i > 200) throw new Error('workers not replaced');
      await new Promise((r) => setTimeout(r, 25));
    }
    const res = await pool.route(request(seed, 'strict'));
    expect(res.decisions.every((d) => d.policy === 'tenant:strict' && !d.use_lightweight)).toBe(true);
    await pool.setTenantPolicies(new Map());
    expect((await pool.route(request(seed, 'strict'))).policy).toBe('global');
  });
});
