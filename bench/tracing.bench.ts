// The per-request cost of trace context on serve's consuming thread, with no OpenTelemetry SDK
// registered (the API's no-op): RequestTracer.begin + decided for a request of 10 decisions,
// with and without an incoming traceparent, TD_TRACING on and off.
//
//   node --import tsx bench/tracing.bench.ts        (≈ 10 s; BENCH_ROUNDS, BENCH_ITERATIONS)
import { cpus, loadavg } from 'node:os';
import type { RoutingDecision } from '../src/wire/types.js';
import { RequestTracer } from '../src/observe/tracing.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 7);
const iterations = Number(process.env.BENCH_ITERATIONS ?? 200_000);
const decisions: RoutingDecision[] = Array.from({ length: 10 }, (_, i) => ({
  request_id: 'req-1',
  candidate_id: `c${i}`,
  confidence: 0.9,
  uncertainty: 0.05,
  use_lightweight: i % 2 === 0,
  rank: i,
  model_version: 'v1',
  reason: 'model',
  metadata: {},
  inference_time_us: 10,
}));
const origin = { topic: 'routing.requests', partition: 0, offset: '12345' };
const parents = Array.from({ length: 1024 }, (_, i) => `00-${(i + 1).toString(16).padStart(32, '0')}-00f067aa0ba902b7-01`);

const cases: { name: string; tracer: RequestTracer; traceparent: (i: number) => string | undefined }[] = [
  { name: 'on, no traceparent', tracer: new RequestTracer({ enabled: true }), traceparent: () => undefined },
  { name: 'on, traceparent + tracestate', tracer: new RequestTracer({ enabled: true }), traceparent: (i) => parents[i & 1023] },
  { name: 'off, no traceparent', tracer: new RequestTracer({ enabled: false }), traceparent: () => undefined },
  { name: 'off, traceparent + tracestate', tracer: new RequestTracer({ enabled: false }), traceparent: (i) => parents[i & 1023] },
];

let sink = 0;
const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
for (let round = 0; round < rounds; round++) {
  // Interleaved, so background load hits every case alike.
  for (const c of cases) {
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) {
      const t = c.tracer.begin(c.traceparent(i), 'rojo=1', origin);
      if (t.headers) sink++;
      t.decided(decisions, false);
    }
    samples.get(c.name)!.push(((performance.now() - t0) * 1e6) / iterations);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
process.stdout.write(`tracing cost per request, no SDK — ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}, node ${process.version}, median of ${rounds} rounds × ${iterations}\n`);
for (const c of cases) process.stdout.write(`  ${c.name.padEnd(32)} ${median(samples.get(c.name)!).toFixed(0).padStart(6)} ns\n`);
if (sink < 0) process.stdout.write('\n');
