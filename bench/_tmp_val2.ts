import { validateRequest } from '../src/engine/validate.js';
import { stagingEmbeddings } from '../src/engine/simd/cosine.js';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const reqs = Array.from({length: 32}, (_, k) => mk(100, k));
const staged = process.env.STAGED === '1' ? { allocEmbeddings: stagingEmbeddings } : undefined;
function med(f: () => void, inner: number): number { const xs: number[] = []; for (let r=0;r<2000;r++){ const t=performance.now(); for(let k=0;k<inner;k++) f(); xs.push((performance.now()-t)*1000/inner);} xs.sort((a,b)=>a-b); return xs[xs.length>>1]!; }
let i = 0;
console.log(med(() => validateRequest(reqs[i++&31], staged), 5));
