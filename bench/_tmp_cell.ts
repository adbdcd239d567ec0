import { loadModelFile, defaultModelPath, scoreBatch } from '../src/engine/model.js';
import { scoreRowsSimd } from '../src/engine/simd/fastgrnn-simd.js';
const m = loadModelFile(defaultModelPath());
for (const n of [1, 3, 4, 5, 10, 100]) {
  const f = Float32Array.from({ length: n * 5 }, () => Math.random() * 2 - 0.5);
  const a = new Float32Array(n), b = new Float32Array(n);
  scoreBatch(m, f, n, a); const ok = scoreRowsSimd(m.cell, f, n, b);
  let worst = 0; for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  console.log(n, ok, worst, a[0], b[0]);
}
const n = 100; const f = Float32Array.from({ length: n * 5 }, () => Math.random()); const o = new Float32Array(n);
function med(fn: () => void, inner: number) { const xs: number[] = []; for (let r=0;r<300;r++){const t=performance.now(); for(let k=0;k<inner;k++) fn(); xs.push((performance.now()-t)*1000/inner);} xs.sort((x,y)=>x-y); return xs[150]!; }
console.log('scalar 100', med(() => scoreBatch(m, f, n, o), 20), 'simd 100', med(() => scoreRowsSimd(m.cell, f, n, o), 20));
console.log('scalar 10', med(() => scoreBatch(m, f, 10, o), 100), 'simd 10', med(() => scoreRowsSimd(m.cell, f, 10, o), 100));
console.log('scalar 1', med(() => scoreBatch(m, f, 1, o), 500), 'simd 1', med(() => scoreRowsSimd(m.cell, f, 1, o), 500));
