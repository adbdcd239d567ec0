// Prometheus metrics of the service (prom-client). One Registry per App, not the global one,
// so two Apps in one process (tests, the demo) never fight over metric names.
import client from 'prom-client';

export type BreakerStateName = 'closed' | 'half_open' | 'open';
export const BREAKER_STATE_VALUE: Readonly<Record<BreakerStateName, number>> = Object.freeze({ closed: 0, half_open: 1, open: 2 });

export interface Metrics {
  registry: client.Registry;
  /** Requests consumed, by encoding (json|protobuf) and outcome (decided|rejected|failed). */
  requests: client.Counter<'encoding' | 'outcome'>;
  /** Decisions published, by route (lightweight|heavyweight) and reason. */
  decisions: client.Counter<'route' | 'reason'>;
  /** Records sent to the DLQ, by reason class (DecodeError kind or "internal"). */
  dlq: client.Counter<'reason'>;
  /** From the request record's timestamp to its decisions being acknowledged (and logged). */
  endToEnd: client.Histogram;
  /** Scoring time in the engine (pool round trip). */
  engine: client.Histogram;
  breakerState: client.Gauge;
  breakerTransitions: client.Counter<'to'>;
  /** Rows accepted by the decision log but not yet durable. */
  logBacklog: client.Gauge;
  consumerLag: client.Gauge<'topic' | 'partition'>;
  modelInfo: client.Gauge<'version'>;
  inFlight: client.Gauge;
  pausedPartitions: client.Gauge;
  /** Batches committed, by mode (at_least_once|exactly_once). */
  commits: client.Counter<'mode'>;
  /** Processing errors that made a batch retry (Kafka or log failures), by stage. */
  errors: client.Counter<'stage'>;
  rebalances: client.Counter;
  /** Producer threads that ended unasked (crash, out of memory) and were replaced on the next send. */
  producerThreadExits: client.Counter;
  /** Event-loop delay (ms), p99 of the last sampling window. */
  eventLoopDelay: client.Gauge;
}

export interface MetricsOptions {
  /** process_* and nodejs_* metrics (RSS, heap, GC...). Default true. */
  defaultMetrics?: boolean;
  prefix?: string;
}

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new client.Registry();
  const p = opts.prefix ?? 'td_';
  if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  return {
    registry,
    requests: new client.Counter({
      name: `${p}requests_total`,
      help: 'Routing requests consumed, by encoding and outcome: decided (breaker fallbacks included) or rejected (to the DLQ).',
      labelNames: ['encoding', 'outcome'],
      registers,
    }),
    decisions: new client.Counter({
      name: `${p}decisions_total`,
      help: 'Routing decisions published, by route and reason.',
      labelNames: ['route', 'reason'],
      registers,
    }),
    dlq: new client.Counter({
      name: `${p}dlq_total`,
      help: 'Records sent to the dead-letter topic, by reason class.',
      labelNames: ['reason'],
      registers,
    }),
    endToEnd: new client.Histogram({
      name: `${p}end_to_end_seconds`,
      help: 'From the request record timestamp to its decisions acknowledged by Kafka and durable in the log.',
      buckets: latencyBuckets,
      registers,
    }),
    engine: new client.Histogram({
      name: `${p}engine_seconds`,
      help: 'Scoring time of one request through the router pool.',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    }),
    breakerState: new client.Gauge({
      name: `${p}breaker_state`,
      help: 'Circuit breaker around scoring: 0 closed, 1 half-open, 2 open.',
      registers,
    }),
    breakerTransitions: new client.Counter({
      name: `${p}breaker_transitions_total`,
      help: 'Circuit breaker state changes, by new state.',
      labelNames: ['to'],
      registers,
    }),
    logBacklog: new client.Gauge({
      name: `${p}decision_log_backlog`,
      help: 'Decision rows accepted by the log but not yet durable in Postgres.',
      registers,
    }),
    consumerLag: new client.Gauge({
      name: `${p}consumer_lag`,
      help: 'Records between the group committed offset and the high watermark, by partition.',
      labelNames: ['topic', 'partition'],
      registers,
    }),
    modelInfo: new client.Gauge({
      name: `${p}model_info`,
      help: 'The model version in use (value 1).',
      labelNames: ['version'],
      registers,
    }),
    inFlight: new client.Gauge({
      name: `${p}in_flight_requests`,
      help: 'Requests being decoded, scored or published right now.',
      registers,
    }),
    pausedPartitions: new client.Gauge({
      name: `${p}paused_partitions`,
      help: 'Request partitions paused by backpressure.',
      registers,
    }),
    commits: new client.Counter({
      name: `${p}offset_commits_total`,
      help: 'Offset commits of the request topic, by delivery mode.',
      labelNames: ['mode'],
      registers,
    }),
    errors: new client.Counter({
      name: `${p}processing_errors_total`,
      help: 'Failures that made a batch be retried, by stage (produce, log, commit, engine).',
      labelNames: ['stage'],
      registers,
    }),
    producerThreadExits: new client.Counter({
      name: `${p}producer_thread_exits_total`,
      help: 'Producer threads that ended unasked (crash, out of memory); the next send starts a new one.',
      registers,
    }),
    rebalances: new client.Counter({
      name: `${p}rebalances_total`,
      help: 'Consumer group joins (initial and after rebalances).',
      registers,
    }),
    eventLoopDelay: new client.Gauge({
      name: `${p}event_loop_delay_ms`,
      help: 'Event-loop delay p99 over the last window, in milliseconds.',
      registers,
    }),
  };
}

/** Sets the model info gauge so exactly one version is reported. */
export function setModelVersion(m: Metrics, version: string): void {
  m.modelInfo.reset();
  m.modelInfo.set({ version }, 1);
}
