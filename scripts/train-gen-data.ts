// Writes labelled JSON lines for `tiny-dancer train` / `eval`:
//   npx tsx scripts/train-gen-data.ts traffic N SEED OUT [--features-only]
//       N synthetic RoutingRequests (src/train/synthetic.ts), or with --features-only one
//       {"features":[5 engine features],"label","p_true"} line per candidate (much smaller).
//   npx tsx scripts/train-gen-data.ts interactions|rings|sequence N SEED OUT
//       a plain non-linear feature set (see generateFeatureSet).
import { createWriteStream } from 'node:fs';
import { DEFAULT_FEATURE_CONFIG, FEATURE_COUNT, extractFeatures } from '../src/engine/features.js';
import { validateRequest } from '../src/engine/validate.js';
import { generateFeatureSet, generateTraffic, trafficJson, type FeatureSetKind } from '../src/train/synthetic.js';

const [kind, nRaw, seedRaw, out, flag] = process.argv.slice(2);
const n = Number(nRaw);
const seed = Number(seedRaw);
if (!kind || !out || !Number.isInteger(n) || n < 1 || !Number.isInteger(seed)) {
  process.stderr.write('usage: npx tsx scripts/train-gen-data.ts traffic|interactions|rings|sequence N SEED OUT [--features-only]\n');
  process.exit(2);
}
const stream = createWriteStream(out);
async function write(line: string): Promise<void> {
  if (!stream.write(`${line}\n`)) await new Promise<void>((resolve) => stream.once('drain', resolve));
}
let count = 0;
if (kind === 'traffic') {
  const feat = new Float32Array(1000 * FEATURE_COUNT);
  for (const r of generateTraffic({ requests: n, seed })) {
    if (flag === '--features-only') {
      extractFeatures(validateRequest(r), DEFAULT_FEATURE_CONFIG, feat, r.now);
      for (let i = 0; i < r.candidates.length; i++) {
        const c = r.candidates[i]!;
        await write(JSON.stringify({ features: Array.from(feat.subarray(i * FEATURE_COUNT, (i + 1) * FEATURE_COUNT)), label: c.label, p_true: c.p_true }));
        count++;
      }
    } else {
      await write(trafficJson(r));
      count++;
    }
  }
} else if (kind === 'interactions' || kind === 'rings' || kind === 'sequence') {
  for (const s of generateFeatureSet(kind as FeatureSetKind, n, seed)) {
    await write(JSON.stringify(s));
    count++;
  }
} else {
  process.stderr.write(`unknown kind '${kind}'\n`);
  process.exit(2);
}
stream.end();
await new Promise<void>((resolve) => stream.once('finish', resolve));
process.stderr.write(`wrote ${count} lines to ${out}\n`);
