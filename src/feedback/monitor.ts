// Live calibration monitoring from outcomes, per model version. Pure: no I/O, no timers, no
// clock; the outcome consumer feeds it joined (outcome, decision) pairs and the metrics module
// reads `snapshot()` at scrape time.
//
// For each model version it keeps, in bounded memory (typed-array rings of the last `window`
// entries, running sums so each observation is O(1)):
//   - conformal coverage: the share of labelled outcomes whose label lies in the prediction set
//     the serving model's calibration gives for the decision's confidence (split conformal,
//     nonconformity 1 − p̂(y|x), so y ∈ set ⇔ 1 − p̂(y|x) ≤ q̂, with p̂(1|x) = confidence);
//   - lightweight-route success rate: the share of lightweight-served outcomes with ok = true;
//   - expected calibration error of the confidence against the label (equal-width bins).
// Drift: once a version has at least `minSamples` labelled outcomes in its window and coverage
// falls below 1 − α − ε, the version is "drifting" (one event per episode). It stops drifting
// when coverage climbs back to 1 − α − ε/2 (hysteresis, so a coverage hovering at the line does
// not flap and flood the log).
import { DEFAULT_LABEL_OPTIONS, outcomeLabel, type LabelOptions, type ServedBy } from './label.js';
import { predictionSet, SET_HEAVY, SET_LIGHT } from '../engine/conformal.js';
import type { DecisionReason, Outcome } from '../wire/types.js';

export interface Calibration {
  /** Miscoverage level the model was calibrated for: target coverage is 1 − alpha. */
  alpha: number;
  /** Conformal quantile of the nonconformity 1 − p̂(y|x). */
  qhat: number;
}

export interface MonitorOptions {
  /** Labelled outcomes (and, separately, lightweight-served outcomes) kept per version. */
  window: number;
  /** Drift tolerance ε: drift when coverage < 1 − α − ε. */
  epsilon: number;
  /** No drift verdict before this many labelled outcomes are in a version's window. */
  minSamples: number;
  /** Versions tracked at once; the least recently observed is forgotten beyond this. */
  maxVersions: number;
  /** Bins of the calibration error. */
  eceBins: number;
  label: LabelOptions;
}

export const DEFAULT_MONITOR_OPTIONS: Readonly<MonitorOptions> = Object.freeze({
  window: 2000,
  epsilon: 0.05,
  minSamples: 200,
  maxVersions: 8,
  eceBins: 10,
  label: DEFAULT_LABEL_OPTIONS,
});

/** One outcome joined to the decision it reports on. */
export interface JoinedOutcome {
  outcome: Pick<Outcome, 'ok' | 'quality' | 'served_by'>;
  decision: { model_version: string; confidence: number; use_lightweight: boolean; reason?: DecisionReason | string };
}

export interface DriftEvent {
  version: string;
  /** true: drift began; false: coverage recovered. */
  drifting: boolean;
  coverage: number;
  target: number;
  threshold: number;
  samples: number;
}

export interface VersionSnapshot {
  version: string;
  alpha: number | null;
  qhat: number | null;
  /** 1 − α, when the version's calibration is known. */
  targetCoverage: number | null;
  /** 1 − α − ε: below it (with enough samples) the version is drifting. */
  driftThreshold: number | null;
  /** Outcomes observed for this version since start (labelled or not). */
  outcomes: number;
  /** Labelled outcomes in the window (the denominator of coverage and ECE). */
  labeled: number;
  /** null until the calibration is known and the window holds a labelled outcome. */
  coverage: number | null;
  lightweightSamples: number;
  lightweightSuccessRate: number | null;
  ece: number | null;
  drifting: boolean;
  driftEvents: number;
}

export interface MonitorSnapshot {
  window: number;
  epsilon: number;
  minSamples: number;
  versions: VersionSnapshot[];
}

/**
 * Is `label` in the split-conformal prediction set of a binary classifier that said p̂(1|x) =
 * `confidence`? The set holds every y with 1 − p̂(y|x) ≤ q̂.
 */
export function conformalCovers(confidence: number, label: 0 | 1, qhat: number): boolean {
  // The engine's own set, so the monitor and the router can never disagree on a boundary case.
  return (predictionSet(confidence, qhat) & (label === 1 ? SET_LIGHT : SET_HEAVY)) !== 0;
}

/** Expected calibration error over equal-width bins: Σ_b (n_b/N)·|mean(y)_b − mean(p)_b|. */
export function expectedCalibrationError(confidences: ArrayLike<number>, labels: ArrayLike<number>, bins = 10): number {
  const n = confidences.length;
  if (n === 0) return 0;
  const sumP = new Float64Array(bins);
  const sumY = new Float64Array(bins);
  for (let i = 0; i < n; i++) {
    const b = binOf(confidences[i]!, bins);
    sumP[b]! += confidences[i]!;
    sumY[b]! += labels[i]!;
  }
  let total = 0;
  for (let b = 0; b < bins; b++) total += Math.abs(sumY[b]! - sumP[b]!);
  return total / n;
}

