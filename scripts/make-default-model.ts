// Writes models/default.safetensors (or the path given as the first argument): a deterministic,
// hand-initialised 5→8 FastGRNN so that `tiny-dancer route` works out of the box before any
// training. Run: npx tsx scripts/make-default-model.ts [OUT]
// NOTE: once the training job has written a trained, calibrated default model, running this
// without OUT replaces it with the untrained prior.
//
// WHY this construction: every hidden unit sees the same projection s = w·x, the seed's fixed
// weighted sum (weights 0.4, 0.2, 0.15, 0.15, 0.1), so the score is a monotone function of the
// baseline score — a sensible prior, not a trained model. Unit i is g·tanh(c·(s − o_i)) with
// offsets o_i spread over [0, 1] (a smooth staircase); the update gate is held nearly shut
// (b_z = −8, so z ≈ 0 and h ≈ (σ(ζ) + σ(ν))·c), and the output layer is scaled so that
// score(s = 0.6) = 0.5 and score(s = 0.85) ≈ 0.95. No calibration: the router falls back to the
// heuristic uncertainty 1 − |2p − 1|. The training job replaces this file with a trained one.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_FEATURE_CONFIG, FEATURE_NAMES } from '../src/engine/features.js';
import { encodeModel, parseModel, forward } from '../src/engine/model.js';

const D = 5;
const H = 8;
const w = DEFAULT_FEATURE_CONFIG.weights;
const c = 4;
const offsets = Array.from({ length: H }, (_, i) => (i + 0.5) / H); // 0.0625 … 0.9375

const W: number[] = [];
for (let i = 0; i < H; i++) for (let j = 0; j < D; j++) W.push(c * w[j]!);
const bh = offsets.map((o) => -c * o);
const bz = new Array<number>(H).fill(-8);
const zeta = 2; // σ(2) ≈ 0.881
const nu = -4; // σ(−4) ≈ 0.018
const U = new Array<number>(H * H).fill(0);

// Unscaled response L(s) with fc_w = 1, computed through the real cell.
function logitAt(s: number, fcW: number[], fcB: number): number {
  const bytes = encodeModel({ inputDim: D, hiddenDim: H, features: FEATURE_NAMES, version: 'probe', W, U, bz, bh, zeta, nu, fcW, fcB });
  const x = new Float64Array(D);
  // A feature vector whose weighted sum is s: put it all on similarity.
  x[0] = s / w[0]!;
  const p = forward(parseModel(bytes), x, 1);
  return Math.log(p / (1 - p));
}
const ones = new Array<number>(H).fill(1);
const l60 = logitAt(0.6, ones, 0);
const l85 = logitAt(0.85, ones, 0);
const scale = Math.log(0.95 / 0.05) / (l85 - l60);
const fcW = ones.map(() => scale);
const fcB = -scale * l60;

const bytes = encodeModel({
  inputDim: D, hiddenDim: H, features: FEATURE_NAMES, version: 'default-handinit-1',
  W, U, bz, bh, zeta, nu, fcW, fcB,
  metadata: { description: 'hand-initialised prior: monotone in the seed weighted feature sum; not trained, not calibrated' },
});
const model = parseModel(bytes);
const out = process.argv[2] ?? fileURLToPath(new URL('../models/default.safetensors', import.meta.url));
writeFileSync(out, bytes);
const probe = [0, 0.3, 0.6, 0.75, 0.85, 0.95].map((s) => {
  const x = new Float64Array(D);
  x[0] = s / w[0]!;
  return `s=${s}: ${forward(model, x, 1).toFixed(4)}`;
});
process.stdout.write(`wrote ${out} (${bytes.length} bytes, version ${model.version})\n${probe.join('\n')}\n`);
