import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/index.js';
import { loadModelFile } from '../../../src/engine/model.js';
import { generateFeatureSet, generateTraffic, trafficJson } from '../../../src/train/synthetic.js';

const dir = mkdtempSync(join(tmpdir(), 'td-train-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let out = '';
let err = '';
beforeEach(() => {
  out = '';
  err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  });
});
afterEach(() => vi.restoreAllMocks());

function write(name: string, lines: string[]): string {
  const p = join(dir, name);
  writeFileSync(p, `${lines.join('\n')}\n`);
  return p;
}

const traffic = write('traffic.jsonl', [...generateTraffic({ requests: 300, seed: 3, dim: 32 })].map(trafficJson));
const heldOut = write('held-out.jsonl', [...generateTraffic({ requests: 150, seed: 4, dim: 32 })].map(trafficJson));

describe('tiny-dancer train / eval', () => {
  it('trains a sparse INT8 model from labelled requests, writes the report, and `model inspect` shows the sparsity', async () => {
    const model = join(dir, 'm.safetensors');
    const report = join(dir, 'rep', 'r.json');
    const code = await main(['train', '--data', traffic, '--out', model, '--report', report, '--hidden', '20', '--sparsity', '0.9', '--quantize', '--epochs', '6', '--iht-epochs', '3']);
    expect(err).not.toMatch(/tiny-dancer train:/);
    expect(code).toBe(0);
    expect(out).toMatch(/^trained fastgrnn-h20-[0-9a-f]{12} -> /);
    expect(out).toMatch(/weights {5}W I8 10\/100 non-zero, U I8 0\/400 non-zero/);
    expect(err).toMatch(/loaded \d+ samples from 300 lines \(requests, 5 features\)/);
    for (const ext of ['json', 'md', 'png']) expect(existsSync(join(dir, 'rep', `r.${ext}`))).toBe(true);
    const rep = JSON.parse(readFileSync(report, 'utf8'));
    expect(rep.compression.map((c: { name: string }) => c.name)).toEqual(['float dense', 'float 90% sparse', 'int8 90% sparse']);
    expect(rep.scorers.map((s: { name: string }) => s.name)).toEqual(expect.arrayContaining([
      'always heavyweight', 'random', 'cosine similarity', 'seed weighted sum', 'logistic regression', 'oracle (Bayes)',
    ]));
    expect(rep.conformal.alpha).toBe(0.1);
    expect(readFileSync(join(dir, 'rep', 'r.md'), 'utf8')).toContain('![cost/quality curve](r.png)');

    const loaded = loadModelFile(model);
    expect(loaded.calibration?.n).toBeGreaterThan(0);
    out = '';
    expect(await main(['model', 'inspect', model, '--json'])).toBe(0);
    const info = JSON.parse(out);
    const W = info.tensors.find((t: { name: string }) => t.name === 'W');
    expect(W).toMatchObject({ dtype: 'I8', shape: [20, 5], non_zeros: 10 });
    expect(W.sparsity).toBeCloseTo(0.9, 12);
    expect(info.calibration.alpha).toBe(0.1);
  });

  it('evaluates a model on held-out data against the baselines', async () => {
    const model = join(dir, 'dense.safetensors');
    expect(await main(['train', '--data', traffic, '--out', model, '--epochs', '8', '--hidden', '8'])).toBe(0);
    out = '';
    const report = join(dir, 'eval.json');
    expect(await main(['eval', '--model', model, '--data', heldOut, '--train-data', traffic, '--report', report])).toBe(0);
    expect(out).toMatch(/evaluated fastgrnn-h8-/);
    const rep = JSON.parse(readFileSync(report, 'utf8'));
    const byName = Object.fromEntries(rep.scorers.map((s: { name: string }) => [s.name, s]));
    expect(byName[model].auc).toBeGreaterThan(byName['cosine similarity'].auc);
    expect(rep.routing.share).toBeGreaterThan(0);
    expect(rep.evaluatedOn.candidates).toBeGreaterThan(500);
  });

  it('trains with defaults from feature lines', async () => {
    const data = write('features.jsonl', [...generateFeatureSet('rings', 800, 1)].map((s) => JSON.stringify(s)));
    expect(await main(['train', '--data', data, '--out', join(dir, 'f.safetensors'), '--epochs', '3'])).toBe(0);
    expect(out).toMatch(/4 features/);
  });

  it('exits 2 naming the line of bad input, and on bad arguments', async () => {
    const bad = write('bad.jsonl', ['{"features":[1,2],"label":1}', '{"features":[3,4],"label":0}', '{"features":[5],"label":1}']);
    expect(await main(['train', '--data', bad, '--out', join(dir, 'x.safetensors')])).toBe(2);
    expect(err).toMatch(/tiny-dancer train: line 3: has 1 features per step, earlier lines have 2/);
    expect(existsSync(join(dir, 'x.safetensors'))).toBe(false);
    for (const argv of [
      ['train', '--data', bad],
      ['train', '--out', 'x'],
      ['train', '--data', bad, '--synthetic', '5', '--out', 'x'],
      ['train', '--data', bad, '--out', 'x', '--sparsity', '1.5'],
      ['train', '--data', bad, '--out', 'x', '--max-quality-loss', '0.02', '--target-lightweight-share', '0.5'],
      ['eval', '--data', bad],
    ]) {
      err = '';
      expect(await main(argv)).toBe(2);
      expect(err.trim().split('\n')).toHaveLength(1);
    }
  });
});
