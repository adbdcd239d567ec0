// The request span against the OpenTelemetry SDK's in-memory exporter, registered as the global
// tracer provider (as a host would), and against the bare API (no SDK).
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import type { RoutingDecision } from '../../../src/wire/types.js';
import { RequestTracer, SPAN_ATTRIBUTES } from '../../../src/observe/tracing.js';
import { parseTraceparent } from '../../../src/wire/trace.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const INCOMING = `00-${TRACE}-${PARENT}-01`;
const origin = { topic: 'routing.requests', partition: 2, offset: '41' };

function decision(candidate: string, rank: number, light: boolean, reason: RoutingDecision['reason']): RoutingDecision {
  return {
    request_id: 'req-1',
    candidate_id: candidate,
    confidence: 0.9,
    uncertainty: 0.1,
    use_lightweight: light,
    rank,
    model_version: 'm-7',
    reason,
    metadata: {},
    inference_time_us: 10,
  };
}

const DECISIONS = [decision('a', 0, true, 'model'), decision('b', 1, false, 'uncertain'), decision('c', 2, false, 'below_threshold'), decision('d', 3, true, 'model')];

function withSdk(): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  return exporter;
}

afterEach(() => {
  trace.disable();
});

describe('RequestTracer with an SDK registered', () => {
  it('makes a child span of the incoming context, and the records carry the span', () => {
    const exporter = withSdk();
    const t = new RequestTracer({ enabled: true }).begin(INCOMING, 'rojo=1', origin);
    t.decided(DECISIONS, false);
    const [span, ...more] = exporter.getFinishedSpans();
    expect(more).toHaveLength(0);
    expect(span!.name).toBe('process routing.requests');
    expect(span!.kind).toBe(SpanKind.CONSUMER);
    expect(span!.spanContext().traceId).toBe(TRACE);
    expect(span!.parentSpanContext?.spanId).toBe(PARENT);
    expect(span!.parentSpanContext?.isRemote).toBe(true);
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    // The next hop's parent is this span, not the request's producer.
    const carried = parseTraceparent(t.headers?.traceparent);
    expect(carried?.traceId).toBe(TRACE);
    expect(carried?.spanId).toBe(span!.spanContext().spanId);
    expect(carried?.spanId).not.toBe(PARENT);
    expect(carried?.flags).toBe(1);
    expect(t.headers?.tracestate).toBe('rojo=1');
    expect(span!.spanContext().traceState?.get('rojo')).toBe('1');
    expect(span!.spanContext().traceState?.set('congo', '2').serialize()).toBe('congo=2,rojo=1');
    expect(t.traceId).toBe(TRACE);
  });

  it('records the request id, counts, model version, policy and reason counts', () => {
    const exporter = withSdk();
    // Decisions that name their policy (a field the span reads when it is there).
    const withPolicy = DECISIONS.map((d) => ({ ...d, policy: 'tenant:acme' }) as RoutingDecision);
    new RequestTracer({ enabled: true }).begin(INCOMING, undefined, origin).decided(withPolicy, false);
    const a = exporter.getFinishedSpans()[0]!.attributes;
    expect(a[SPAN_ATTRIBUTES.requestId]).toBe('req-1');
    expect(a[SPAN_ATTRIBUTES.candidateCount]).toBe(4);
    expect(a[SPAN_ATTRIBUTES.lightweightCount]).toBe(2);
    expect(a[SPAN_ATTRIBUTES.modelVersion]).toBe('m-7');
    expect(a[SPAN_ATTRIBUTES.policy]).toBe('tenant:acme');
    expect(a[`${SPAN_ATTRIBUTES.reasonPrefix}model`]).toBe(2);
    expect(a[`${SPAN_ATTRIBUTES.reasonPrefix}uncertain`]).toBe(1);
    expect(a[`${SPAN_ATTRIBUTES.reasonPrefix}below_threshold`]).toBe(1);
    expect(a[`${SPAN_ATTRIBUTES.reasonPrefix}breaker_open`]).toBeUndefined();
    expect(a['messaging.destination.name']).toBe('routing.requests');
    expect(a['messaging.destination.partition.id']).toBe('2');
    expect(a['messaging.kafka.offset']).toBe(41);
  });

  it('marks a dead-lettered request and a breaker fallback as errors', () => {
    const exporter = withSdk();
    const tracer = new RequestTracer({ enabled: true });
    tracer.begin(INCOMING, undefined, origin).rejected('query_embedding: expected a list');
    const fallback = DECISIONS.map((d) => ({ ...d, reason: 'breaker_open' as const, use_lightweight: false }));
    tracer.begin(INCOMING, undefined, origin).decided(fallback, true);
    const [dlq, open] = exporter.getFinishedSpans();
    expect(open!.attributes[SPAN_ATTRIBUTES.policy]).toBeUndefined();
    expect(dlq!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'dead-lettered: query_embedding: expected a list' });
    expect(dlq!.attributes[SPAN_ATTRIBUTES.error]).toBe('query_embedding: expected a list');
    expect(dlq!.parentSpanContext?.spanId).toBe(PARENT);
    expect(open!.status.code).toBe(SpanStatusCode.ERROR);
    expect(open!.attributes[SPAN_ATTRIBUTES.fallback]).toBe(true);
    expect(open!.attributes[`${SPAN_ATTRIBUTES.reasonPrefix}breaker_open`]).toBe(4);
  });

  it('starts a new trace for a request without a context, and ignores an invalid one', () => {
    const exporter = withSdk();
    const tracer = new RequestTracer({ enabled: true });
    const fresh = tracer.begin(undefined, 'rojo=1', origin);
    const broken = tracer.begin('00-zz', undefined, origin);
    fresh.decided(DECISIONS, false);
    broken.decided(DECISIONS, false);
    const spans = exporter.getFinishedSpans();
    expect(spans).toHaveLength(2);
    for (const [i, t] of [fresh, broken].entries()) {
      expect(spans[i]!.parentSpanContext).toBeUndefined();
      expect(t.traceId).toBe(spans[i]!.spanContext().traceId);
      expect(parseTraceparent(t.headers?.traceparent)?.spanId).toBe(spans[i]!.spanContext().spanId);
      expect(t.headers?.tracestate).toBeUndefined();
    }
    expect(fresh.traceId).not.toBe(broken.traceId);
  });

  it('makes no span with tracing off, and still carries the incoming context as received', () => {
    const exporter = withSdk();
    const t = new RequestTracer({ enabled: false }).begin(INCOMING, 'rojo=1', origin);
    t.decided(DECISIONS, false);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    expect(t.headers).toEqual({ traceparent: INCOMING, tracestate: 'rojo=1' });
    expect(t.traceId).toBe(TRACE);
  });
});

describe('RequestTracer with no SDK (the API alone)', () => {
  it('carries the incoming traceparent and tracestate exactly as received', () => {
    const later = `01-${TRACE}-${PARENT}-01-future`;
    const t = new RequestTracer({ enabled: true }).begin(later, 'rojo=1', origin);
    expect(t.headers).toEqual({ traceparent: later, tracestate: 'rojo=1' });
    expect(t.traceId).toBe(TRACE);
    t.decided(DECISIONS, false);
  });

  it('carries nothing for a request without a context', () => {
    const t = new RequestTracer({ enabled: true }).begin(undefined, undefined, origin);
    expect(t.headers).toBeUndefined();
    expect(t.traceId).toBeUndefined();
    t.rejected('x');
  });
});
