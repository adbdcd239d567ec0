import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { DEFAULT_FEATURE_CONFIG, FEATURE_NAMES, extractFeatures } from '../../../src/engine/features.js';
import { validateRequest } from '../../../src/engine/validate.js';
import { fitNormalisation, loadDataset, makePart, parseDatasetText, splitDataset } from '../../../src/train/data.js';
import { Rng } from '../../../src/train/rng.js';
import { DatasetBuilder } from '../../../src/train/data.js';
import { generateFeatureSet, generateTraffic, trafficJson, trafficTruth } from '../../../src/train/synthetic.js';

const dir = mkdtempSync(join(tmpdir(), 'td-train-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(text: string): string {
  try {
    parseDatasetText(text);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError);
    return (err as Error).message;
  }
  throw new Error('expected a parse error');
}

const req = (labels: unknown[], extra: Record<string, unknown> = {}) => JSON.stringify({
  request_id: 'r', now: 1000, query_embedding: [1, 0, 0],
  candidates: labels.map((label, i) => ({ id: `c${i}`, embedding: [1, i, 0], created_at: 900, access_count: 5, success_rate: 0.9, label })),
  ...extra,
});

describe('training data (JSON lines)', () => {
  it('reads one-step, sequence and request lines, soft labels and p_true', () => {
    const one = parseDatasetText('{"features":[1,2],"label":1,"soft_label":0.8}\n\n{"features":[3,4],"label":false}\n');
    expect(one).toMatchObject({ n: 2, D: 2, source: 'features', maxT: 1, lines: 2, featureNames: ['f0', 'f1'] });
    expect(Array.from(one.label)).toEqual([1, 0]);
    expect(Array.from(one.line)).toEqual([1, 3]); // the blank line keeps numbering
    expect(one.soft![0]).toBe(0.8);
    expect(one.soft![1]).toBeNaN();
    const seq = parseDatasetText('{"features":[[1,2,3],[4,5,6]],"label":1}\n{"features":[[0,0,0]],"label":0}');
    expect(Array.from(seq.steps)).toEqual([2, 1]);
    expect(seq.maxT).toBe(2);
    expect(Array.from(seq.x.subarray(seq.start[0]!, seq.start[0]! + 6))).toEqual([1, 2, 3, 4, 5, 6]);
    const five = parseDatasetText('{"features":[0.5,0,0,0.9,0],"label":1}');
    expect(five.featureNames).toEqual([...FEATURE_NAMES]);
  });

  it('turns labelled RoutingRequests into the engine\'s features, one sample per candidate', () => {
    const ds = parseDatasetText(req([1, 0]));
    expect(ds).toMatchObject({ n: 2, D: 5, source: 'requests' });
    const v = validateRequest(JSON.parse(req([1, 0])));
    const f = new Float32Array(10);
    extractFeatures(v, DEFAULT_FEATURE_CONFIG, f, 1000);
    expect(Array.from(ds.x)).toEqual(Array.from(f));
    expect(Array.from(ds.line)).toEqual([1, 1]);
  });

  it.each([
    ['{"features":[1,2],"label":1}\n{"features":[1,2],"label":1', /^line 2: not valid JSON/],
    ['{"features":[1,2],"label":1}\n{"features":[1,2]}', /^line 2: label must be 0 or 1 \(or true\/false\), got nothing/],
    ['{"features":[1,2],"label":2}', /^line 1: label must be 0 or 1/],
    ['{"features":[1,2],"label":1}\n\n{"features":[1,2,3],"label":1}', /^line 3: has 3 features per step, earlier lines have 2/],
    ['{"features":[1,"x"],"label":1}', /^line 1: features\[1\] is string, not a number/],
    ['{"features":[1,1e300],"label":1}', /^line 1: features\[1\] is 1e\+300, not a finite float32/],
    ['{"features":[[1,2],[3]],"label":1}', /^line 1: features\[1\] has 1 values, features\[0\] has 2/],
    ['{"features":[1,2],"label":1,"soft_label":1.5}', /^line 1: soft_label must be a number in \[0, 1\]/],
    ['[1,2]', /^line 1: must be a JSON object/],
    ['{"label":1}', /^line 1: needs "features" and "label"/],
    [`{"features":[1,2,3,4,5],"label":1}\n${req([1])}`, /^line 2: is a RoutingRequest line, earlier lines are feature lines/],
    [req([1, 'yes']), /^line 1: candidates\[1\] \(id "c1"\): label must be 0 or 1/],
    [JSON.stringify({ request_id: 'r', query_embedding: [1, 0], candidates: [{ id: 'a', embedding: [1], label: 1 }] }), /^line 1: candidates\[0\] \(id "a"\): embedding has 1 values, query has 2/],
    [req([1], { now: 'soon' }), /^line 1: now must be Unix seconds/],
    ['\n\n', /no samples/],
  ])('rejects bad input naming the line: %s', (text, re) => {
    expect(errorOf(text)).toMatch(re);
  });

  it('reads files line by line with the same numbering', async () => {
    const path = join(dir, 'bad.jsonl');
    writeFileSync(path, '{"features":[1],"label":1}\r\n{"features":[2],"label":0}\r\n{oops}\r\n');
    await expect(loadDataset(path)).rejects.toThrow(/^line 3: not valid JSON/);
    await expect(loadDataset(join(dir, 'missing.jsonl'))).rejects.toThrow(/cannot read/);
    writeFileSync(path, '{"features":[1],"label":1}\r\n{"features":[2],"label":0}\r\n');
    const ds = await loadDataset(path);
    expect(Array.from(ds.x)).toEqual([1, 2]);
  });

  it('splits by line, seeded, with the requested fractions, and normalises on the training part', () => {
    const lines = Array.from({ length: 200 }, (_, i) => req([i % 2, 1, 0]).replace('"r"', `"r${i}"`)).join('\n');
    const ds = parseDatasetText(lines);
    const a = splitDataset(ds, { val: 0.2, cal: 0.1, test: 0.1 }, new Rng(5));
    const b = splitDataset(ds, { val: 0.2, cal: 0.1, test: 0.1 }, new Rng(5));
    expect(a).toEqual(b);
    expect([a.val.length, a.cal.length, a.test.length, a.train.length]).toEqual([120, 60, 60, 360]);
    const partOf = new Map<number, string>();
    for (const [name, idx] of Object.entries(a)) for (const i of idx as Int32Array) {
      const line = ds.line[i]!;
      expect(partOf.get(line) ?? name).toBe(name); // a request never straddles two parts
      partOf.set(line, name);
    }
    const norm = fitNormalisation(ds, a.train);
    const part = makePart(ds, a.train, norm);
    for (let j = 0; j < 5; j++) {
      let m = 0;
      for (let i = 0; i < part.n; i++) m += part.x[i * 5 + j]!;
      expect(Math.abs(m / part.n)).toBeLessThan(1e-6); // centred (within float32 rounding of the mean)
      expect(norm.std[j]).toBe(Math.fround(norm.std[j]!));
    }
  });
});

