// One OpenTelemetry span per routed request, through @opentelemetry/api: a no-op unless the host
// registers an SDK (a tracer provider) before or after the service starts.
//
// The span is a child of the request record's W3C context (../wire/trace.ts) and its context
// goes onto every record the request produces, so the next hop continues the trace from it.
// Without an SDK the API's spans are non-recording and repeat their parent's context: the
// records then carry the incoming traceparent/tracestate exactly as received. With tracing off
// no span is made at all, and the incoming headers still travel (they are the records'
// contract, not a product of the spans).
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, createTraceState, isSpanContextValid, trace, type Span, type TraceState, type Tracer } from '@opentelemetry/api';
import type { RoutingDecision } from '../wire/types.js';
import { VERSION } from '../version.js';
import { formatTraceparent, readTraceContext, traceHeaders, type TraceContext } from '../wire/trace.js';

/** Where a request record was read. */
export interface RecordOrigin {
  topic: string;
  partition: number;
  offset: string;
}

/** Span attribute names (td.* for this service's own; messaging.* per the semantic conventions). */
export const SPAN_ATTRIBUTES = Object.freeze({
  requestId: 'td.request_id',
  candidateCount: 'td.candidate_count',
  lightweightCount: 'td.lightweight_count',
  modelVersion: 'td.model_version',
  policy: 'td.policy',
  /** Followed by ".<reason>": decisions with that reason. */
  reasonPrefix: 'td.reason.',
  fallback: 'td.fallback',
  error: 'td.error',
});

/** The trace context of one request while it is routed. */
export interface RequestTrace {
  /** traceparent (and tracestate) for the records it produces; undefined: none to carry. */
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** The trace id for its rows. */
  readonly traceId: string | undefined;
  /**
   * Ends the span of a request that was decided: `decisions` are its decisions, `fallback` true
   * when the breaker answered instead of the engine.
   */
  decided(decisions: readonly RoutingDecision[], fallback: boolean): void;
  /** Ends the span of a request that went to the dead-letter topic. */
  rejected(reason: string): void;
}

/**
 * The policy that decided a request, when its decisions name one (a `policy` string field);
 * read structurally so the span needs nothing more from the engine's types.
 */
function policyOf(d: RoutingDecision): string | undefined {
  const p = (d as { policy?: unknown }).policy;
  return typeof p === 'string' ? p : undefined;
}

const NOTHING: RequestTrace = Object.freeze({
  headers: undefined,
  traceId: undefined,
  decided: () => {},
  rejected: () => {},
});

/** A trace context carried on without a span (tracing off). */
class Carried implements RequestTrace {
  readonly headers: Readonly<Record<string, string>>;
  readonly traceId: string;
  constructor(incoming: TraceContext) {
    this.headers = traceHeaders(incoming.traceparent, incoming.tracestate);
    this.traceId = incoming.traceId;
  }
  decided(): void {}
  rejected(): void {}
}

class Spanned implements RequestTrace {
  readonly headers: Readonly<Record<string, string>>;
  readonly traceId: string;
  readonly #span: Span;
  constructor(span: Span, incoming: TraceContext | undefined) {
    this.#span = span;
    const sc = span.spanContext();
    this.traceId = sc.traceId;
    // A non-recording span of the no-op API repeats its parent's ids: carry the parent's
    // headers as they came (a later traceparent version's extra fields included).
    if (incoming && sc.spanId === incoming.spanId && sc.traceId === incoming.traceId) {
      this.headers = traceHeaders(incoming.traceparent, incoming.tracestate);
    } else {
      this.headers = traceHeaders(formatTraceparent(sc.traceId, sc.spanId, sc.traceFlags), sc.traceState?.serialize() || incoming?.tracestate);
    }
  }

