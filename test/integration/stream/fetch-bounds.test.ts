// The fetch bounds (TD_FETCH_MAX_BYTES, TD_FETCH_MAX_BYTES_PER_PARTITION) bound serve's memory,
// not the size of a request: a record larger than both is still fetched and decided.
import { describe, expect, it } from 'vitest';
import { makeRequest, produce, record, rowCounts, serveFixture, testConfig, waitFor } from './helpers.js';

describe('serve with small fetch bounds', () => {
  const serve = serveFixture('fetch', (n) => ({ config: testConfig(n, { fetchMaxBytes: 64 * 1024, fetchMaxBytesPerPartition: 16 * 1024 }) }));
  const { n } = serve;

  it('decides requests far larger than both bounds, beside small ones', async () => {
    const big = [makeRequest('big-json', 100, 384), makeRequest('big-proto', 100, 384)];
    const small = Array.from({ length: 6 }, (_, i) => makeRequest(`small-${i}`, 3));
    const records = [record(big[0]!, 'json'), record(big[1]!, 'protobuf'), ...small.map((r) => record(r, 'json'))];
    expect(records[0]!.value!.length).toBeGreaterThan(64 * 1024 * 4); // JSON: hundreds of KB
    expect(records[1]!.value!.length).toBeGreaterThan(64 * 1024 * 2); // protobuf: ~150 KB
    await produce(n.requests, records);
    const total = 200 + 6 * 3;
    await serve.out.until((rs) => rs.length >= total, 45_000, `${total} decisions`);
    await waitFor(async () => (await rowCounts(n.schema)).rows >= total, 20_000, 'all rows');
    expect(await rowCounts(n.schema)).toEqual({ rows: total, distinct: total, requests: 8 });
  });
});