describe('synthetic traffic', () => {
  it('is deterministic per seed, and the label truth is a function of the engine features', () => {
    const a = [...generateTraffic({ requests: 5, seed: 9, dim: 32 })];
    const b = [...generateTraffic({ requests: 5, seed: 9, dim: 32 })];
    const c = [...generateTraffic({ requests: 5, seed: 10, dim: 32 })];
    expect(a.map(trafficJson)).toEqual(b.map(trafficJson));
    expect(a.map(trafficJson)).not.toEqual(c.map(trafficJson));
    const f = new Float32Array(16 * 5);
    for (const r of a) {
      extractFeatures(validateRequest(r), DEFAULT_FEATURE_CONFIG, f, r.now);
      r.candidates.forEach((cand, i) => expect(cand.p_true).toBeCloseTo(trafficTruth(f, i * 5), 5));
    }
  });

  it('gives the same samples in memory and through a JSON file', () => {
    const mem = new DatasetBuilder();
    const text: string[] = [];
    let line = 0;
    for (const r of generateTraffic({ requests: 20, seed: 4, dim: 48 })) {
      mem.add(r, ++line);
      text.push(trafficJson(r));
    }
    const a = mem.build();
    const b = parseDatasetText(text.join('\n'));
    expect(Array.from(b.x)).toEqual(Array.from(a.x));
    expect(Array.from(b.label)).toEqual(Array.from(a.label));
    expect(Array.from(b.pTrue!)).toEqual(Array.from(a.pTrue!));
  });

  it('has a realistic mix: most candidates suffice for lightweight, and the truth is not monotone in similarity alone', () => {
    const b = new DatasetBuilder();
    let line = 0;
    for (const r of generateTraffic({ requests: 300, seed: 2, dim: 64 })) b.add(r, ++line);
    const ds = b.build();
    let pos = 0, highSimBad = 0, highSim = 0;
    for (let i = 0; i < ds.n; i++) {
      pos += ds.label[i]!;
      if (ds.x[i * 5]! > 0.9) {
        highSim++;
        if (ds.pTrue![i]! < 0.5) highSimBad++;
      }
    }
    expect(pos / ds.n).toBeGreaterThan(0.65);
    expect(pos / ds.n).toBeLessThan(0.9);
    expect(highSimBad / highSim).toBeGreaterThan(0.02); // near-duplicates that are stale and unproven
  });

  it('feature sets are deterministic and labelled by their stated rule', () => {
    const a = [...generateFeatureSet('rings', 50, 1)];
    expect(a).toEqual([...generateFeatureSet('rings', 50, 1)]);
    for (const s of a) {
      const x = s.features as number[];
      const truth = (x[0]! ** 2 + x[1]! ** 2 < 1.4) !== x[2]! > 0;
      expect(s.p_true).toBe(truth ? 0.95 : 0.05);
    }
    const seq = [...generateFeatureSet('sequence', 20, 1)];
    expect(seq.every((s) => Array.isArray((s.features as number[][])[0]))).toBe(true);
  });
});
