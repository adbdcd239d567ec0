// Request decoding (contracts §1): bytes in either encoding → a validated request, or a
// DecodeError with a one-line reason (and only a DecodeError, for any bytes). Pure: no I/O after
// the schema is loaded (once), no timers.
import { isUtf8 } from 'node:buffer';
import { InvalidInputError } from '../errors.js';
import { validateRequest, type ValidatedRequest } from '../engine/validate.js';
import { DecodeError } from './errors.js';
import type { Encoding } from './headers.js';
import { readProtobufRequest } from './protobuf-reader.js';
import { loadSchema } from './schema.js';

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

function validated(input: unknown): ValidatedRequest {
  try {
    return validateRequest(input);
  } catch (err) {
    if (err instanceof InvalidInputError) throw new DecodeError('invalid', err.message, { cause: err });
    throw err;
  }
}

export interface DecodeOptions {
  /** Refuse larger payloads before parsing them. */
  maxBytes?: number;
}

/**
 * Decodes and validates one request. Throws DecodeError (and only DecodeError, for any bytes)
 * with a one-line reason.
 */
export function decodeRequest(value: Uint8Array | null, encoding: Encoding, opts: DecodeOptions = {}): ValidatedRequest {
  if (value === null || value.length === 0) throw new DecodeError('invalid', 'empty message: a RoutingRequest is required');
  if (opts.maxBytes !== undefined && value.length > opts.maxBytes) {
    throw new DecodeError('too_large', `message is ${value.length} bytes, the limit is ${opts.maxBytes}`);
  }
  if (encoding === 'protobuf') {
    loadSchema();
    let obj: Record<string, unknown>;
    try {
      obj = readProtobufRequest(value);
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      throw new DecodeError('protobuf', `not a valid protobuf RoutingRequest: ${(err as Error).message}`, { cause: err });
    }
    return validated(obj);
  }
  if (!isUtf8(value)) throw new DecodeError('utf8', 'not valid UTF-8 (JSON requests must be UTF-8 text)');
  const text = Buffer.isBuffer(value) ? value.toString('utf8') : utf8Decoder.decode(value);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new DecodeError('json', `not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    const what = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed;
    throw new DecodeError('invalid', `not a JSON object: the request is ${what}`);
  }
  return validated(parsed);
}
