import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunks, split } from './chunks.js';
import { LineTooLongError, isBlank, readLines, type LineItem } from '../../../src/triage/lines.js';

async function collect(parts: Uint8Array[], maxLineBytes?: number): Promise<LineItem[]> {
  const out: LineItem[] = [];
  for await (const item of readLines(chunks(parts), maxLineBytes === undefined ? {} : { maxLineBytes })) {
    // Copy: a yielded view may alias a chunk.
    out.push(item instanceof LineTooLongError ? item : { ...item, bytes: item.bytes.slice() });
  }
  return out;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('readLines', () => {
  it('yields the same lines as String.split wherever the chunks are cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.string({ unit: fc.constantFrom('a', 'b', '{', '}', ' ', 'é', '\r') }), { maxLength: 12 }),
        fc.array(fc.nat(400), { maxLength: 8 }),
        fc.boolean(),
        async (lines, cuts, trailingNewline) => {
          const text = lines.join('\n') + (trailingNewline && lines.length > 0 ? '\n' : '');
          const bytes = enc.encode(text);
          const got = await collect(split(bytes, cuts));
          // POSIX lines: a final newline ends the last line rather than starting an empty one.
          const expected = text.split('\n');
          if (expected[expected.length - 1] === '') expected.pop();
          expect(got.map((l) => (l instanceof LineTooLongError ? '!' : dec.decode(l.bytes)))).toEqual(
            expected.map((l) => l.replace(/\r$/, '')),
          );
          got.forEach((l, i) => expect(l instanceof LineTooLongError ? l.lineNumber : l.number).toBe(i + 1));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reports an over-long line by number, skips it, and goes on', async () => {
    const text = `short\n${'x'.repeat(50)}\nnext\n${'y'.repeat(60)}`;
    const got = await collect(split(enc.encode(text), [3, 20, 40, 58]), 16);
    expect(got).toHaveLength(4);
    expect(dec.decode((got[0] as { bytes: Uint8Array }).bytes)).toBe('short');
    expect(got[1]).toBeInstanceOf(LineTooLongError);
    expect((got[1] as LineTooLongError).lineNumber).toBe(2);
    expect(dec.decode((got[2] as { bytes: Uint8Array }).bytes)).toBe('next');
    expect((got[3] as LineTooLongError).lineNumber).toBe(4);
  });

  it('counts consumed bytes so progress can be measured against the file size', async () => {
    const bytes = enc.encode('ab\ncd\nef');
    const got = (await collect([bytes])) as Array<{ offset: number }>;
    expect(got.map((l) => l.offset)).toEqual([3, 6, 8]);
  });

  it('isBlank accepts only white space', () => {
    expect(isBlank(enc.encode(' \t\r'))).toBe(true);
    expect(isBlank(enc.encode(''))).toBe(true);
    expect(isBlank(enc.encode(' {}'))).toBe(false);
  });
});
