import { Router } from '../src/engine/router.js';
import { validateRequest } from '../src/engine/validate.js';
import { extractFeatures, DEFAULT_FEATURE_CONFIG } from '../src/engine/features.js';
import { scoreBatch } from '../src/engine/model.js';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const router = new Router({ features: { nowSeconds: 1700000100 } });
function med(f: () => void, inner: number): number { const xs: number[] = []; for (let r=0;r<400;r++){ const t=performance.now(); for(let k=0;k<inner;k++) f(); xs.push((performance.now()-t)*1000/inner);} xs.sort((a,b)=>a-b); return xs[xs.length>>1]!; }
for (const n of [10, 100]) {
  const reqs = Array.from({length: 32}, (_, k) => mk(n, k));
  const v = validateRequest(reqs[0]); const feat = new Float32Array(n*5); const sc = new Float32Array(n);
  let i = 0;
  const inner = n === 10 ? 50 : 5;
  for (let rep=0; rep<2; rep++) console.log(n, {
    route: med(() => router.route(reqs[i++&31]), inner).toFixed(2),
    validate: med(() => validateRequest(reqs[i++&31]), inner).toFixed(2),
    routeValidated: med(() => router.routeValidated(v), inner).toFixed(2),
    features: med(() => extractFeatures(v, DEFAULT_FEATURE_CONFIG, feat, 1700000100), inner).toFixed(2),
    score: med(() => scoreBatch(router.model, feat, n, sc), inner).toFixed(2),
  });
}
