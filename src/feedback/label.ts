// What an outcome teaches the router. The router's score (a decision's `confidence`) is the
// probability that THE LIGHTWEIGHT MODEL SUFFICES for a candidate, so an outcome is useful for
// training and monitoring only when it says whether the lightweight model sufficed. This module
// is the single definition of that label; the monitor, the training-set builder and the tests
// all call `outcomeLabel`.
import type { Outcome } from '../wire/types.js';

export type ServedBy = 'lightweight' | 'heavyweight';

export interface LabelOptions {
  /**
   * For outcomes of heavyweight-served requests: the lightweight answer's `quality` (0..1) at or
   * above which the lightweight model "would have sufficed". Default 0.5.
   */
  qualityThreshold: number;
}

export const DEFAULT_LABEL_OPTIONS: Readonly<LabelOptions> = Object.freeze({ qualityThreshold: 0.5 });

/** Why an outcome yields no label (a metric label and a test handle). */
export type UnlabeledReason = 'heavyweight_without_quality' | 'unknown_route';

export type LabelResult =
  | { usable: true; label: 0 | 1; servedBy: ServedBy }
  | { usable: false; reason: UnlabeledReason; servedBy: ServedBy | undefined };

/**
 * The label "the lightweight model sufficed" (1) or "it did not" (0) that an outcome gives, or
 * why it gives none. Precisely:
 *
 * - Who served it: the outcome's `served_by` when present; otherwise the route the router chose
 *   (`decisionUseLightweight`, from the joined decision). With neither, the outcome has no label
 *   (`unknown_route`).
 * - Served by the LIGHTWEIGHT model: label = `ok`. The lightweight model actually ran, and `ok`
 *   is the pipeline's verdict that its result was good enough. `quality`, if present, is kept
 *   in the store but does not change the label: `ok` is the pipeline's own acceptance rule.
 * - Served by the HEAVYWEIGHT model: `ok` says how the heavyweight model did, which tells us
 *   nothing about the lightweight one. The outcome gives a label only when the pipeline
 *   shadow-evaluated the lightweight model on the same input and reports that answer's quality
 *   in `quality`: label = `quality >= qualityThreshold`. Without `quality` there is no label
 *   (`heavyweight_without_quality`); the outcome is still stored and joined.
 *
 * Decisions the breaker made (`reason` `breaker_open`) carry no model score; callers skip them
 * for coverage and calibration (the label itself does not depend on the decision's reason).
 */
export function outcomeLabel(
  outcome: Pick<Outcome, 'ok' | 'quality' | 'served_by'>,
  decisionUseLightweight: boolean | undefined,
  opts: LabelOptions = DEFAULT_LABEL_OPTIONS,
): LabelResult {
  const servedBy: ServedBy | undefined =
    outcome.served_by ?? (decisionUseLightweight === undefined ? undefined : decisionUseLightweight ? 'lightweight' : 'heavyweight');
  if (servedBy === undefined) return { usable: false, reason: 'unknown_route', servedBy };
  if (servedBy === 'lightweight') return { usable: true, label: outcome.ok ? 1 : 0, servedBy };
  if (outcome.quality === undefined || outcome.quality === null) {
    return { usable: false, reason: 'heavyweight_without_quality', servedBy };
  }
  return { usable: true, label: outcome.quality >= opts.qualityThreshold ? 1 : 0, servedBy };
}
