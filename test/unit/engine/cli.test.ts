import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FEATURE_NAMES } from '../../../src/engine/features.js';
import { encodeModel, forward, parseModel } from '../../../src/engine/model.js';
import { runCli, runInProcess } from './cli-run.js';

const dir = mkdtempSync(join(tmpdir(), 'td-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A fixed, uncalibrated model (models/default.safetensors is replaced by training, so tests that
// assert on scores use this one): score ≈ σ(10·(similarity − 0.5)).
const simModel = join(dir, 'sim.safetensors');
{
  const hScale = 1 / (1 + Math.exp(-2)) + 1 / (1 + Math.exp(4));
  writeFileSync(simModel, encodeModel({
    inputDim: 5, hiddenDim: 1, features: FEATURE_NAMES, version: 'sim-cli',
    W: [0.01, 0, 0, 0, 0], U: [0], bz: [-30], bh: [0], zeta: 2, nu: -4, fcW: [10 / (0.01 * hScale)], fcB: -5,
  }));
}

const good = {
  request_id: 'r-1',
  query_embedding: [1, 0, 0],
  metadata: { tier: 'free' },
  candidates: [
    { id: 'a', embedding: [1, 0, 0.1], created_at: 1_700_000_000, access_count: 50, success_rate: 0.9, metadata: { tier: 'free', m: 'x' } },
    { id: 'b', embedding: [0, 1, 0], success_rate: 0.1 },
  ],
};

function expectOneLineError(r: { status: number | null; stderr: string; stdout: string }, pattern: RegExp): void {
  expect(r.status).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

describe('tiny-dancer route', () => {
  it('routes one request from stdin and prints the RoutingResponse', async () => {
    const r = await runInProcess('route', ['--model', simModel], JSON.stringify(good));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.candidates_processed).toBe(2);
    expect(res.decisions.map((d: { candidate_id: string }) => d.candidate_id)).toEqual(['a', 'b']);
    expect(res.decisions[0]).toMatchObject({ request_id: 'r-1', rank: 0, model_version: 'sim-cli', use_lightweight: true, reason: 'model', metadata: { tier: 'free', m: 'x' } });
    expect(res.decisions[1]).toMatchObject({ rank: 1, use_lightweight: false, reason: 'model' });
    expect(typeof res.inference_time_us).toBe('number');
    expect(typeof res.feature_time_us).toBe('number');
  });

  it('--confidence / --max-uncertainty override the thresholds', async () => {
    // candidate with similarity 0.7 → p ≈ 0.88, heuristic uncertainty ≈ 0.24: 'uncertain' by default
    const mid = { ...good, candidates: [{ id: 'm', embedding: [0.7, Math.sqrt(1 - 0.49), 0] }] };
    const byDefault = JSON.parse((await runInProcess('route', ['--model', simModel], JSON.stringify(mid))).stdout);
    expect(byDefault.decisions[0]).toMatchObject({ use_lightweight: false, reason: 'uncertain' });
    const r = await runInProcess('route', ['--model', simModel, '--confidence', '0.5', '--max-uncertainty', '0.3'], JSON.stringify(mid));
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).decisions[0]).toMatchObject({ use_lightweight: true, reason: 'model' });
    const strict = JSON.parse((await runInProcess('route', ['--model', simModel, '--confidence', '0.9', '--max-uncertainty', '0.3'], JSON.stringify(mid))).stdout);
    expect(strict.decisions[0]).toMatchObject({ use_lightweight: false, reason: 'below_threshold' });
  });

  it.each([
    ['malformed JSON', '{"request_id": "x", ', /malformed JSON/],
    ['empty stdin', '', /no request on stdin/],
    ['wrong dims', JSON.stringify({ ...good, candidates: [{ id: 'a', embedding: [1, 0] }] }), /candidates\[0\] \(id "a"\): embedding has 2 values, query has 3/],
    ['NaN as a string', JSON.stringify({ ...good, query_embedding: [1, 'NaN', 0] }), /query_embedding: embedding\[1\] is the string "NaN"/],
    ['null in an embedding', JSON.stringify({ ...good, candidates: [{ id: 'a', embedding: [1, null, 0] }] }), /embedding\[1\] is null/],
    ['bare NaN token', '{"request_id":"x","query_embedding":[NaN],"candidates":[]}', /malformed JSON/],
    ['duplicate ids', JSON.stringify({ ...good, candidates: [good.candidates[0], { ...good.candidates[1], id: 'a' }] }), /candidates\[1\] \(id "a"\): duplicate id/],
    ['missing request_id', JSON.stringify({ ...good, request_id: undefined }), /request_id: is required/],
    ['missing candidates', JSON.stringify({ ...good, candidates: undefined }), /candidates: is required/],
    ['too many candidates', JSON.stringify({ ...good, candidates: Array.from({ length: 1001 }, (_, i) => ({ id: `c${i}`, embedding: [1, 0, 0] })) }), /has 1001 entries/],
  ])('%s → exit 2 with one line', async (_name, input, pattern) => {
    expectOneLineError(await runInProcess('route', [], input), pattern);
  });

  it('bad arguments and a bad model file → exit 2', async () => {
    expectOneLineError(await runInProcess('route', ['--confidence', '1.5'], JSON.stringify(good)), /--confidence must be a number in \[0, 1\]/);
    expectOneLineError(await runInProcess('route', ['--bogus'], JSON.stringify(good)), /Unknown option/);
    expectOneLineError(await runInProcess('route', ['--model', join(dir, 'missing.safetensors')], JSON.stringify(good)), /cannot read model file/);
    const junk = join(dir, 'junk.safetensors');
    writeFileSync(junk, 'not a model at all');
    expectOneLineError(await runInProcess('route', ['--model', junk], JSON.stringify(good)), /invalid safetensors/);
  });
});

