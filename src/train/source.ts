// Where training and evaluation data come from: a JSON-lines file, or the seeded synthetic
// traffic generator (the same RoutingRequest path as a file: validateRequest + extractFeatures).
import { DatasetBuilder, loadDataset, type Dataset, type LoadProgress, type ParseOptions } from './data.js';
import { generateTraffic } from './synthetic.js';

export interface DataSpec extends ParseOptions {
  /** JSON-lines file. */
  path?: string;
  /** Or: this many synthetic requests. */
  synthetic?: number;
  syntheticSeed?: number;
  /** Embedding dimension of synthetic requests. */
  dim?: number;
}

export async function loadData(spec: DataSpec, progress?: LoadProgress): Promise<Dataset> {
  if (spec.path !== undefined) return loadDataset(spec.path, spec, progress);
  const n = spec.synthetic ?? 0;
  const builder = new DatasetBuilder(spec);
  let line = 0;
  for (const r of generateTraffic({ requests: n, seed: spec.syntheticSeed ?? 1, ...(spec.dim !== undefined ? { dim: spec.dim } : {}) })) {
    builder.add(r, ++line);
    if (progress && (line & 63) === 0) progress(line, line, n);
  }
  return builder.build();
}
