import { describe, expect, it } from 'vitest';
import { EXP2_CLAMP, POW2_POLY, buildActivationModule } from '../../../../src/engine/simd/activations.js';
import { instantiate, ensureMemory, type WasmMemory } from '../../../../src/engine/simd/runtime.js';

type Apply = (p: number, count: number) => void;

function kernels(): { memory: WasmMemory; sigmoid: Apply; tanh: Apply } {
  const inst = instantiate(buildActivationModule());
  if (!inst) throw new Error('no WebAssembly SIMD here');
  return { memory: inst.exports.memory as WasmMemory, sigmoid: inst.exports.sigmoid as Apply, tanh: inst.exports.tanh as Apply };
}

/** Every input the kernels can see: a dense grid where σ/tanh vary, geometric out to float32's limits, and ±Infinity. */
function inputs(): Float32Array {
  const xs: number[] = [];
  for (let i = -2_000_000; i <= 2_000_000; i++) xs.push(i * 5e-5); // [−100, 100] in steps of 5e-5
  for (let e = -45; e <= 38.5; e += 0.01) {
    const v = 10 ** e;
    if (Number.isFinite(Math.fround(v))) xs.push(v, -v);
  }
  xs.push(0, -0, Infinity, -Infinity, 3.4028234663852886e38, -3.4028234663852886e38);
  const n = (xs.length + 3) & ~3;
  const out = new Float32Array(n);
  out.set(xs);
  return out;
}

function run(apply: Apply, memory: WasmMemory, x: Float32Array): Float32Array {
  ensureMemory(memory, x.length * 4);
  const view = new Float32Array(memory.buffer, 0, x.length);
  view.set(x);
  apply(0, x.length);
  return Float32Array.from(view);
}

describe('vector σ and tanh (WebAssembly SIMD)', () => {
  const k = kernels();
  const x = inputs();

  it('σ is within 1.5e-7 of 1/(1 + Math.exp(−x)) over the whole float32 range, and exactly in [0, 1]', () => {
    const y = run(k.sigmoid, k.memory, x);
    let worst = 0;
    let outside = 0;
    for (let i = 0; i < x.length; i++) {
      const want = 1 / (1 + Math.exp(-x[i]!));
      const got = y[i]!;
      if (!(got >= 0 && got <= 1)) outside++;
      const err = Math.abs(got - want);
      if (err > worst) worst = err;
    }
    expect(outside).toBe(0);
    expect(worst).toBeLessThan(1.5e-7);
  });

  it('tanh is within 3e-7 of Math.tanh over the whole float32 range, and in [−1, 1]', () => {
    const y = run(k.tanh, k.memory, x);
    let worst = 0;
    let outside = 0;
    for (let i = 0; i < x.length; i++) {
      const got = y[i]!;
      if (!(got >= -1 && got <= 1)) outside++;
      const err = Math.abs(got - Math.tanh(x[i]!));
      if (err > worst) worst = err;
    }
    expect(outside).toBe(0);
    expect(worst).toBeLessThan(3e-7);
  });

  it('the 2^f polynomial is accurate to 1e-8 relative on [−½, ½] (below float32 rounding)', () => {
    let worst = 0;
    for (let i = 0; i <= 100_000; i++) {
      const f = -0.5 + i / 100_000;
      let p = 0;
      for (let j = POW2_POLY.length - 1; j >= 0; j--) p = p * f + POW2_POLY[j]!;
      worst = Math.max(worst, Math.abs(p / 2 ** f - 1));
    }
    expect(worst).toBeLessThan(1e-8);
  });

  it('saturates to within 2^−60 of the limits beyond the clamp', () => {
    const big = EXP2_CLAMP / Math.LOG2E + 1;
    const y = run(k.sigmoid, k.memory, Float32Array.from([big, -big, 1e30, -1e30]));
    expect(1 - y[0]!).toBeLessThan(2 ** -23);
    expect(y[1]!).toBeLessThanOrEqual(2 ** -60);
    expect(y[2]!).toBe(1);
    expect(y[3]!).toBeLessThanOrEqual(2 ** -60);
  });
});
