// Model files for the control-plane tests: valid variants (by version), and the broken kinds a
// reload must refuse.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FEATURE_NAMES } from '../../../src/engine/features.js';
import { MODEL_FORMAT, encodeModel } from '../../../src/engine/model.js';
import { writeSafetensors, type Tensor } from '../../../src/engine/safetensors.js';

/** Deterministic small weights from a seed. */
function values(n: number, seed: number, scale = 0.5): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

/** A valid 5-feature FastGRNN. */
export function validModel(version: string, opts: { seed?: number; calibrated?: boolean; hidden?: number; features?: readonly string[] } = {}): Uint8Array {
  const features = opts.features ?? FEATURE_NAMES;
  const D = features.length;
  const H = opts.hidden ?? 6;
  const seed = opts.seed ?? 7;
  return encodeModel({
    inputDim: D,
    hiddenDim: H,
    features,
    version,
    W: values(H * D, seed, 2),
    U: values(H * H, seed + 1, 0.2),
    bz: values(H, seed + 2, 0.5),
    bh: values(H, seed + 3, 0.5),
    zeta: 1,
    nu: -2,
    fcW: values(H, seed + 4, 3),
    fcB: 0.5,
    ...(opts.calibrated ? { calibration: { alpha: 0.1, qhat: 0.35, n: 400 } } : {}),
  });
}

/** A model whose weights hold a NaN: the format is right, the numbers are not. */
export function nanModel(): Uint8Array {
  const D = FEATURE_NAMES.length;
  const H = 4;
  const W = new Float32Array(H * D).fill(0.1);
  W[3] = Number.NaN;
  const t = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'F32', shape, data });
  return writeSafetensors(
    {
      W: t([H, D], W),
      U: t([H, H], new Float32Array(H * H)),
      b_z: t([H], new Float32Array(H)),
      b_h: t([H], new Float32Array(H)),
      zeta: t([1], Float32Array.of(1)),
      nu: t([1], Float32Array.of(-1)),
      fc_w: t([1, H], new Float32Array(H).fill(1)),
      fc_b: t([1], Float32Array.of(0)),
    },
    { format: MODEL_FORMAT, version: 'nan-1', input_dim: String(D), hidden_dim: String(H), features: JSON.stringify(FEATURE_NAMES) },
  );
}

/** Writes `bytes` to dir/name and returns the path. */
export function writeModel(dir: string, name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}
