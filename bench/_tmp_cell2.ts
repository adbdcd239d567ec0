import { loadModelFile, defaultModelPath } from '../src/engine/model.js';
import { scoreRowsSimd } from '../src/engine/simd/fastgrnn-simd.js';
const m = loadModelFile(defaultModelPath());
const n = 100; const f = Float32Array.from({ length: n * 5 }, () => Math.random()); const o = new Float32Array(n);
function med(fn: () => void, inner: number) { const xs: number[] = []; for (let r=0;r<300;r++){const t=performance.now(); for(let k=0;k<inner;k++) fn(); xs.push((performance.now()-t)*1000/inner);} xs.sort((x,y)=>x-y); return xs[150]!.toFixed(3); }
for (let r = 0; r < 4; r++) console.log('simd 100', med(() => scoreRowsSimd(m.cell, f, n, o), 20), 'simd 4', med(() => scoreRowsSimd(m.cell, f, 4, o), 200), 'simd 1', med(() => scoreRowsSimd(m.cell, f, 1, o), 500));
