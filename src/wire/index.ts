// The wire layer: payload codecs, the schema and record headers, below stream/ and the engine's
// pool. Of engine/ it uses only the request types and validateRequest (leaf modules that import
// nothing else of engine/), so that a decoded request is the engine's validated request.
export { DecodeError, type DecodeErrorKind } from './errors.js';
export { CONTENT_TYPES, encodingOf, getHeader, type Encoding, type HeaderValue, type Headers } from './headers.js';
export { loadSchema, type Schema } from './schema.js';
export { readProtobufRequest } from './protobuf-reader.js';
export { decodeRequest, type DecodeOptions } from './decode-request.js';
export { decisionJson, decisionProtoBound, encodeDecision, writeDecisionProto, writeUtf8 } from './decision-writer.js';
export { decodeDecision, encodeRequest } from './client.js';
export { TRACE_HEADERS, formatTraceparent, parseTraceparent, parseTracestate, readTraceContext, traceHeaders, type TraceContext } from './trace.js';
