// Splits a byte stream into lines without ever holding more than one chunk plus one partial
// line. readline is avoided on purpose: its async iterator can queue lines faster than a slow
// consumer takes them, and triage files have megabyte lines (100 candidates × 384 floats).
import { InvalidInputError } from '../errors.js';

export interface Line {
  /** 1-based line number in the input. */
  number: number;
  /** The line's bytes without the trailing \n (and \r). A view into a chunk or a fresh copy. */
  bytes: Uint8Array;
  /** Input bytes consumed up to and including this line (for progress). */
  offset: number;
}

export interface LineOptions {
  /** A longer line is reported as too long and skipped, not buffered without bound. */
  maxLineBytes?: number;
}

export class LineTooLongError extends InvalidInputError {
  constructor(
    readonly lineNumber: number,
    readonly limit: number,
  ) {
    super(`line ${lineNumber} is longer than ${limit} bytes`);
  }
}

export type LineItem = Line | LineTooLongError;

const NL = 0x0a;
const CR = 0x0d;

function trimCr(bytes: Uint8Array): Uint8Array {
  return bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.subarray(0, bytes.length - 1) : bytes;
}

/**
 * Yields every line of `source` (blank lines included, so numbering matches the file), or a
 * LineTooLongError in place of a line that exceeds the limit. Backpressure comes for free: the
 * next chunk is read only when the consumer asks for the next line.
 */
export async function* readLines(source: AsyncIterable<Uint8Array>, options: LineOptions = {}): AsyncGenerator<LineItem> {
  const maxLineBytes = options.maxLineBytes ?? 64 * 1024 * 1024;
  let parts: Uint8Array[] = [];
  let partLength = 0;
  let skipping = false; // inside a line already reported as too long
  let number = 0;
  let offset = 0;

  for await (const chunk of source) {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(NL, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      offset += end - start + (nl === -1 ? 0 : 1);
      if (!skipping) {
        if (partLength + piece.length > maxLineBytes) {
          skipping = true;
          parts = [];
          partLength = 0;
        } else if (nl === -1) {
          // Copy: the stream may reuse the chunk's memory once we ask for the next one.
          parts.push(Uint8Array.prototype.slice.call(piece));
          partLength += piece.length;
        }
      }
      if (nl === -1) break;
      number += 1;
      if (skipping) {
        yield new LineTooLongError(number, maxLineBytes);
        skipping = false;
      } else if (parts.length === 0) {
        yield { number, bytes: trimCr(piece), offset };
      } else {
        parts.push(piece);
        yield { number, bytes: trimCr(concat(parts, partLength + piece.length)), offset };
        parts = [];
        partLength = 0;
      }
      start = nl + 1;
    }
  }
  if (skipping) {
    yield new LineTooLongError(number + 1, maxLineBytes);
  } else if (partLength > 0) {
    yield { number: number + 1, bytes: trimCr(concat(parts, partLength)), offset };
  }
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** True for a line with nothing but ASCII white space: skipped silently, like most JSONL readers. */
export function isBlank(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b !== 0x20 && b !== 0x09 && b !== CR) return false;
  }
  return true;
}
