// W3C Trace Context on Kafka records: the `traceparent` and `tracestate` headers, read from a
// request record and written onto the records it produces. Pure: strings in, strings out.
//
// Parsed here rather than through an OpenTelemetry propagator because the API's global
// propagator does nothing unless the host registers one, and the headers must travel whether
// or not it does. The grammar is the W3C one (https://www.w3.org/TR/trace-context/):
//   traceparent = version "-" trace-id "-" parent-id "-" trace-flags [ "-" future fields ]
// lower-case hex only; version ff, an all-zero trace id or parent id are invalid; version 00
// has exactly these four fields, a later version may append more (kept, not interpreted).
// An invalid traceparent is ignored together with its tracestate, as the recommendation says:
// tracestate means nothing without the parent it belongs to.

export const TRACE_HEADERS = Object.freeze({
  traceparent: 'traceparent',
  tracestate: 'tracestate',
});

/** A valid incoming trace context. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  traceId: string;
  /** The caller's span: 16 lower-case hex digits, not all zero. */
  spanId: string;
  /** trace-flags as a number (bit 0: sampled). */
  flags: number;
  /** The header as received (a later version's extra fields included). */
  traceparent: string;
  /** The tracestate header when present and well-formed. */
  tracestate?: string | undefined;
}

/** Longest tracestate carried: 32 list members of the longest legal form would be far more. */
export const MAX_TRACESTATE_LENGTH = 512;

/** True when v[from..to) is lower-case hex; `nonZero`: and not all zeros. */
function hexRun(v: string, from: number, to: number, nonZero: boolean): boolean {
  let any = !nonZero;
  for (let i = from; i < to; i++) {
    const c = v.charCodeAt(i);
    if (c === 48) continue;
    if (!((c > 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
    any = true;
  }
  return any;
}

/** Parses a traceparent header value; undefined when it is not a valid one. */
export function parseTraceparent(value: string | undefined): Omit<TraceContext, 'tracestate'> | undefined {
  if (value === undefined) return undefined;
  // Checked by character codes rather than regular expressions and slices: this runs for every
  // request record.
  const v = value.trim();
  if (v.length < 55) return undefined;
  if (!hexRun(v, 0, 2, false) || (v.charCodeAt(0) === 102 && v.charCodeAt(1) === 102)) return undefined;
  const v00 = v.charCodeAt(0) === 48 && v.charCodeAt(1) === 48;
  if (v00 ? v.length !== 55 : v.length > 55 && v.charCodeAt(55) !== 45) return undefined;
  if (v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return undefined;
  if (!hexRun(v, 3, 35, true) || !hexRun(v, 36, 52, true) || !hexRun(v, 53, 55, false)) return undefined;
  return { traceId: v.slice(3, 35), spanId: v.slice(36, 52), flags: parseInt(v.slice(53, 55), 16), traceparent: v };
}

// One list member: key "=" value. Keys: simple (lcalpha then [a-z0-9_*/-], up to 256) or
// multi-tenant (tenant@system). Values: up to 256 printable ASCII except "," and "=", not
// ending in a space.
const TRACESTATE_KEY = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/** A tracestate header value as carried on (optional whitespace trimmed), or undefined if malformed. */
export function parseTracestate(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v.length === 0 || v.length > MAX_TRACESTATE_LENGTH) return undefined;
  const members = v.split(',');
  if (members.length > 32) return undefined;
  const keys: string[] = [];
  let changed = false;
  for (let i = 0; i < members.length; i++) {
    const raw = members[i]!;
    const m = raw.trim();
    if (m !== raw) changed = true;
    // Empty members are allowed by the grammar (",,") and dropped.
    if (m.length === 0) {
      changed = true;
      members[i] = m;
      continue;
    }
    const eq = m.indexOf('=');
    if (eq <= 0) return undefined;
    const key = m.slice(0, eq);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(m.slice(eq + 1)) || keys.includes(key)) return undefined;
    keys.push(key);
    members[i] = m;
  }
  if (keys.length === 0) return undefined;
  return changed ? members.filter((m) => m.length > 0).join(',') : v;
}

/** Reads the trace context of a record from its two header values. */
export function readTraceContext(traceparent: string | undefined, tracestate: string | undefined): TraceContext | undefined {
  const parent = parseTraceparent(traceparent);
  if (!parent) return undefined;
  // Spelled out: an object spread per request costs more than the parsing.
  return { traceId: parent.traceId, spanId: parent.spanId, flags: parent.flags, traceparent: parent.traceparent, tracestate: parseTracestate(tracestate) };
}

/** A version-00 traceparent for a span. */
export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  const f = flags & 0xff;
  return `00-${traceId}-${spanId}-${f < 16 ? '0' : ''}${f.toString(16)}`;
}

/** The headers that carry a trace context on a record. */
export function traceHeaders(traceparent: string, tracestate: string | undefined): Record<string, string> {
  return tracestate === undefined ? { [TRACE_HEADERS.traceparent]: traceparent } : { [TRACE_HEADERS.traceparent]: traceparent, [TRACE_HEADERS.tracestate]: tracestate };
}