describe('tiny-dancer model', () => {
  const calibrated = join(dir, 'cal.safetensors');
  const H = 4;
  const bytes = encodeModel({
    inputDim: 5, hiddenDim: H, features: FEATURE_NAMES, version: 'cli-test',
    W: Array.from({ length: 20 }, (_, i) => Math.sin(i)), U: Array.from({ length: 16 }, (_, i) => Math.cos(i) * 0.3),
    bz: [0.1, -0.2, 0.3, 0], bh: [0, 0.1, -0.1, 0.2], zeta: 1, nu: -1, fcW: [1, -2, 0.5, 0], fcB: 0.2,
    quantize: ['U'], calibration: { alpha: 0.1, qhat: 0.25, n: 321 },
  });
  writeFileSync(calibrated, bytes);
  const model = parseModel(bytes);

  it('score: one score per line, vectors and sequences, blank lines skipped', async () => {
    const lines = ['[0.1, 0.2, 0.3, 0.4, 0.5]', '', '[[1,0,0,0,0],[0,1,0,0,0],[0,0,1,0,0]]', '[[0.5,0.5,0.5,0.5,0.5]]'];
    const r = await runInProcess('model', ['score', calibrated], `${lines.join('\n')}\n`);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout.trim().split('\n').map(Number);
    expect(out).toHaveLength(3);
    expect(out[0]).toBeCloseTo(forward(model, Float64Array.of(0.1, 0.2, 0.3, 0.4, 0.5), 1), 12);
    expect(out[1]).toBeCloseTo(forward(model, Float64Array.of(1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0), 3), 12);
    expect(out[2]).toBeCloseTo(out[0] === out[2] ? out[0]! : forward(model, new Float64Array(5).fill(0.5), 1), 12);
  });

  it.each([
    ['wrong length', '[1,2,3]', /^tiny-dancer model: line 2: feature vector has 3 values, the model's input_dim is 5/],
    ['not JSON', 'nope', /line 2: malformed JSON/],
    ['a string value', '[1,2,"3",4,5]', /line 2: value 2 is a string/],
    ['an empty list', '[]', /line 2: expected a feature vector or a non-empty list/],
    ['a bad step in a sequence', '[[1,2,3,4,5],[1,2]]', /line 2: step 1: feature vector has 2 values/],
    ['an object', '{"x":1}', /line 2: expected a feature vector/],
  ])('score: %s → exit 2 naming the line, earlier scores printed', async (_name, bad, pattern) => {
    const r = await runInProcess('model', ['score', calibrated], `[0,0,0,0,0]\n${bad}\n[0,0,0,0,0]\n`);
    expect(r.status).toBe(2);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(pattern);
  });

  it('score / inspect usage errors → exit 2', async () => {
    expect((await runInProcess('model', ['score'])).status).toBe(2);
    expect((await runInProcess('model', ['frobnicate', calibrated])).status).toBe(2);
    expect((await runInProcess('model', ['inspect', join(dir, 'nope')])).status).toBe(2);
  });

  it('inspect: shapes, dtypes, sparsity, sizes, metadata, calibration', async () => {
    const r = await runInProcess('model', ['inspect', calibrated]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/version\s+cli-test/);
    expect(r.stdout).toMatch(/U\s+I8\s+\[4,4\]\s+16\s+\d+\s+[\d.]+%\s+16\s+scale/);
    expect(r.stdout).toMatch(/W\s+F32\s+\[4,5\]\s+20\s+19\s+5\.0%\s+80/); // sin(0) = 0
    expect(r.stdout).toMatch(/calibration: split conformal, alpha 0.1, qhat 0.25, n 321/);
    const j = JSON.parse((await runInProcess('model', ['inspect', calibrated, '--json'])).stdout);
    expect(j.calibration).toEqual({ alpha: 0.1, qhat: 0.25, n: 321 });
    expect(j.uncertainty).toBe('conformal');
    expect(j.tensors.find((t: { name: string }) => t.name === 'U')).toMatchObject({ dtype: 'I8', shape: [4, 4], bytes: 16 });
    expect(j.params).toBe(20 + 16 + 4 + 4 + 1 + 1 + 4 + 1);
    expect(j.metadata.format).toBe('tiny-dancer/fastgrnn');
  });

  it('inspect says when there is no calibration', async () => {
    const r = await runInProcess('model', ['inspect', simModel]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/calibration: none \(heuristic uncertainty/);
    expect(r.stdout).toMatch(/version\s+sim-cli/);
    const j = JSON.parse((await runInProcess('model', ['inspect', simModel, '--json'])).stdout);
    expect(j.calibration).toBeNull();
    expect(j.uncertainty).toBe('heuristic');
  });
});

describe('tiny-dancer as a real process (exit codes, stderr)', () => {
  it('route ok → 0; bad JSON / wrong dims / duplicate ids → 2 with one line; model score bad line → 2', async () => {
    const [ok, badJson, wrongDims, dupes, score] = await Promise.all([
      runCli(['route'], JSON.stringify(good)),
      runCli(['route'], '{"request_id":'),
      runCli(['route'], JSON.stringify({ ...good, candidates: [{ id: 'a', embedding: [1] }] })),
      runCli(['route'], JSON.stringify({ ...good, candidates: [good.candidates[0], good.candidates[0]] })),
      runCli(['model', 'score', 'models/default.safetensors'], '[0,0,0,0,0]\n[1]\n'),
    ]);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout).decisions).toHaveLength(2);
    expectOneLineError(badJson, /^tiny-dancer route: malformed JSON/);
    expectOneLineError(wrongDims, /^tiny-dancer route: candidates\[0\] \(id "a"\): embedding has 1 values, query has 3$/);
    expectOneLineError(dupes, /^tiny-dancer route: candidates\[1\] \(id "a"\): duplicate id/);
    expect(score.status).toBe(2);
    expect(score.stdout.trim().split('\n')).toHaveLength(1);
    expect(score.stderr).toMatch(/^tiny-dancer model: line 2: feature vector has 1 values/);
  }, 120_000);
});
