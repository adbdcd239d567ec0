import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_TRACESTATE_LENGTH, formatTraceparent, parseTraceparent, parseTracestate, readTraceContext, traceHeaders } from '../../../src/wire/trace.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${SPAN}-01`;

describe('parseTraceparent', () => {
  it('reads the W3C example', () => {
    expect(parseTraceparent(VALID)).toEqual({ traceId: TRACE, spanId: SPAN, flags: 1, traceparent: VALID });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)?.flags).toBe(0);
  });

  it('trims surrounding whitespace', () => {
    expect(parseTraceparent(`  ${VALID}\t`)?.traceparent).toBe(VALID);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['upper-case hex', VALID.toUpperCase()],
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['non-hex flags', `00-${TRACE}-${SPAN}-0g`],
    ['wrong separator', `00_${TRACE}-${SPAN}-01`],
    ['version 00 with more fields', `${VALID}-extra`],
    ['version 00 one character longer', `${VALID}0`],
    ['non-hex version', `0x-${TRACE}-${SPAN}-01`],
  ])('refuses %s', (_what, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
  });

  it('accepts a later version with more fields, keeping them as received', () => {
    const v = `01-${TRACE}-${SPAN}-01-what-comes-next`;
    expect(parseTraceparent(v)).toEqual({ traceId: TRACE, spanId: SPAN, flags: 1, traceparent: v });
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01`)?.traceId).toBe(TRACE);
    // A later version still needs a separator after the known fields.
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01x`)).toBeUndefined();
  });

  it('round-trips every valid id through formatTraceparent', () => {
    const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).filter((s) => /[1-9a-f]/.test(s));
    fc.assert(
      fc.property(hex(32), hex(16), fc.integer({ min: 0, max: 255 }), (traceId, spanId, flags) => {
        const header = formatTraceparent(traceId, spanId, flags);
        expect(header).toHaveLength(55);
        expect(parseTraceparent(header)).toEqual({ traceId, spanId, flags, traceparent: header });
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseTracestate', () => {
  it('keeps a well-formed list, dropping empty members and the whitespace around members', () => {
    expect(parseTracestate('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE')).toBe('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    expect(parseTracestate(' rojo=1 ,, congo=2 ')).toBe('rojo=1,congo=2');
    expect(parseTracestate('tenant@system=v,a*b/c_d-e=x')).toBe('tenant@system=v,a*b/c_d-e=x');
  });

  it.each([
    ['missing', undefined],
    ['blank', '  '],
    ['no equals sign', 'rojo'],
    ['empty key', '=v'],
    ['upper-case key', 'Rojo=1'],
    ['equals sign in the value', 'rojo=a=b'],
    ['duplicate key', 'rojo=1,rojo=2'],
    ['control character', 'rojo=a\u0001b'],
    ['33 members', Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',')],
    ['too long', `k=${'v'.repeat(MAX_TRACESTATE_LENGTH)}`],
  ])('refuses %s', (_what, value) => {
    expect(parseTracestate(value)).toBeUndefined();
  });
});

describe('readTraceContext', () => {
  it('pairs a valid traceparent with its tracestate', () => {
    expect(readTraceContext(VALID, 'rojo=1')).toEqual({ traceId: TRACE, spanId: SPAN, flags: 1, traceparent: VALID, tracestate: 'rojo=1' });
    expect(readTraceContext(VALID, 'Bad State')).toEqual({ traceId: TRACE, spanId: SPAN, flags: 1, traceparent: VALID });
  });

  it('ignores a tracestate whose traceparent is invalid or missing', () => {
    expect(readTraceContext(undefined, 'rojo=1')).toBeUndefined();
    expect(readTraceContext('garbage', 'rojo=1')).toBeUndefined();
  });
});

describe('traceHeaders', () => {
  it('names the W3C headers, tracestate only when there is one', () => {
    expect(traceHeaders(VALID, undefined)).toEqual({ traceparent: VALID });
    expect(traceHeaders(VALID, 'rojo=1')).toEqual({ traceparent: VALID, tracestate: 'rojo=1' });
  });
});