function binOf(p: number, bins: number): number {
  const b = Math.floor(p * bins);
  return b < 0 ? 0 : b >= bins ? bins - 1 : b;
}

/** The rolling state of one model version. */
class VersionWindow {
  // Labelled ring: confidence and label of the last `window` labelled outcomes.
  readonly conf: Float32Array;
  readonly label: Uint8Array;
  head = 0;
  size = 0;
  sinceRebuild = 0;
  covered = 0;
  readonly binP: Float64Array;
  readonly binY: Float64Array;
  // Lightweight-served ring: ok flags.
  readonly light: Uint8Array;
  lightHead = 0;
  lightSize = 0;
  lightOk = 0;

  calibration: Calibration | undefined;
  outcomes = 0;
  drifting = false;
  driftEvents = 0;

  constructor(
    readonly version: string,
    readonly window: number,
    readonly bins: number,
  ) {
    this.conf = new Float32Array(window);
    this.label = new Uint8Array(window);
    this.light = new Uint8Array(window);
    this.binP = new Float64Array(bins);
    this.binY = new Float64Array(bins);
  }

  private covers(i: number): number {
    const q = this.calibration;
    return q !== undefined && conformalCovers(this.conf[i]!, this.label[i]! as 0 | 1, q.qhat) ? 1 : 0;
  }

  addLabeled(confidence: number, label: 0 | 1): void {
    const at = this.head;
    if (this.size === this.window) {
      // Evict the oldest (the slot we are about to overwrite).
      const b = binOf(this.conf[at]!, this.bins);
      this.binP[b]! -= this.conf[at]!;
      this.binY[b]! -= this.label[at]!;
      this.covered -= this.covers(at);
    } else {
      this.size++;
    }
    this.conf[at] = confidence;
    this.label[at] = label;
    const p = this.conf[at]!; // the float32 value actually stored, so eviction subtracts the same
    const b = binOf(p, this.bins);
    this.binP[b]! += p;
    this.binY[b]! += label;
    this.covered += this.covers(at);
    this.head = (at + 1) % this.window;
    // Running float sums drift by rounding; rebuild them from the ring once per full turn.
    if (++this.sinceRebuild >= this.window) this.rebuild();
  }

  addLight(ok: boolean): void {
    const at = this.lightHead;
    if (this.lightSize === this.window) this.lightOk -= this.light[at]!;
    else this.lightSize++;
    this.light[at] = ok ? 1 : 0;
    this.lightOk += this.light[at]!;
    this.lightHead = (at + 1) % this.window;
  }

  /** Recomputes every running sum from the ring (after a calibration change, and periodically). */
  rebuild(): void {
    this.sinceRebuild = 0;
    this.binP.fill(0);
    this.binY.fill(0);
    this.covered = 0;
    for (let i = 0; i < this.size; i++) {
      const b = binOf(this.conf[i]!, this.bins);
      this.binP[b]! += this.conf[i]!;
      this.binY[b]! += this.label[i]!;
      this.covered += this.covers(i);
    }
  }

  coverage(): number | null {
    return this.calibration === undefined || this.size === 0 ? null : this.covered / this.size;
  }

  ece(): number | null {
    if (this.size === 0) return null;
    let total = 0;
    for (let b = 0; b < this.bins; b++) total += Math.abs(this.binY[b]! - this.binP[b]!);
    return total / this.size;
  }
}

export interface ObserveResult {
  /** The label the outcome gave, or undefined when it gave none (see label.ts). */
  label: 0 | 1 | undefined;
  servedBy: ServedBy | undefined;
  /** Whether the label was in the prediction set (undefined: no label or no calibration). */
  covered: boolean | undefined;
  /** Set when this observation started or ended a drift episode. */
  drift: DriftEvent | undefined;
}

export class CalibrationMonitor {
  readonly options: MonitorOptions;
  /** Insertion order = recency order (re-inserted on every observation), for LRU eviction. */
  private readonly versions = new Map<string, VersionWindow>();
  private readonly calibrations = new Map<string, Calibration>();

  constructor(options: Partial<MonitorOptions> = {}) {
    const o = { ...DEFAULT_MONITOR_OPTIONS, ...options };
    if (!Number.isInteger(o.window) || o.window < 1 || o.window > 10_000_000) throw new RangeError(`window must be a whole number in [1, 1e7], got ${o.window}`);
    if (!(o.epsilon >= 0 && o.epsilon < 1)) throw new RangeError(`epsilon must be in [0, 1), got ${o.epsilon}`);
    if (!Number.isInteger(o.minSamples) || o.minSamples < 1) throw new RangeError(`minSamples must be a whole number >= 1, got ${o.minSamples}`);
    if (o.minSamples > o.window) throw new RangeError(`minSamples (${o.minSamples}) cannot exceed the window (${o.window})`);
    if (!Number.isInteger(o.maxVersions) || o.maxVersions < 1) throw new RangeError(`maxVersions must be a whole number >= 1, got ${o.maxVersions}`);
    if (!Number.isInteger(o.eceBins) || o.eceBins < 1) throw new RangeError(`eceBins must be a whole number >= 1, got ${o.eceBins}`);
    this.options = Object.freeze(o);
  }

