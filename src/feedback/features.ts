// The feature vectors the decision log keeps (routing_decisions.features) for retraining.
// Computed by the stream processor from the validated request with the engine's own
// extractFeatures — the same function, configuration (the default, as `serve` configures the
// router pool) and clock (the decision time) the worker's Router used — because the pool's
// responses carry scores, not features. One small Float32Array per request; each row gets a
// view of its candidate's FEATURE_COUNT values.
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, extractFeatures, type FeatureConfig } from '../engine/features.js';
import type { ValidatedRequest } from '../engine/validate.js';

/** Features of every candidate of `req` at `decidedAt`, looked up by candidate id. */
export function decisionFeatures(
  req: ValidatedRequest,
  decidedAt: Date,
  config: FeatureConfig = DEFAULT_FEATURE_CONFIG,
): (candidateId: string) => Float32Array | undefined {
  const out = new Float32Array(req.n * FEATURE_COUNT);
  extractFeatures(req, config, out, decidedAt.getTime() / 1000);
  const index = new Map<string, number>();
  for (let i = 0; i < req.n; i++) index.set(req.ids[i]!, i);
  return (id) => {
    const i = index.get(id);
    return i === undefined ? undefined : out.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT);
  };
}
