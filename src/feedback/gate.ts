// The promotion gate: a candidate model replaces the serving one only when, on the same
// held-out slice of the most recent outcomes, it is at least as good on EVERY gate. Pure.
//
//   auc               candidate AUC ≥ serving AUC − aucTolerance (default 0: at least as good)
//   coverage          |candidate coverage − (1 − α)| ≤ max(coverageTolerance, 2·SE), where
//                     SE = sqrt(α(1 − α)/n) is the sampling error of a coverage measured on n
//                     held-out outcomes: a perfectly calibrated model must not fail by chance on
//                     a small slice. Both sides count: under-coverage breaks the guarantee,
//                     over-coverage means q̂ is too wide (needless heavyweight routing).
//   lightweight_share candidate share routed lightweight at the quality budget ≥ serving share −
//                     shareTolerance (default 0)
//
// Without a serving model to compare against (first model), AUC must beat chance (> 0.5), the
// coverage gate is unchanged, and the share gate passes when the share is positive.

export interface EvalMetrics {
  /** Held-out examples the metrics were measured on. */
  n: number;
  auc: number;
  /** Conformal coverage at the model's own α and q̂ (NaN when the model is uncalibrated). */
  coverage: number;
  /** Share of held-out candidates routed lightweight at the quality budget. */
  lightweightShare: number;
  brier?: number;
  ece?: number;
}

export type GateName = 'auc' | 'coverage' | 'lightweight_share';

export interface GateOptions {
  aucTolerance: number;
  coverageTolerance: number;
  shareTolerance: number;
}

export const DEFAULT_GATE_OPTIONS: Readonly<GateOptions> = Object.freeze({
  aucTolerance: 0,
  coverageTolerance: 0.02,
  shareTolerance: 0,
});

export interface GateResult {
  gate: GateName;
  passed: boolean;
  candidate: number;
  /** The serving model's value (null without a serving model). */
  serving: number | null;
  /** Human-readable requirement, e.g. "≥ 0.8123" or "within 0.0200 of 0.9000". */
  required: string;
  /** One line: why it passed or failed. */
  detail: string;
}

export interface GateVerdict {
  passed: boolean;
  gates: GateResult[];
  /** The gates that failed, in gate order. */
  failed: GateName[];
}

const f4 = (x: number): string => (Number.isFinite(x) ? x.toFixed(4) : String(x));

export function coverageTolerance(alpha: number, n: number, base: number): number {
  const se = n > 0 ? Math.sqrt((alpha * (1 - alpha)) / n) : Infinity;
  return Math.max(base, 2 * se);
}

export function evaluateGates(
  candidate: EvalMetrics,
  serving: EvalMetrics | undefined,
  alpha: number,
  options: Partial<GateOptions> = {},
): GateVerdict {
  const o = { ...DEFAULT_GATE_OPTIONS, ...options };
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0, 1), got ${alpha}`);
  const gates: GateResult[] = [];

  // AUC
  {
    const need = serving ? serving.auc - o.aucTolerance : 0.5;
    const passed = Number.isFinite(candidate.auc) && (serving ? candidate.auc >= need : candidate.auc > need);
    const required = serving ? `≥ ${f4(need)}` : '> 0.5000';
    gates.push({
      gate: 'auc',
      passed,
      candidate: candidate.auc,
      serving: serving?.auc ?? null,
      required,
      detail: serving
        ? `AUC ${f4(candidate.auc)} vs serving ${f4(serving.auc)} (required ${required})`
        : `AUC ${f4(candidate.auc)} (required ${required}, no serving model)`,
    });
  }

  // Coverage
  {
    const target = 1 - alpha;
    const tol = coverageTolerance(alpha, candidate.n, o.coverageTolerance);
    const passed = Number.isFinite(candidate.coverage) && Math.abs(candidate.coverage - target) <= tol;
    const required = `within ${f4(tol)} of ${f4(target)}`;
    gates.push({
      gate: 'coverage',
      passed,
      candidate: candidate.coverage,
      serving: serving?.coverage ?? null,
      required,
      detail: Number.isFinite(candidate.coverage)
        ? `coverage ${f4(candidate.coverage)} on ${candidate.n} held-out outcomes (required ${required}${serving ? `; serving ${f4(serving.coverage)}` : ''})`
        : 'coverage unknown: the candidate is not calibrated',
    });
  }

  // Lightweight share at the quality budget
  {
    const need = serving ? serving.lightweightShare - o.shareTolerance : 0;
    const passed = Number.isFinite(candidate.lightweightShare) && (serving ? candidate.lightweightShare >= need : candidate.lightweightShare > 0);
    const required = serving ? `≥ ${f4(need)}` : '> 0';
    gates.push({
      gate: 'lightweight_share',
      passed,
      candidate: candidate.lightweightShare,
      serving: serving?.lightweightShare ?? null,
      required,
      detail: serving
        ? `lightweight share ${f4(candidate.lightweightShare)} vs serving ${f4(serving.lightweightShare)} (required ${required})`
        : `lightweight share ${f4(candidate.lightweightShare)} (required ${required}, no serving model)`,
    });
  }

  const failed = gates.filter((g) => !g.passed).map((g) => g.gate);
  return { passed: failed.length === 0, gates, failed };
}

/** One line naming every failed gate, for the CLI and logs. */
export function describeVerdict(v: GateVerdict): string {
  if (v.passed) return `all gates passed: ${v.gates.map((g) => g.detail).join('; ')}`;
  return `gate${v.failed.length > 1 ? 's' : ''} failed: ${v.gates
    .filter((g) => !g.passed)
    .map((g) => `${g.gate} — ${g.detail}`)
    .join('; ')}`;
}
