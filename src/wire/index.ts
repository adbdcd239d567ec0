// The wire layer: payload codecs, the schema, the payload types and record headers, below the
// engine and stream/. It imports nothing of the project above it; the engine validates what it
// parses (engine/decode.ts).
export { DecodeError, type DecodeErrorKind } from './errors.js';
export { CONTENT_TYPES, encodingOf, getHeader, type Encoding, type HeaderValue, type Headers } from './headers.js';
export { loadSchema, type Schema } from './schema.js';
export { readProtobufRequest } from './protobuf-reader.js';
export { parseRequest, type DecodeOptions } from './decode-request.js';
export { decisionJson, decisionProtoBound, encodeDecision, writeDecisionProto, writeUtf8 } from './decision-writer.js';
export { TOP_K_KEY, answerOf, encodeResponse, encodeResponseDelimited, requestTopK, responseJson, responseProtoBound, writeResponseProto } from './response.js';
export { decodeDecision, decodeResponse, encodeRequest } from './client.js';
export { TRACE_HEADERS, formatTraceparent, parseTraceparent, parseTracestate, readTraceContext, traceHeaders, type TraceContext } from './trace.js';
