// The routing rule: when may a candidate go to the lightweight model?
//
// WHY a fixed precedence: `reason` lands in every decision row and on every Kafka record, and
// operators tune thresholds by looking at which rule fired, so exactly one reason must apply:
//   1. set == {heavyweight}        → heavyweight, 'model'           (the model says heavyweight)
//   2. confidence < threshold      → heavyweight, 'below_threshold'
//   3. set != {lightweight} or uncertainty > max_uncertainty
//                                  → heavyweight, 'uncertain'
//   4. otherwise                   → lightweight, 'model'
// So lightweight requires confidence ≥ threshold AND uncertainty ≤ max_uncertainty AND the set
// being exactly {lightweight}. ('breaker_open' is set by the stream layer, not here.)
import type { DecisionReason } from '../wire/types.js';
import { SET_HEAVY, SET_LIGHT, type PredictionSetMask } from './conformal.js';

export interface Thresholds {
  confidence: number;
  maxUncertainty: number;
}

/** The seed's defaults. */
export const DEFAULT_THRESHOLDS: Readonly<Thresholds> = Object.freeze({ confidence: 0.85, maxUncertainty: 0.15 });

export interface Decision {
  use_lightweight: boolean;
  reason: DecisionReason;
}

const HEAVY_MODEL: Readonly<Decision> = Object.freeze({ use_lightweight: false, reason: 'model' });
const BELOW: Readonly<Decision> = Object.freeze({ use_lightweight: false, reason: 'below_threshold' });
const UNCERTAIN: Readonly<Decision> = Object.freeze({ use_lightweight: false, reason: 'uncertain' });
const LIGHT: Readonly<Decision> = Object.freeze({ use_lightweight: true, reason: 'model' });

// PERF: the set masks copied into module constants, read once at load. decide() runs per
// candidate, and where the modules are transpiled to CommonJS (tsx, under which the benchmarks
// run) an imported name is an accessor on the exporting module's object, called on every read.
const HEAVY_ONLY = SET_HEAVY;
const LIGHT_ONLY = SET_LIGHT;

/** Applies the rule above. Returns shared frozen objects (no allocation per candidate). */
export function decide(confidence: number, uncertainty: number, set: PredictionSetMask, thresholds: Thresholds): Readonly<Decision> {
  if (set === HEAVY_ONLY) return HEAVY_MODEL;
  if (!(confidence >= thresholds.confidence)) return BELOW;
  if (set !== LIGHT_ONLY || uncertainty > thresholds.maxUncertainty) return UNCERTAIN;
  return LIGHT;
}
