import { loadModelFile, defaultModelPath, scoreBatch } from '../src/engine/model.js';
import { scoreRowsSimd, scoreRowsSimdByUnits } from '../src/engine/simd/fastgrnn-simd.js';
const m = loadModelFile(defaultModelPath());
const n = 100; const f = Float32Array.from({ length: n * 5 }, () => Math.random()); const o = new Float32Array(n); const o2 = new Float32Array(n); const o3 = new Float32Array(n);
scoreBatch(m, f, n, o); scoreRowsSimd(m.cell, f, n, o2); scoreRowsSimdByUnits(m.cell, f, n, o3);
let w2 = 0, w3 = 0; for (let i = 0; i < n; i++) { w2 = Math.max(w2, Math.abs(o[i]! - o2[i]!)); w3 = Math.max(w3, Math.abs(o[i]! - o3[i]!)); } console.log('err', w2, w3);
function med(fn: () => void, inner: number) { const xs: number[] = []; for (let r=0;r<300;r++){const t=performance.now(); for(let k=0;k<inner;k++) fn(); xs.push((performance.now()-t)*1000/inner);} xs.sort((x,y)=>x-y); return xs[150]!.toFixed(3); }
for (let r = 0; r < 3; r++) console.log('groups 100', med(() => scoreRowsSimd(m.cell, f, n, o), 20), 'units 100', med(() => scoreRowsSimdByUnits(m.cell, f, n, o), 20), 'groups 1', med(() => scoreRowsSimd(m.cell, f, 1, o), 500), 'units 1', med(() => scoreRowsSimdByUnits(m.cell, f, 1, o), 500), 'scalar 1', med(() => scoreBatch(m, f, 1, o), 500));
