// Logistic regression, the linear baseline every FastGRNN result is compared against: fitted by
// Newton's method (IRLS) on the same normalised features, with a small ridge penalty so
// separable data still converges. Exact and deterministic — no learning rate to tune, so the
// baseline is as strong as a linear model can be on these features.

export interface LogisticModel {
  /** D weights followed by the intercept. */
  w: Float64Array;
  iterations: number;
}

/** Solves A x = b (A symmetric positive definite, n×n row-major) by Cholesky; A is overwritten. */
function solveSpd(A: Float64Array, b: Float64Array, n: number): Float64Array {
  for (let j = 0; j < n; j++) {
    let s = A[j * n + j]!;
    for (let k = 0; k < j; k++) s -= A[j * n + k]! * A[j * n + k]!;
    const d = Math.sqrt(Math.max(s, 1e-300));
    A[j * n + j] = d;
    for (let i = j + 1; i < n; i++) {
      let t = A[i * n + j]!;
      for (let k = 0; k < j; k++) t -= A[i * n + k]! * A[j * n + k]!;
      A[i * n + j] = t / d;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= A[i * n + k]! * y[k]!;
    y[i] = s / A[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= A[k * n + i]! * x[k]!;
    x[i] = s / A[i * n + i]!;
  }
  return x;
}

/**
 * Fits p(y=1|x) = σ(w·x + b) on n rows of D values (row-major) with targets in [0, 1].
 * `ridge` is the L2 penalty on the weights (not the intercept), per row.
 */
export function fitLogistic(x: Float64Array, y: ArrayLike<number>, n: number, D: number, ridge = 1e-4, maxIter = 50): LogisticModel {
  const P = D + 1;
  const w = new Float64Array(P);
  let iterations = 0;
  for (let it = 0; it < maxIter; it++) {
    iterations = it + 1;
    const Hm = new Float64Array(P * P);
    const g = new Float64Array(P);
    for (let i = 0; i < n; i++) {
      const o = i * D;
      let z = w[D]!;
      for (let j = 0; j < D; j++) z += w[j]! * x[o + j]!;
      const p = 1 / (1 + Math.exp(-z));
      const r = p - y[i]!;
      const s = Math.max(p * (1 - p), 1e-10);
      for (let a = 0; a < P; a++) {
        const xa = a < D ? x[o + a]! : 1;
        g[a] = g[a]! + r * xa;
        for (let b = 0; b <= a; b++) {
          const xb = b < D ? x[o + b]! : 1;
          Hm[a * P + b] = Hm[a * P + b]! + s * xa * xb;
        }
      }
    }
    for (let a = 0; a < P; a++) for (let b = 0; b < a; b++) Hm[b * P + a] = Hm[a * P + b]!;
    for (let a = 0; a < D; a++) {
      Hm[a * P + a] = Hm[a * P + a]! + ridge * n;
      g[a] = g[a]! + ridge * n * w[a]!;
    }
    Hm[D * P + D] = Hm[D * P + D]! + 1e-9 * n;
    const step = solveSpd(Hm, g, P);
    let maxStep = 0;
    for (let a = 0; a < P; a++) {
      w[a] = w[a]! - step[a]!;
      maxStep = Math.max(maxStep, Math.abs(step[a]!));
    }
    if (maxStep < 1e-9) break;
  }
  return { w, iterations };
}

export function predictLogistic(m: LogisticModel, x: Float64Array, n: number, D: number, out: Float64Array): void {
  for (let i = 0; i < n; i++) {
    let z = m.w[D]!;
    for (let j = 0; j < D; j++) z += m.w[j]! * x[i * D + j]!;
    out[i] = 1 / (1 + Math.exp(-z));
  }
}
