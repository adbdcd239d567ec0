// Trace context through the real pipeline, in process, with the OpenTelemetry SDK's in-memory
// exporter registered as the global tracer provider (as a host would): each request's span is a
// child of its record's traceparent, the decision and DLQ records carry the span's context, the
// rows its trace id; a dead-lettered request and a breaker fallback end their spans as errors.
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/app.js';
import { SPAN_ATTRIBUTES } from '../../../src/observe/tracing.js';
import { parseTraceparent } from '../../../src/wire/trace.js';
import {
  collect,
  decision,
  deleteTopics,
  dropSchema,
  header,
  makeRequest,
  names,
  produce,
  query,
  record,
  startApp,
  testConfig,
  waitFor,
  type Collector,
  type Got,
} from './helpers.js';

const exporter = new InMemorySpanExporter();
const n = names('trace');
let app: App;
let out: Collector;
let dlq: Collector;

function traceId(i: number): string {
  return `${(0xa0000000 + i).toString(16)}${'5'.repeat(24)}`;
}
const PARENT = 'b7ad6b7169203331';

function spanOf(requestKey: string): ReadableSpan | undefined {
  return exporter.getFinishedSpans().find((s) => s.attributes[SPAN_ATTRIBUTES.requestId] === requestKey);
}

function recordsOf(records: Got[], key: string): Got[] {
  return records.filter((r) => r.message.key?.toString() === key);
}

beforeAll(async () => {
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  app = await startApp(testConfig(n));
  out = await collect([n.lightweight, n.heavyweight]);
  dlq = await collect([n.dlq]);
});

afterAll(async () => {
  await Promise.all([out?.stop(), dlq?.stop()]);
  await app?.stop({ timeoutMs: 5000 });
  trace.disable();
  await dropSchema(n.schema);
  await deleteTopics(n);
});

describe('trace context through serve (SDK registered)', () => {
  it('makes one child span per request, and its decisions and rows carry the trace', async () => {
    const reqs = Array.from({ length: 4 }, (_, i) => makeRequest(`traced-${i}`, 3, 8));
    const plain = makeRequest('untraced', 2, 8);
    await produce(n.requests, [
      ...reqs.map((r, i) => {
        const m = record(r, i % 2 === 0 ? 'json' : 'protobuf');
        return { ...m, headers: { ...m.headers, traceparent: `00-${traceId(i)}-${PARENT}-01`, tracestate: `vendor=r${i}` } };
      }),
      record(plain, 'json'),
    ]);
    await out.until((rs) => rs.length >= 4 * 3 + 2, 60_000, 'decisions');

    for (const [i, r] of reqs.entries()) {
      const span = spanOf(r.request_id);
      expect(span, r.request_id).toBeDefined();
      expect(span!.spanContext().traceId).toBe(traceId(i));
      expect(span!.parentSpanContext?.spanId).toBe(PARENT);
      expect(span!.name).toBe(`process ${n.requests}`);
      expect(span!.status.code).toBe(SpanStatusCode.UNSET);
      const a = span!.attributes;
      expect(a[SPAN_ATTRIBUTES.candidateCount]).toBe(3);
      const records = recordsOf(out.records, r.request_id);
      expect(records).toHaveLength(3);
      const decisions = records.map((g) => decision(g.message));
      expect(a[SPAN_ATTRIBUTES.modelVersion]).toBe(decisions[0]!.model_version);
      expect(a[SPAN_ATTRIBUTES.lightweightCount]).toBe(decisions.filter((d) => d.use_lightweight).length);
      const reasons: Record<string, number> = {};
      for (const d of decisions) reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
      for (const [reason, count] of Object.entries(reasons)) expect(a[`${SPAN_ATTRIBUTES.reasonPrefix}${reason}`]).toBe(count);
      // Every decision record continues the trace from this span.
      for (const g of records) {
        expect(header(g.message, 'traceparent')).toBe(`00-${traceId(i)}-${span!.spanContext().spanId}-01`);
        expect(header(g.message, 'tracestate')).toBe(`vendor=r${i}`);
      }
    }
    // A request without a context starts a trace of its own, carried the same way.
    const root = spanOf(plain.request_id)!;
    expect(root.parentSpanContext).toBeUndefined();
    for (const g of recordsOf(out.records, plain.request_id)) {
      expect(parseTraceparent(header(g.message, 'traceparent'))?.spanId).toBe(root.spanContext().spanId);
    }

    await waitFor(
      async () => (await query(`SELECT 1 FROM "${n.schema}".routing_decisions WHERE request_id LIKE 'traced-%' OR request_id = 'untraced'`)).length === 14,
      30_000,
      'rows',
    );
    const rows = await query<{ request_id: string; trace_id: string | null }>(`SELECT DISTINCT request_id, trace_id FROM "${n.schema}".routing_decisions ORDER BY request_id`);
    expect(rows).toEqual([
      ...reqs.map((r, i) => ({ request_id: r.request_id, trace_id: traceId(i) })),
      { request_id: plain.request_id, trace_id: root.spanContext().traceId },
    ]);
  });

  it('ends a dead-lettered request span as an error, and its DLQ record carries the span', async () => {
    await produce(n.requests, [
      { key: 'broken', value: Buffer.from('{"request_id": "broken", "candidates": ['), headers: { 'content-type': 'application/json', traceparent: `00-${traceId(9)}-${PARENT}-01` } },
    ]);
    await dlq.until((rs) => rs.length >= 1, 60_000, 'the DLQ record');
    const span = exporter.getFinishedSpans().find((s) => s.spanContext().traceId === traceId(9));
    expect(span).toBeDefined();
    expect(span!.status.code).toBe(SpanStatusCode.ERROR);
    expect(span!.status.message).toMatch(/^dead-lettered: /);
    expect(span!.parentSpanContext?.spanId).toBe(PARENT);
    const m = dlq.records[0]!.message;
    expect(header(m, 'traceparent')).toBe(`00-${traceId(9)}-${span!.spanContext().spanId}-01`);
    expect(header(m, 'td-error')).toBeDefined();
  });

  it('ends the span of a request the breaker answered as an error', async () => {
    app.control.tripBreaker();
    const r = makeRequest('while-open', 2, 8);
    const m = record(r, 'json');
    await produce(n.requests, [{ ...m, headers: { ...m.headers, traceparent: `00-${traceId(10)}-${PARENT}-01` } }]);
    await out.until((rs) => recordsOf(rs, r.request_id).length === 2, 60_000, 'fallback decisions');
    const span = spanOf(r.request_id)!;
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes[SPAN_ATTRIBUTES.fallback]).toBe(true);
    expect(span.attributes[`${SPAN_ATTRIBUTES.reasonPrefix}breaker_open`]).toBe(2);
    for (const g of recordsOf(out.records, r.request_id)) expect(parseTraceparent(header(g.message, 'traceparent'))?.traceId).toBe(traceId(10));
    app.control.resetBreaker();
  });
});
