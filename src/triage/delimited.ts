// Length-delimited protobuf records (a varint byte length before each message, as protobuf's
// writeDelimited and Java's writeDelimitedTo produce): the fast input format for triage.
import { InvalidInputError } from '../errors.js';
import { LineTooLongError, type LineItem } from './lines.js';

export class TruncatedRecordError extends InvalidInputError {}

/**
 * Yields each record's bytes with its 1-based index as `number`. A varint longer than 5 bytes or
 * a length over the limit cannot be resynchronised (there is no delimiter to find the next
 * record), so it ends the stream with an error rather than guessing.
 */
export async function* readDelimited(
  source: AsyncIterable<Uint8Array>,
  options: { maxRecordBytes?: number } = {},
): AsyncGenerator<LineItem> {
  const max = options.maxRecordBytes ?? 64 * 1024 * 1024;
  let buffer: Uint8Array = new Uint8Array(0);
  let offset = 0;
  let number = 0;

  const take = (chunk: Uint8Array) => {
    if (buffer.length === 0) {
      buffer = chunk;
      return;
    }
    const merged = new Uint8Array(buffer.length + chunk.length);
    merged.set(buffer);
    merged.set(chunk, buffer.length);
    buffer = merged;
  };

  for await (const chunk of source) {
    take(chunk);
    let at = 0;
    while (true) {
      // Decode the varint length prefix, if whole.
      let length = 0;
      let shift = 0;
      let i = at;
      let complete = false;
      while (i < buffer.length) {
        const b = buffer[i++]!;
        length += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
        if (shift > 28) throw new InvalidInputError(`record ${number + 1}: malformed length prefix`);
      }
      if (!complete) break;
      if (length > max) {
        yield new LineTooLongError(number + 1, max);
        throw new InvalidInputError(`record ${number + 1}: length ${length} exceeds ${max} bytes; cannot continue`);
      }
      if (buffer.length - i < length) break;
      number += 1;
      offset += i - at + length;
      yield { number, bytes: buffer.subarray(i, i + length), offset };
      at = i + length;
    }
    // Keep only the unconsumed tail (a copy, so the consumed chunk can be freed).
    buffer = at === buffer.length ? new Uint8Array(0) : buffer.slice(at);
  }
  if (buffer.length > 0) {
    throw new TruncatedRecordError(`record ${number + 1}: input ends inside a record (${buffer.length} bytes left)`);
  }
}

/** Encodes one record with its varint length prefix (for tests, benchmarks and writers). */
export function encodeDelimited(message: Uint8Array): Uint8Array {
  const prefix: number[] = [];
  let n = message.length;
  while (n >= 0x80) {
    prefix.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  prefix.push(n);
  const out = new Uint8Array(prefix.length + message.length);
  out.set(prefix);
  out.set(message, prefix.length);
  return out;
}