  decided(decisions: readonly RoutingDecision[], fallback: boolean): void {
    const span = this.#span;
    if (span.isRecording()) {
      const a = SPAN_ATTRIBUTES;
      let lightweight = 0;
      const reasons: Record<string, number> = {};
      for (const d of decisions) {
        if (d.use_lightweight) lightweight++;
        reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
      }
      const first = decisions[0];
      let policy: string | undefined;
      if (first) {
        span.setAttribute(a.requestId, first.request_id);
        span.setAttribute(a.modelVersion, first.model_version);
        policy = policyOf(first);
      }
      span.setAttribute(a.candidateCount, decisions.length);
      span.setAttribute(a.lightweightCount, lightweight);
      if (policy !== undefined) span.setAttribute(a.policy, policy);
      for (const reason in reasons) span.setAttribute(a.reasonPrefix + reason, reasons[reason]!);
      if (fallback) {
        span.setAttribute(a.fallback, true);
        span.setStatus({ code: SpanStatusCode.ERROR, message: 'circuit breaker open: fallback decisions' });
      }
    }
    span.end();
  }

  rejected(reason: string): void {
    const span = this.#span;
    if (span.isRecording()) {
      span.setAttribute(SPAN_ATTRIBUTES.error, reason);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `dead-lettered: ${reason}` });
    }
    span.end();
  }
}

/**
 * A tracestate already checked by ../wire/trace.ts, parsed by the API only if an SDK reads or
 * changes it: with no SDK it is never looked at, and the API's parsing costs more than the rest
 * of a request's tracing.
 */
class CarriedTraceState implements TraceState {
  readonly #raw: string;
  #parsed: TraceState | undefined;
  constructor(raw: string) {
    this.#raw = raw;
  }
  #state(): TraceState {
    return (this.#parsed ??= createTraceState(this.#raw));
  }
  set(key: string, value: string): TraceState {
    return this.#state().set(key, value);
  }
  unset(key: string): TraceState {
    return this.#state().unset(key);
  }
  get(key: string): string | undefined {
    return this.#state().get(key);
  }
  serialize(): string {
    return this.#raw;
  }
}

const SPAN_OPTIONS = Object.freeze({ kind: SpanKind.CONSUMER });

export interface RequestTracerOptions {
  /** False: no spans; incoming trace headers are still carried on. */
  enabled: boolean;
  /** Default: the global tracer provider's tracer named "tiny-dancer". */
  tracer?: Tracer;
}

export class RequestTracer {
  readonly enabled: boolean;
  readonly #tracer: Tracer | undefined;
  #topic = '';
  #spanName = '';

  constructor(opts: RequestTracerOptions) {
    this.enabled = opts.enabled;
    // The API's proxy tracer: it finds an SDK registered later, so start order does not matter.
    this.#tracer = opts.enabled ? (opts.tracer ?? trace.getTracer('tiny-dancer', VERSION)) : undefined;
  }

  /**
   * Starts the trace of one request record from its traceparent/tracestate header values.
   * Call exactly one of decided()/rejected() on the result.
   */
  begin(traceparent: string | undefined, tracestate: string | undefined, origin: RecordOrigin): RequestTrace {
    const incoming = readTraceContext(traceparent, tracestate);
    const tracer = this.#tracer;
    if (!tracer) return incoming ? new Carried(incoming) : NOTHING;
    const parent = incoming
      ? trace.setSpanContext(ROOT_CONTEXT, {
          traceId: incoming.traceId,
          spanId: incoming.spanId,
          traceFlags: incoming.flags,
          isRemote: true,
          traceState: incoming.tracestate === undefined ? undefined : new CarriedTraceState(incoming.tracestate),
        })
      : ROOT_CONTEXT;
    if (origin.topic !== this.#topic) {
      this.#topic = origin.topic;
      this.#spanName = `process ${origin.topic}`;
    }
    const span = tracer.startSpan(this.#spanName, SPAN_OPTIONS, parent);
    // Attributes only on a recording span: with no SDK nothing is allocated for them.
    if (span.isRecording()) {
      span.setAttribute('messaging.system', 'kafka');
      span.setAttribute('messaging.operation.type', 'process');
      span.setAttribute('messaging.destination.name', origin.topic);
      span.setAttribute('messaging.destination.partition.id', String(origin.partition));
      span.setAttribute('messaging.kafka.offset', Number(origin.offset));
    }
    // No SDK and no incoming context: the no-op API's span is invalid; nothing to carry. (With
    // an incoming context, the span's is valid either way: the parent's, or a new child's.)
    if (!incoming && !isSpanContextValid(span.spanContext())) return NOTHING;
    return new Spanned(span, incoming);
  }
}
