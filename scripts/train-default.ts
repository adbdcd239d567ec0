// Rebuilds the shipped model and its quality report, exactly as documented in models/README.md:
//   npm run train:default
// Same seed and code → byte-identical models/default.safetensors.
import { main } from '../src/cli/index.js';

const args = [
  'train', '--synthetic', '10000', '--hidden', '32', '--rank-u', '1', '--sparsity', '0.9', '--quantize',
  '--out', 'models/default.safetensors', '--report', 'models/report.json',
];
process.stderr.write(`tiny-dancer ${args.join(' ')}\n`);
process.exitCode = await main(args);
