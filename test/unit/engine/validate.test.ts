import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { validateRequest, isValidatedRequest } from '../../../src/engine/validate.js';

function req(over: Record<string, unknown> = {}, cands?: unknown[]): Record<string, unknown> {
  return {
    request_id: 'r-1',
    query_embedding: [1, 0, 0],
    candidates: cands ?? [
      { id: 'a', embedding: [1, 0, 0], created_at: 1_700_000_000, access_count: 3, success_rate: 0.5, metadata: { k: 'v' } },
      { id: 'b', embedding: [0, 1, 0] },
    ],
    ...over,
  };
}

function err(input: unknown): string {
  try {
    validateRequest(input);
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidInputError);
    const msg = (e as Error).message;
    expect(msg).not.toMatch(/\n/);
    return msg;
  }
  throw new Error('expected validateRequest to throw');
}

describe('validateRequest', () => {
  it('packs a valid request into typed arrays', () => {
    const v = validateRequest(req({ metadata: { tier: 'free' } }));
    expect(v.n).toBe(2);
    expect(v.dim).toBe(3);
    expect(Array.from(v.query)).toEqual([1, 0, 0]);
    expect(Array.from(v.embeddings)).toEqual([1, 0, 0, 0, 1, 0]);
    expect(v.ids).toEqual(['a', 'b']);
    expect(Array.from(v.createdAt)).toEqual([1_700_000_000, 0]);
    expect(Array.from(v.accessCount)).toEqual([3, 0]);
    expect(Array.from(v.successRate)).toEqual([0.5, 0]);
    expect(v.candidateMetadata).toEqual([{ k: 'v' }, {}]);
    expect(v.metadata).toEqual({ tier: 'free' });
    expect(isValidatedRequest(v)).toBe(true);
    expect(isValidatedRequest(req())).toBe(false);
  });

  it('accepts Float32Array embeddings, null optionals and int64 as decimal strings / bigint', () => {
    const v = validateRequest({
      request_id: 'x',
      query_embedding: new Float32Array([0.5, 0.25]),
      metadata: null,
      candidates: [{ id: 'a', embedding: new Float32Array([1, 2]), created_at: '1700000000', access_count: 12n, success_rate: null, metadata: null }],
    });
    expect(v.createdAt[0]).toBe(1_700_000_000);
    expect(v.accessCount[0]).toBe(12);
    expect(v.successRate[0]).toBe(0);
    expect(v.metadata).toEqual({});
  });

  it('request_id: required, string, non-empty, at most 256 UTF-8 bytes', () => {
    expect(err(req({ request_id: undefined }))).toMatch(/request_id: is required/);
    expect(err(req({ request_id: 5 }))).toMatch(/request_id: must be a string/);
    expect(err(req({ request_id: '' }))).toMatch(/request_id: must not be empty/);
    expect(() => validateRequest(req({ request_id: 'x'.repeat(256) }))).not.toThrow();
    expect(err(req({ request_id: 'x'.repeat(257) }))).toMatch(/257 bytes, the limit is 256/);
    // 86 × 3-byte characters = 258 bytes though only 86 UTF-16 units
    expect(err(req({ request_id: '€'.repeat(86) }))).toMatch(/258 bytes/);
    expect(() => validateRequest(req({ request_id: '€'.repeat(85) + 'a' }))).not.toThrow();
  });

  it('query_embedding: required, 1..4096 finite values', () => {
    expect(err(req({ query_embedding: undefined }))).toMatch(/query_embedding: is required/);
    expect(err(req({ query_embedding: 'abc' }))).toMatch(/must be an array of numbers/);
    expect(err(req({ query_embedding: [] }, [{ id: 'a', embedding: [] }]))).toMatch(/has 0 values, must have 1..4096/);
    const big = new Array(4097).fill(0.1);
    expect(err(req({ query_embedding: big }, [{ id: 'a', embedding: big }]))).toMatch(/4097 values/);
    const max = new Array(4096).fill(0.1);
    expect(validateRequest(req({ query_embedding: max }, [{ id: 'a', embedding: max }])).dim).toBe(4096);
    expect(err(req({ query_embedding: [1, NaN, 0] }))).toMatch(/query_embedding: embedding\[1\] is NaN/);
    expect(err(req({ query_embedding: [1, null, 0] }))).toMatch(/embedding\[1\] is null, not a finite number/);
    expect(err(req({ query_embedding: new Float32Array([1, Infinity, 0]) }))).toMatch(/^query_embedding: embedding\[1\] is Infinity/);
    expect(err(req({ query_embedding: [1, 1e300, 0] }))).toMatch(/not a finite float32/);
  });

  it('candidates: required array of 1..1000', () => {
    expect(err(req({ candidates: undefined }))).toMatch(/candidates: is required/);
    expect(err(req({ candidates: {} }))).toMatch(/candidates: must be an array/);
    expect(err(req({}, []))).toMatch(/has 0 entries, must have 1..1000/);
    const mk = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `c${i}`, embedding: [1, 0, 0] }));
    expect(validateRequest(req({}, mk(1000))).n).toBe(1000);
    expect(err(req({}, mk(1001)))).toMatch(/has 1001 entries/);
    expect(err(req({}, [42]))).toMatch(/candidates\[0\]: must be an object/);
  });

  it('candidate ids: required, non-empty, unique; errors name index and id', () => {
    expect(err(req({}, [{ embedding: [1, 0, 0] }]))).toMatch(/candidates\[0\]: id is required/);
    expect(err(req({}, [{ id: 7, embedding: [1, 0, 0] }]))).toMatch(/id must be a string/);
    expect(err(req({}, [{ id: '', embedding: [1, 0, 0] }]))).toMatch(/id must not be empty/);
    expect(err(req({}, [{ id: 'm', embedding: [1, 0, 0] }, { id: 'm', embedding: [1, 0, 0] }]))).toBe(
      'candidates[1] (id "m"): duplicate id: ids must be unique within a request',
    );
  });

  it('candidate embeddings: same dim as the query, finite', () => {
    const cands = [{ id: 'a', embedding: [1, 0, 0] }, { id: 'b', embedding: [1, 0, 0] }, { id: 'c', embedding: [1, 0, 0] }, { id: 'm-17', embedding: [1, 0] }];
    expect(err(req({}, cands))).toBe('candidates[3] (id "m-17"): embedding has 2 values, query has 3');
    expect(err(req({}, [{ id: 'a' }]))).toMatch(/candidates\[0\] \(id "a"\): embedding is required/);
    expect(err(req({}, [{ id: 'a', embedding: [1, '0', 0] }]))).toMatch(/embedding\[1\] is the string "0"/);
    expect(err(req({}, [{ id: 'a', embedding: [1, -Infinity, 0] }]))).toMatch(/embedding\[1\] is -Infinity/);
    expect(err(req({}, [{ id: 'a', embedding: { 0: 1, length: 3 } }]))).toMatch(/embedding must be an array/);
  });

  it('candidate scalar fields and metadata types', () => {
    const c = (extra: Record<string, unknown>) => req({}, [{ id: 'a', embedding: [1, 0, 0], ...extra }]);
    expect(err(c({ success_rate: 1.5 }))).toMatch(/success_rate must be in \[0, 1\], got 1.5/);
    expect(err(c({ success_rate: -0.1 }))).toMatch(/success_rate must be in \[0, 1\]/);
    expect(err(c({ success_rate: '0.5' }))).toMatch(/success_rate must be a number/);
    expect(err(c({ access_count: -1 }))).toMatch(/access_count must be >= 0/);
    expect(err(c({ access_count: 1.5 }))).toMatch(/access_count must be an integer/);
    expect(err(c({ created_at: 'yesterday' }))).toMatch(/created_at must be an integer/);
    expect(err(c({ metadata: { a: 1 } }))).toMatch(/metadata\["a"\] must be a string/);
    expect(err(c({ metadata: [] }))).toMatch(/metadata must be an object/);
    expect(err(req({ metadata: { a: null } }))).toMatch(/^metadata: metadata\["a"\] must be a string/);
    expect(validateRequest(c({ created_at: -5 })).createdAt[0]).toBe(-5);
  });

  it('rejects non-objects', () => {
    for (const v of [null, 3, 'x', [], undefined]) expect(err(v)).toMatch(/^request: must be a JSON object/);
  });
});

describe('duplicate ids (the reused id table)', () => {
  const req = (ids: string[]): unknown => ({ request_id: 'r', query_embedding: [1, 0], candidates: ids.map((id) => ({ id, embedding: [0, 1] })) });

  it('finds a duplicate anywhere, request after request, and accepts unique ids', () => {
    for (let round = 0; round < 3; round++) {
      const ids = Array.from({ length: 300 }, (_, i) => `cand-${i}`);
      expect(validateRequest(req(ids)).ids).toEqual(ids);
      for (const [a, b] of [[0, 1], [17, 250], [298, 299]] as const) {
        const dup = [...ids];
        dup[b] = dup[a]!;
        expect(() => validateRequest(req(dup))).toThrow(`candidates[${b}] (id "cand-${a}"): duplicate id`);
      }
    }
  });

  it('stays correct when ids collide in every hashed character (long ids differing only in the middle)', () => {
    const ids = Array.from({ length: 200 }, (_, i) => `prefix--${String(i).padStart(4, '0')}${'x'.repeat(40)}`);
    expect(validateRequest(req(ids)).ids).toEqual(ids);
    const dup = [...ids];
    dup[150] = dup[3]!;
    expect(() => validateRequest(req(dup))).toThrow('candidates[150]');
  });
});
