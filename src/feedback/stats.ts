// The feedback loop in GetStats: FeedbackSnapshot (camelCase) → the FeedbackStats message of
// control.proto (snake_case, for proto-loader). Pure. CONTROL's statsMsg calls this, so the
// control plane needs no knowledge of the monitor.
import type { FeedbackSnapshot } from './service.js';

type Msg = Record<string, unknown>;

const uint = (n: number): number => (Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);

export function feedbackStatsMsg(s: FeedbackSnapshot): Msg {
  const c = s.consumer;
  return {
    window: uint(s.window),
    epsilon: s.epsilon,
    min_samples: uint(s.minSamples),
    versions: s.versions.map((v) => {
      const m: Msg = {
        version: v.version,
        calibrated: v.alpha !== null,
        alpha: v.alpha ?? 0,
        qhat: v.qhat ?? 0,
        target_coverage: v.targetCoverage ?? 0,
        drift_threshold: v.driftThreshold ?? 0,
        outcomes: uint(v.outcomes),
        labeled: uint(v.labeled),
        lightweight_samples: uint(v.lightweightSamples),
        drifting: v.drifting,
        drift_events: uint(v.driftEvents),
      };
      // proto3 `optional`: absent means "not measured yet", distinct from 0.
      if (v.coverage !== null) m.coverage = v.coverage;
      if (v.lightweightSuccessRate !== null) m.lightweight_success_rate = v.lightweightSuccessRate;
      if (v.ece !== null) m.calibration_error = v.ece;
      return m;
    }),
    outcomes_stored: uint(c?.stored ?? 0),
    outcomes_duplicate: uint(c?.duplicates ?? 0),
    outcomes_rejected: uint(c?.rejected ?? 0),
    outcomes_unjoined: uint(c?.unjoined ?? 0),
    pending_joins: uint(c?.pendingJoins ?? 0),
    consumer_joined: c?.joined ?? false,
  };
}
