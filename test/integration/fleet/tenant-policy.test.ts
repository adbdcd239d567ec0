// A tenant policy in the decision path, end to end on the real broker and Postgres: serve (in
// process, so the test can call the setter the fleet's desired-state store will call) decides
// the "strict" tenant's requests with that tenant's thresholds and everyone else's with the
// global ones, and every decision — on Kafka in both encodings, and in routing_decisions.policy —
// says which policy decided it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/app.js';
import type { RoutingDecision } from '../../../src/wire/types.js';
import {
  collect, decision, deleteTopics, dropSchema, makeRequest, names, produce, query, record, startApp, testConfig, waitFor, type Collector,
} from '../stream/helpers.js';
import { removeTopics } from '../../support/infra.js';

const n = names('tenant');
const statusTopic = `${n.group}.status`;
let app: App;
let out: Collector;

beforeAll(async () => {
  // Global thresholds that let the model's lightweight answers through; the strict tenant's
  // policy lets nothing through.
  app = await startApp(testConfig(n, {}, { TD_CONFIDENCE_THRESHOLD: '0', TD_MAX_UNCERTAINTY: '1', TD_TOPIC_STATUS: statusTopic }));
  out = await collect([n.lightweight, n.heavyweight]);
});

afterAll(async () => {
  await out?.stop();
  await app?.stop({ timeoutMs: 5000 });
  await dropSchema(n.schema);
  await deleteTopics(n);
  await removeTopics([statusTopic]);
});

describe('per-tenant policy', () => {
  it('decides a tenant\'s requests with its thresholds only, and every decision and row names the policy', async () => {
    await app.control.setTenantPolicies(new Map([['strict', { confidence: 1, maxUncertainty: 0 }]]));
    expect(app.control.tenantPolicies().entries()).toEqual([['strict', { confidence: 1, maxUncertainty: 0 }]]);

    const tenantOf = new Map<string, string | undefined>();
    const requests = Array.from({ length: 90 }, (_, i) => {
      const tenant = [undefined, 'strict', 'other'][i % 3];
      const r = makeRequest(`tp-${i}`, 4, 16);
      r.metadata = tenant === undefined ? { domain: 'test' } : { domain: 'test', tenant };
      tenantOf.set(r.request_id, tenant);
      return r;
    });
    await produce(n.requests, requests.map((r, i) => record(r, i % 2 ? 'json' : 'protobuf')));
    const total = requests.length * 4;
    await out.until((rs) => new Set(rs.map((r) => `${String(r.message.key)}/${decision(r.message).candidate_id}`)).size >= total, 60_000, 'every decision');

    const byTenant = new Map<string, RoutingDecision[]>();
    for (const r of out.records) {
      const d = decision(r.message);
      const t = tenantOf.get(d.request_id) ?? 'none';
      (byTenant.get(t) ?? byTenant.set(t, []).get(t)!).push(d);
      // The decision topic agrees with the flag.
      expect(r.topic).toBe(d.use_lightweight ? n.lightweight : n.heavyweight);
    }
    const strict = byTenant.get('strict')!;
    expect(strict.every((d) => d.policy === 'tenant:strict' && !d.use_lightweight)).toBe(true);
    for (const t of ['none', 'other']) {
      const ds = byTenant.get(t)!;
      expect(ds.every((d) => d.policy === 'global'), t).toBe(true);
      expect(ds.some((d) => d.use_lightweight), `${t}: the global thresholds send some lightweight`).toBe(true);
    }

    // The same in the log: one row per decision, its policy column filled.
    await waitFor(async () => Number((await query<{ n: string }>(`SELECT count(*) AS n FROM "${n.schema}".routing_decisions`))[0]!.n) >= total, 60_000, 'every row');
    const rows = await query<{ request_id: string; policy: string | null; use_lightweight: boolean }>(
      `SELECT request_id, policy, use_lightweight FROM "${n.schema}".routing_decisions`,
    );
    expect(rows).toHaveLength(total);
    for (const row of rows) {
      const strictRow = tenantOf.get(row.request_id) === 'strict';
      expect(row.policy).toBe(strictRow ? 'tenant:strict' : 'global');
      if (strictRow) expect(row.use_lightweight).toBe(false);
    }
    const counts = await query<{ policy: string; n: string }>(`SELECT policy, count(*) AS n FROM "${n.schema}".routing_decisions GROUP BY policy ORDER BY policy`);
    expect(counts.map((c) => [c.policy, Number(c.n)])).toEqual([['global', 240], ['tenant:strict', 120]]);

    // The Route call reports it too, and a breaker fallback carries the tenant's policy.
    const routed = await app.control.route({ ...makeRequest('tp-route', 3, 16), metadata: { tenant: 'strict' } });
    expect(routed.policy).toBe('tenant:strict');
    app.control.tripBreaker();
    try {
      const fallback = await app.control.route({ ...makeRequest('tp-open', 3, 16), metadata: { tenant: 'strict' } });
      expect(fallback.decisions.map((d) => [d.reason, d.policy])).toEqual(Array(3).fill(['breaker_open', 'tenant:strict']));
    } finally {
      app.control.resetBreaker();
    }

    // Removing the policy sends the tenant back to the global thresholds.
    await app.control.setTenantPolicies(new Map());
    expect((await app.control.route({ ...makeRequest('tp-after', 3, 16), metadata: { tenant: 'strict' } })).policy).toBe('global');
    await expect(app.control.setTenantPolicies(new Map([['bad', { confidence: 2, maxUncertainty: 0 }]]))).rejects.toThrow(/confidence must be a number in \[0, 1\]/);
  });
});
