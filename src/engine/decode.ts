// A request record's bytes → the engine's validated request: the wire layer parses, the engine
// validates, and any failure of either is a DecodeError with a one-line reason (docs/contracts.md §1).
import { InvalidInputError } from '../errors.js';
import { DecodeError } from '../wire/errors.js';
import type { Encoding } from '../wire/headers.js';
import { parseRequest, type DecodeOptions } from '../wire/decode-request.js';
import { validateRequest, type ValidatedRequest } from './validate.js';

export type { DecodeOptions };

/** Decodes and validates one request. Throws DecodeError (and only DecodeError, for any bytes). */
export function decodeRequest(value: Uint8Array | null, encoding: Encoding, opts: DecodeOptions = {}): ValidatedRequest {
  const parsed = parseRequest(value, encoding, opts);
  try {
    return validateRequest(parsed);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new DecodeError('invalid', err.message, { cause: err });
    throw err;
  }
}
