// Prometheus metrics of the feedback loop, registered on the service's registry (STREAM's
// src/observe/metrics.ts creates one per App; these live beside them under the same prefix).
// The per-version gauges read the monitor at scrape time (prom-client `collect`), so observing
// an outcome costs no metric updates beyond two counter increments.
import client from 'prom-client';
import type { CalibrationMonitor, DriftEvent, VersionSnapshot } from './monitor.js';

export type OutcomeResult = 'stored' | 'duplicate' | 'rejected' | 'unjoined';

export interface FeedbackMetrics {
  /** Outcome records consumed, by result (stored, duplicate redelivery, rejected to the DLQ, unjoined). */
  outcomes: client.Counter<'result'>;
  /** Outcomes by resolved route and the label they gave ("1", "0", or "none"). */
  labels: client.Counter<'served_by' | 'label'>;
  /** Drift episodes started, per model version. */
  driftEvents: client.Counter<'version'>;
  coverage: client.Gauge<'version'>;
  targetCoverage: client.Gauge<'version'>;
  lightweightSuccess: client.Gauge<'version'>;
  ece: client.Gauge<'version'>;
  samples: client.Gauge<'version'>;
  /** 1 while the version's rolling coverage is below 1 − α − ε (with enough samples). */
  drift: client.Gauge<'version'>;
  /** Outcomes waiting for their decision row to become visible. */
  pendingJoins: client.Gauge;
}

export interface FeedbackMetricsOptions {
  prefix?: string;
  /** Read at scrape time for the pending-join gauge. */
  pendingJoins?: () => number;
}

export function createFeedbackMetrics(
  registry: client.Registry,
  monitor: CalibrationMonitor,
  opts: FeedbackMetricsOptions = {},
): FeedbackMetrics {
  const p = opts.prefix ?? 'td_';
  const registers = [registry];

  // Each per-version gauge fills itself from the monitor at scrape time: reset, then one series
  // per tracked version, so a forgotten version's series disappears instead of freezing at its
  // last value. A snapshot is O(versions × bins), cheap enough to take per gauge.
  const gauge = (name: string, help: string, pick: (v: VersionSnapshot) => number | null): client.Gauge<'version'> =>
    new client.Gauge({
      name: `${p}${name}`,
      help,
      labelNames: ['version'],
      registers,
      collect() {
        this.reset();
        for (const v of monitor.snapshot().versions) {
          const value = pick(v);
          if (value !== null) this.set({ version: v.version }, value);
        }
      },
    });

  const m: FeedbackMetrics = {
    outcomes: new client.Counter({
      name: `${p}outcomes_total`,
      help: 'Outcome records consumed from the outcomes topic, by result (stored, duplicate, rejected to the DLQ, unjoined).',
      labelNames: ['result'],
      registers,
    }),
    labels: new client.Counter({
      name: `${p}outcome_labels_total`,
      help: 'Outcomes by the route that served them and the "lightweight sufficed" label they gave (1, 0, none).',
      labelNames: ['served_by', 'label'],
      registers,
    }),
    driftEvents: new client.Counter({
      name: `${p}calibration_drift_events_total`,
      help: 'Times a model version\'s rolling conformal coverage fell below 1 - alpha - epsilon.',
      labelNames: ['version'],
      registers,
    }),
    coverage: gauge(
      'conformal_coverage',
      'Rolling conformal coverage from outcomes: share of labelled outcomes whose label is in the prediction set, per model version.',
      (v) => v.coverage,
    ),
    targetCoverage: gauge('conformal_coverage_target', 'Target conformal coverage 1 - alpha of the model version.', (v) => v.targetCoverage),
    lightweightSuccess: gauge(
      'lightweight_success_rate',
      'Rolling share of lightweight-served outcomes reported ok, per model version.',
      (v) => v.lightweightSuccessRate,
    ),
    ece: gauge('calibration_error', 'Rolling expected calibration error of the confidence against outcome labels, per model version.', (v) => v.ece),
    samples: gauge('feedback_window_samples', 'Labelled outcomes in the rolling window, per model version.', (v) => v.labeled),
    drift: gauge(
      'calibration_drift',
      "1 while the version's rolling coverage is below 1 - alpha - epsilon (with the minimum sample count), else 0.",
      (v) => (v.drifting ? 1 : 0),
    ),
    pendingJoins: new client.Gauge({
      name: `${p}outcomes_pending_join`,
      help: 'Outcomes stored but waiting for their decision row (decision log not yet flushed).',
      registers,
      collect() {
        if (opts.pendingJoins) this.set(opts.pendingJoins());
      },
    }),
  };
  return m;
}

/** Counts a drift event (the caller logs it). */
export function recordDrift(m: FeedbackMetrics, e: DriftEvent): void {
  if (e.drifting) m.driftEvents.inc({ version: e.version });
}
