import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type DecisionRow, encodeBatch, insertSql } from '../../../src/store/decision-rows.js';
import type { RoutingDecision } from '../../../src/wire/types.js';
import { RowEncodingError } from '../../../src/store/errors.js';

const base: DecisionRow = {
  request_id: 'r1',
  candidate_id: 'c1',
  rank: 0,
  confidence: 0.9,
  uncertainty: 0.05,
  use_lightweight: true,
  reason: 'model',
  model_version: 'v1',
  inference_time_us: 12.5,
};

describe('encodeBatch', () => {
  it('lays rows out as the 19 bind parameters of the insert', () => {
    const cols = encodeBatch(
      [
        {
          ...base,
          decided_at: new Date(1_700_000_000_000),
          features: new Float32Array([0.5, -1, Number.NaN]),
          metadata: { tier: 'gold' },
          source_topic: 'routing.requests',
          source_partition: 3,
          source_offset: '12345678901234',
          policy: 'tenant:a"b',
          trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
        },
        { ...base, candidate_id: 'c2', rank: 1, use_lightweight: false, decided_at: 1_700_000_000_500 },
      ],
      [1, 2],
    );
    expect(cols).toHaveLength(19);
    // Every parameter is an array literal in Postgres's text form.
    expect(cols[0]).toBe('{"r1","r1"}');
    expect(cols[1]).toBe('{"c1","c2"}');
    expect(cols[2]).toBe('{0,1}');
    // real columns: 9 significant digits (every float32 exactly, see below).
    expect(cols[3]).toBe('{0.900000000,0.900000000}');
    expect(cols[5]).toBe('{t,f}');
    expect(cols[9]).toBe('{1700000000000,1700000000500}');
    // Features: one flat literal, with each row's offset and length ($16, $17).
    expect(cols[10]).toBe('{0.500000000,-1.00000000,NaN}');
    expect(cols[15]).toBe('{0,NULL}');
    expect(cols[16]).toBe('{3,NULL}');
    expect(cols[11]).toBe('{"{\\"tier\\":\\"gold\\"}",NULL}');
    expect(cols[12]).toBe('{"routing.requests",NULL}');
    expect(cols[13]).toBe('{3,NULL}');
    expect(cols[14]).toBe('{"12345678901234",NULL}');
    // The deciding policy ($18), NULL when a row has none.
    expect(cols[17]).toBe('{"tenant:a\\"b",NULL}');
    // The trace id ($19).
    expect(cols[18]).toBe('{"4bf92f3577b34da6a3ce929d0e0e4736",NULL}');
  });

  it('writes real (float4) values with 9 significant digits: every float32 comes back exactly', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => {
        const cols = encodeBatch([{ ...base, confidence: x, features: new Float32Array([x]) }], [1]);
        const back = (col: string) => Math.fround(Number(col.slice(1, -1)));
        expect(Object.is(back(cols[10]!), x) || (x === 0 && back(cols[10]!) === 0)).toBe(true);
        expect(Object.is(back(cols[3]!), x) || (x === 0 && back(cols[3]!) === 0)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('flattens the features of several rows, keeping where each starts', () => {
    const cols = encodeBatch(
      [
        { ...base, features: [1, 2] },
        { ...base, candidate_id: 'c2', features: [] },
        { ...base, candidate_id: 'c3', features: new Float64Array([3, Infinity, -Infinity]) },
      ],
      [0, 0, 0],
    );
    expect(cols[10]).toBe('{1.00000000,2.00000000,3.00000000,Infinity,-Infinity}');
    expect(cols[15]).toBe('{0,2,2}');
    expect(cols[16]).toBe('{2,0,3}');
  });

  it('defaults decided_at to the append time and stores empty metadata as NULL', () => {
    const cols = encodeBatch([{ ...base, metadata: {} }], [1_234]);
    expect(cols[9]).toBe('{1234}');
    expect(cols[11]).toBe('{NULL}');
  });

  it('passes wrongly typed fields as NULL so Postgres refuses the row (a row error), not the batch encoding', () => {
    const bad = { ...base, request_id: 42, use_lightweight: 'yes', confidence: '0.5' } as unknown as DecisionRow;
    const cols = encodeBatch([bad], [0]);
    expect(cols[0]).toBe('{NULL}');
    expect(cols[3]).toBe('{NULL}');
    expect(cols[5]).toBe('{NULL}');
  });

  it('throws RowEncodingError for metadata JSON cannot encode', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(() => encodeBatch([{ ...base, metadata: circular as Record<string, string> }], [0])).toThrow(RowEncodingError);
    expect(() => encodeBatch([{ ...base, metadata: { n: 10n } as unknown as Record<string, string> }], [0])).toThrow(RowEncodingError);
  });

  it('quotes every string and escapes only what is special inside quotes', () => {
    const cols = encodeBatch([{ ...base, request_id: 'a"b\\c', candidate_id: 'NULL' }, { ...base, request_id: '', candidate_id: '{x, y}' }], [0, 0]);
    expect(cols[0]).toBe('{"a\\"b\\\\c",""}');
    expect(cols[1]).toBe('{"NULL","{x, y}"}');
  });

  it('takes a RoutingDecision as it is (plus where it came from)', () => {
    const decision: RoutingDecision = { ...base, reason: 'uncertain', metadata: { a: 'b' } };
    const cols = encodeBatch([{ ...decision, source_topic: 't', source_partition: 0, source_offset: '7' }], [0]);
    expect(cols[6]).toBe('{"uncertain"}');
    expect(cols[11]).toBe('{"{\\"a\\":\\"b\\"}"}');
  });
});

describe('insertSql', () => {
  it('binds exactly the 19 parameters encodeBatch produces, into the quoted schema, idempotently', () => {
    const sql = insertSql('td_test');
    expect(sql).toContain('INSERT INTO "td_test".routing_decisions');
    const params = new Set([...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
    expect([...params].sort((a, b) => a - b)).toEqual(Array.from({ length: 19 }, (_, i) => i + 1));
    expect(encodeBatch([base], [0])).toHaveLength(19);
    expect(sql).toMatch(/ON CONFLICT \(request_id, candidate_id\) DO NOTHING$/);
  });
});
