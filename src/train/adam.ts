// Adam (Kingma & Ba, 2015) over a list of float64 tensors, with bias-corrected moments.
//
// The step size is passed per call so the trainer owns the schedule (per-epoch decay, a lower
// rate for the retraining phase). An optional mask per tensor freezes entries at zero: the
// masked gradient is dropped before the moments are updated and the entry is re-zeroed after
// the step, so momentum cannot leak weight back into the pruned positions (phase 3 of IHT).

export interface AdamOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
}

export class Adam {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  private readonly m: Float64Array[];
  private readonly v: Float64Array[];
  private t = 0;

  constructor(sizes: readonly number[], opts: AdamOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.m = sizes.map((n) => new Float64Array(n));
    this.v = sizes.map((n) => new Float64Array(n));
  }

  /** Number of steps taken since construction or the last reset. */
  get steps(): number {
    return this.t;
  }

  reset(): void {
    for (const a of this.m) a.fill(0);
    for (const a of this.v) a.fill(0);
    this.t = 0;
  }

  /**
   * One update: params[k] -= lr · m̂ / (√v̂ + eps). `masks[k]` (1 = trainable) may be null for
   * no mask. Non-finite gradients are refused (the caller's data or learning rate is broken;
   * continuing would silently write NaN weights).
   */
  step(params: readonly Float64Array[], grads: readonly Float64Array[], lr: number, masks?: readonly (Uint8Array | null)[]): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 - Math.pow(b1, this.t);
    const c2 = 1 - Math.pow(b2, this.t);
    for (let k = 0; k < params.length; k++) {
      const p = params[k]!, g = grads[k]!, m = this.m[k]!, v = this.v[k]!;
      const mask = masks?.[k] ?? null;
      for (let i = 0; i < p.length; i++) {
        if (mask && mask[i] === 0) {
          p[i] = 0;
          continue;
        }
        const gi = g[i]!;
        if (!Number.isFinite(gi)) throw new RangeError(`non-finite gradient (${gi}) in tensor ${k} at ${i}; lower --lr or check the data`);
        const mi = (m[i] = b1 * m[i]! + (1 - b1) * gi);
        const vi = (v[i] = b2 * v[i]! + (1 - b2) * gi * gi);
        p[i] = p[i]! - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
      }
    }
  }
}
