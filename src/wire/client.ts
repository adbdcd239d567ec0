// The client's side of the wire: encoding a request and reading a decision back, for clients,
// tests, benchmarks and the demo. protobufjs's generic codec is fine here (not on the hot path).
import type { RoutingDecision, RoutingRequest, RoutingResponse } from './types.js';
import { DecodeError } from './errors.js';
import type { Encoding } from './headers.js';
import { loadSchema } from './schema.js';

/** Decodes a decision record (clients, tests, the demo's reader). Throws DecodeError. */
export function decodeDecision(value: Uint8Array, encoding: Encoding): RoutingDecision {
  if (encoding === 'json') {
    try {
      return JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')) as RoutingDecision;
    } catch (err) {
      throw new DecodeError('json', `not a JSON decision: ${(err as Error).message}`);
    }
  }
  const s = loadSchema();
  try {
    const m = s.RoutingDecision.decode(value);
    return s.RoutingDecision.toObject(m, { longs: Number, defaults: true }) as RoutingDecision;
  } catch (err) {
    throw new DecodeError('protobuf', `not a protobuf RoutingDecision: ${(err as Error).message}`);
  }
}

/** Decodes a response record (the responses topic, triage's protobuf output). Throws DecodeError. */
export function decodeResponse(value: Uint8Array, encoding: Encoding): RoutingResponse {
  if (encoding === 'json') {
    try {
      return JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')) as RoutingResponse;
    } catch (err) {
      throw new DecodeError('json', `not a JSON response: ${(err as Error).message}`);
    }
  }
  const s = loadSchema();
  try {
    const m = s.RoutingResponse.decode(value);
    return s.RoutingResponse.toObject(m, { longs: Number, defaults: true, arrays: true }) as RoutingResponse;
  } catch (err) {
    throw new DecodeError('protobuf', `not a protobuf RoutingResponse: ${(err as Error).message}`);
  }
}

/** Encodes a request (clients, tests, benchmarks, the demo's generator). */
export function encodeRequest(req: RoutingRequest, encoding: Encoding): Buffer {
  if (encoding === 'json') {
    return Buffer.from(
      JSON.stringify(req, (_k, v: unknown) => (v instanceof Float32Array ? Array.from(v) : v)),
      'utf8',
    );
  }
  const s = loadSchema();
  const bytes = s.RoutingRequest.encode(req as unknown as Record<string, unknown>).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
