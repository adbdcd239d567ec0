// Interop with another tool: an independent Python/numpy implementation
// (test/fixtures/safetensors_reference.py) writes models and computes docs/contracts.md §3 scores in float64;
// `tiny-dancer model score` must reproduce them within 2e-5. And files we write must parse in
// that independent reader with the same values.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FEATURE_NAMES } from '../../../src/engine/features.js';
import { encodeModel, loadModelFile } from '../../../src/engine/model.js';
import { scoreRowsSimd } from '../../../src/engine/simd/fastgrnn-simd.js';
import { writeSafetensors, type Tensor } from '../../../src/engine/safetensors.js';
import { ROOT, runCli, runInProcess } from './cli-run.js';

const SCRIPT = join(ROOT, 'test/fixtures/safetensors_reference.py');
const probe = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const havePython = probe.status === 0;
if (!havePython) {
  console.warn(`SKIPPING safetensors interop tests: python3 with numpy is not available (${probe.error?.message ?? probe.stderr.trim()})`);
}

const dir = mkdtempSync(join(tmpdir(), 'td-interop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function python(args: string[]): string {
  const r = spawnSync('python3', [SCRIPT, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python3 ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

describe.skipIf(!havePython)('models written by another tool (numpy)', () => {
  const models = havePython ? (python(['write-models', dir]), JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as string[]) : [];

  it('covers full, low-rank, normalised, sequence and I8 models', () => {
    expect(models).toEqual(expect.arrayContaining(['full', 'lowrank', 'normalised', 'sequence', 'i8', 'mixed']));
  });

  it.each(models)('model score reproduces the float64 reference for %s within 2e-5', async (name) => {
    const input = readFileSync(join(dir, `${name}.inputs.jsonl`), 'utf8');
    const expected = JSON.parse(readFileSync(join(dir, `${name}.expected.json`), 'utf8')) as number[];
    const r = await runInProcess('model', ['score', join(dir, `${name}.safetensors`)], input);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = r.stdout.trim().split('\n').map(Number);
    expect(got).toHaveLength(expected.length);
    const worst = Math.max(...got.map((g, i) => Math.abs(g - expected[i]!)));
    expect(worst).toBeLessThan(2e-5);
  });

  it.each(models)('the WebAssembly SIMD cell the Router uses reproduces the reference for %s within 2e-5 (one-step inputs)', (name) => {
    const model = loadModelFile(join(dir, `${name}.safetensors`));
    const expected = JSON.parse(readFileSync(join(dir, `${name}.expected.json`), 'utf8')) as number[];
    const lines = readFileSync(join(dir, `${name}.inputs.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as number[] | number[][]);
    const D = model.inputDim;
    const rows: number[] = [];
    const want: number[] = [];
    lines.forEach((x, k) => {
      const steps = Array.isArray(x[0]) ? (x as number[][]) : [x as number[]];
      if (steps.length !== 1) return; // the cell is the routing case, T = 1
      rows.push(...steps[0]!);
      want.push(expected[k]!);
    });
    if (want.length === 0) return; // a sequence-only model
    const out = new Float32Array(want.length);
    if (!scoreRowsSimd(model.cell, Float32Array.from(rows), want.length, out)) return; // no WASM SIMD here, or too large to unroll
    expect(rows.length).toBe(want.length * D);
    const worst = Math.max(...want.map((w, i) => Math.abs(out[i]! - w)));
    expect(worst).toBeLessThan(2e-5);
  });

  it('the same through the real `tiny-dancer model score` process (mixed model)', async () => {
    const input = readFileSync(join(dir, 'mixed.inputs.jsonl'), 'utf8');
    const expected = JSON.parse(readFileSync(join(dir, 'mixed.expected.json'), 'utf8')) as number[];
    const r = await runCli(['model', 'score', join(dir, 'mixed.safetensors')], input);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = r.stdout.trim().split('\n').map(Number);
    expect(got).toHaveLength(expected.length);
    got.forEach((g, i) => expect(Math.abs(g - expected[i]!)).toBeLessThan(2e-5));
  }, 60_000);

  it('model inspect reports the stored I8 dtypes of a foreign file', async () => {
    const r = await runInProcess('model', ['inspect', join(dir, 'mixed.safetensors'), '--json']);
    const j = JSON.parse(r.stdout);
    expect(j.W).toBe('low-rank');
    expect(j.normalised).toBe(true);
    const w1 = j.tensors.find((t: { name: string }) => t.name === 'W1');
    expect(w1).toMatchObject({ dtype: 'I8', shape: [9, 2], bytes: 18 });
    expect(w1.sparsity).toBeGreaterThan(0); // the writer zeroes every fifth weight
  });
});

describe.skipIf(!havePython)('files we write, read by another tool (numpy)', () => {
  it('a model from encodeModel parses with the same values and metadata', () => {
    const path = join(dir, 'ours.safetensors');
    const W = Array.from({ length: 5 * 3 }, (_, i) => Math.sin(i) * 3);
    writeFileSync(path, encodeModel({
      inputDim: 5, hiddenDim: 3, features: FEATURE_NAMES, version: 'ours-1',
      W, U: new Array(9).fill(0.25), bz: [1, 2, 3], bh: [-1, 0, 1], zeta: 0.5, nu: -0.5, fcW: [0.1, 0.2, 0.3], fcB: -1,
      quantize: ['U'], calibration: { alpha: 0.1, qhat: 0.2, n: 50 },
    }));
    const parsed = JSON.parse(python(['read', path]));
    expect(parsed.metadata).toMatchObject({ format: 'tiny-dancer/fastgrnn', version: 'ours-1', input_dim: '5', hidden_dim: '3', conformal_qhat: '0.2' });
    expect(JSON.parse(parsed.metadata.features)).toEqual(FEATURE_NAMES);
    expect(parsed.tensors.W).toMatchObject({ dtype: 'F32', shape: [3, 5] });
    parsed.tensors.W.values.forEach((v: number, i: number) => expect(v).toBe(Math.fround(W[i]!)));
    expect(parsed.tensors.U).toMatchObject({ dtype: 'I8', shape: [3, 3], values: new Array(9).fill(127) });
    expect(parsed.tensors['U.scale'].values[0]).toBe(Math.fround(0.25 / 127));
  });

  it('every dtype round-trips through the independent reader', () => {
    const path = join(dir, 'dtypes.safetensors');
    const tensors = new Map<string, Tensor>([
      ['f64', { dtype: 'F64', shape: [3], data: Float64Array.of(1e-300, -2.5, Math.PI) }],
      ['f32', { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, -2, 0.5, 3e38) }],
      ['f16', { dtype: 'F16', shape: [2], data: Uint16Array.of(0x3c00, 0xc000) }],
      ['bf16', { dtype: 'BF16', shape: [2], data: Uint16Array.of(0x3f80, 0xc040) }],
      ['i8', { dtype: 'I8', shape: [3], data: Int8Array.of(-128, 0, 127) }],
      ['u8', { dtype: 'U8', shape: [2], data: Uint8Array.of(0, 255) }],
      ['i16', { dtype: 'I16', shape: [2], data: Int16Array.of(-32768, 32767) }],
      ['i32', { dtype: 'I32', shape: [1, 1, 2], data: Int32Array.of(-2147483648, 7) }],
      ['i64', { dtype: 'I64', shape: [2], data: BigInt64Array.of(-(2n ** 62n), 2n ** 62n + 1n) }],
      ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
      ['scalar', { dtype: 'F32', shape: [], data: Float32Array.of(42) }],
    ]);
    writeFileSync(path, writeSafetensors(tensors, { note: 'ünïcødé ✓', empty: '' }));
    const parsed = JSON.parse(python(['read', path]));
    expect(parsed.metadata).toEqual({ note: 'ünïcødé ✓', empty: '' });
    expect(parsed.tensors.f64.values).toEqual([1e-300, -2.5, Math.PI]);
    expect(parsed.tensors.f32).toEqual({ dtype: 'F32', shape: [2, 2], values: [1, -2, 0.5, Math.fround(3e38)] });
    expect(parsed.tensors.f16.values).toEqual([1, -2]);
    expect(parsed.tensors.bf16.values).toEqual([1, -3]);
    expect(parsed.tensors.i8.values).toEqual([-128, 0, 127]);
    expect(parsed.tensors.u8.values).toEqual([0, 255]);
    expect(parsed.tensors.i16.values).toEqual([-32768, 32767]);
    expect(parsed.tensors.i32).toEqual({ dtype: 'I32', shape: [1, 1, 2], values: [-2147483648, 7] });
    expect(parsed.tensors.i64.values).toEqual([String(-(2n ** 62n)), String(2n ** 62n + 1n)]);
    expect(parsed.tensors.empty).toEqual({ dtype: 'F32', shape: [0, 4], values: [] });
    expect(parsed.tensors.scalar).toEqual({ dtype: 'F32', shape: [], values: [42] });
  });
});