  /**
   * Tells the monitor a version's calibration (when a model is loaded or looked up in the
   * registry). Without it a version's coverage is unknown and it cannot drift; outcomes already
   * in its window are re-scored.
   */
  setCalibration(version: string, calibration: Calibration | undefined): void {
    if (calibration === undefined) {
      this.calibrations.delete(version);
    } else {
      if (!(calibration.alpha > 0 && calibration.alpha < 1) || !Number.isFinite(calibration.qhat)) {
        throw new RangeError(`calibration of ${version}: alpha must be in (0, 1) and qhat finite, got ${JSON.stringify(calibration)}`);
      }
      // Bounded like the windows: calibrations of forgotten versions go too.
      if (!this.calibrations.has(version) && this.calibrations.size >= this.options.maxVersions * 4) {
        const oldest = this.calibrations.keys().next().value;
        if (oldest !== undefined && !this.versions.has(oldest)) this.calibrations.delete(oldest);
      }
      this.calibrations.set(version, { alpha: calibration.alpha, qhat: calibration.qhat });
    }
    const w = this.versions.get(version);
    if (w) {
      w.calibration = this.calibrations.get(version);
      w.rebuild();
    }
  }

  hasCalibration(version: string): boolean {
    return this.calibrations.has(version);
  }

  private windowFor(version: string): VersionWindow {
    let w = this.versions.get(version);
    if (w) {
      this.versions.delete(version);
    } else {
      if (this.versions.size >= this.options.maxVersions) {
        const oldest = this.versions.keys().next().value;
        if (oldest !== undefined) this.versions.delete(oldest);
      }
      w = new VersionWindow(version, this.options.window, this.options.eceBins);
      w.calibration = this.calibrations.get(version);
    }
    this.versions.set(version, w);
    return w;
  }

  /** Feeds one joined outcome. O(1). */
  observe(joined: JoinedOutcome): ObserveResult {
    const { outcome, decision } = joined;
    const w = this.windowFor(decision.model_version);
    w.outcomes++;
    const lab = outcomeLabel(outcome, decision.use_lightweight, this.options.label);
    if (lab.servedBy === 'lightweight') w.addLight(outcome.ok);
    // The breaker's fallback decisions carry no model score (confidence 0 by construction):
    // they say nothing about the model's calibration.
    const scored = decision.reason !== 'breaker_open' && Number.isFinite(decision.confidence);
    if (!lab.usable || !scored) {
      return { label: lab.usable ? lab.label : undefined, servedBy: lab.servedBy, covered: undefined, drift: undefined };
    }
    const confidence = Math.min(1, Math.max(0, decision.confidence));
    w.addLabeled(confidence, lab.label);
    const covered = w.calibration === undefined ? undefined : conformalCovers(confidence, lab.label, w.calibration.qhat);
    return { label: lab.label, servedBy: lab.servedBy, covered, drift: this.checkDrift(w) };
  }

  private checkDrift(w: VersionWindow): DriftEvent | undefined {
    const cal = w.calibration;
    const coverage = w.coverage();
    if (cal === undefined || coverage === null || w.size < this.options.minSamples) return undefined;
    const target = 1 - cal.alpha;
    const threshold = target - this.options.epsilon;
    const recoverAt = target - this.options.epsilon / 2;
    if (!w.drifting && coverage < threshold) {
      w.drifting = true;
      w.driftEvents++;
      return { version: w.version, drifting: true, coverage, target, threshold, samples: w.size };
    }
    if (w.drifting && coverage >= recoverAt) {
      w.drifting = false;
      return { version: w.version, drifting: false, coverage, target, threshold, samples: w.size };
    }
    return undefined;
  }

  /** Forgets a version's window (its calibration is kept). */
  forget(version: string): void {
    this.versions.delete(version);
  }

  snapshotVersion(version: string): VersionSnapshot | undefined {
    const w = this.versions.get(version);
    return w ? this.describe(w) : undefined;
  }

  snapshot(): MonitorSnapshot {
    const versions: VersionSnapshot[] = [];
    for (const w of this.versions.values()) versions.push(this.describe(w));
    versions.reverse(); // most recently observed first
    return { window: this.options.window, epsilon: this.options.epsilon, minSamples: this.options.minSamples, versions };
  }

  private describe(w: VersionWindow): VersionSnapshot {
    const cal = w.calibration;
    return {
      version: w.version,
      alpha: cal?.alpha ?? null,
      qhat: cal?.qhat ?? null,
      targetCoverage: cal ? 1 - cal.alpha : null,
      driftThreshold: cal ? 1 - cal.alpha - this.options.epsilon : null,
      outcomes: w.outcomes,
      labeled: w.size,
      coverage: w.coverage(),
      lightweightSamples: w.lightSize,
      lightweightSuccessRate: w.lightSize === 0 ? null : w.lightOk / w.lightSize,
      ece: w.ece(),
      drifting: w.drifting,
      driftEvents: w.driftEvents,
    };
  }
}
