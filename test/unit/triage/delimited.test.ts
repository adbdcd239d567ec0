import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunks, split } from './chunks.js';
import { encodeDelimited, readDelimited } from '../../../src/triage/delimited.js';
import { LineTooLongError } from '../../../src/triage/lines.js';

describe('readDelimited', () => {
  it('recovers every record wherever the chunks are cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 10 }),
        fc.array(fc.nat(4000), { maxLength: 8 }),
        async (messages, cuts) => {
          const joined = new Uint8Array(messages.reduce((n, m) => n + encodeDelimited(m).length, 0));
          let at = 0;
          for (const m of messages) {
            const e = encodeDelimited(m);
            joined.set(e, at);
            at += e.length;
          }
          const got: Uint8Array[] = [];
          for await (const r of readDelimited(chunks(split(joined, cuts)))) {
            if (r instanceof LineTooLongError) throw r;
            got.push(r.bytes.slice());
          }
          expect(got).toEqual(messages);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('fails clearly on a truncated last record', async () => {
    const bytes = encodeDelimited(new Uint8Array([1, 2, 3, 4]));
    const run = async () => {
      for await (const _ of readDelimited(chunks([bytes.subarray(0, 3)]))) void _;
    };
    await expect(run()).rejects.toThrow(/ends inside a record/);
  });
});
