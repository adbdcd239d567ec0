// Synthetic traffic for the feedback tests, from TRAIN's seeded generator (src/train/synthetic.ts):
// the base mix the first model is trained on, and a DRIFTED mix whose ground truth changed —
// the lightweight models now need a clearly proven success rate (≥ ≈ 0.93 instead of 0.80) and
// freshness no longer makes up for it. Labels are drawn deterministically from a hash of the
// (request, candidate) key, so the same decision always gets the same outcome.
import { createHash } from 'node:crypto';
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, extractFeatures } from '../../../src/engine/features.js';
import { validateRequest } from '../../../src/engine/validate.js';
import type { Outcome } from '../../../src/wire/types.js';
import { DatasetBuilder } from '../../../src/train/data.js';
import { generateTraffic, trafficTruth, type SyntheticRequest } from '../../../src/train/synthetic.js';
import { trainModel, type TrainResult } from '../../../src/train/trainer.js';

const sig = (x: number): number => 1 / (1 + Math.exp(-x));

/** P(the lightweight model suffices) after the drift, from the engine's five features. */
export function driftTruth(f: ArrayLike<number>, o = 0): number {
  const s = f[o]!, fr = f[o + 2]!, q = f[o + 3]!, m = f[o + 4]!;
  const relevant = sig((s - 0.45) / 0.02);
  const proven = sig((q - 0.93) / 0.01);
  const popular = sig((fr - 0.45) / 0.02) * sig((m - 0.5) / 0.05);
  return 0.005 + 0.99 * relevant * (1 - (1 - proven) * (1 - popular));
}

/** A uniform number in [0, 1) from a key: the "coin" of a decision's outcome. */
export function coin(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;
}

export function labelOf(requestId: string, candidateId: string, p: number): 0 | 1 {
  return coin(`${requestId}\u0000${candidateId}`) < p ? 1 : 0;
}

/**
 * The outcome a pipeline reports for a decision whose true label is `label`: a lightweight-served
 * candidate says ok = label; a heavyweight-served one reports the shadow-evaluated quality of
 * the lightweight answer (0.9 when it would have sufficed, 0.1 otherwise).
 */
export function outcomeFor(requestId: string, candidateId: string, useLightweight: boolean, label: 0 | 1): Outcome {
  return useLightweight
    ? { request_id: requestId, candidate_id: candidateId, ok: label === 1, served_by: 'lightweight' }
    : { request_id: requestId, candidate_id: candidateId, ok: true, quality: label === 1 ? 0.9 : 0.1, served_by: 'heavyweight' };
}

export function traffic(seed: number, requests: number, now: number, prefix = `t${seed}`): SyntheticRequest[] {
  const out: SyntheticRequest[] = [];
  for (const r of generateTraffic({ requests, seed, dim: 64, now })) out.push({ ...r, request_id: `${prefix}-${r.request_id}` });
  return out;
}

/** The engine's features of every candidate of a request, at its `now`. */
export function featuresOf(r: SyntheticRequest): Float32Array {
  const v = validateRequest(r);
  const feat = new Float32Array(v.n * FEATURE_COUNT);
  extractFeatures(v, DEFAULT_FEATURE_CONFIG, feat, r.now);
  return feat;
}

/**
 * Trains a model with TRAIN's pipeline on requests labelled by `truth` (or the inverse of it,
 * for a deliberately bad model).
 */
export function trainOn(requests: SyntheticRequest[], truth: 'base' | 'drift', opts: { invert?: boolean; seed?: number } = {}): TrainResult {
  const b = new DatasetBuilder();
  requests.forEach((r, line) => {
    const f = featuresOf(r);
    r.candidates.forEach((c, i) => {
      const p = truth === 'base' ? trafficTruth(f, i * FEATURE_COUNT) : driftTruth(f, i * FEATURE_COUNT);
      const y = labelOf(r.request_id, c.id, p);
      b.add({ features: Array.from(f.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT)), label: opts.invert ? 1 - y : y }, line + 1);
    });
  });
  return trainModel(b.build(), { seed: opts.seed ?? 1, testFraction: 0, calFraction: 0.25 });
}
