import { Router } from '../src/engine/router.js';
import { validateRequest } from '../src/engine/validate.js';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const router = new Router({ features: { nowSeconds: 1700000100 } });
function cpu(f: () => void, N: number) { const c = process.cpuUsage(); const t = performance.now(); for (let k=0;k<N;k++) f(); const d = process.cpuUsage(c); return [((d.user+d.system)/N).toFixed(1), ((performance.now()-t)*1000/N).toFixed(1)]; }
for (const n of [10, 100]) {
const reqs = Array.from({length: 16}, (_, k) => mk(n, k));
const v = validateRequest(reqs[0]);
let k = 0;
for (let r = 0; r < 4; r++) {
  console.log(n, 'route cpu/wall', cpu(() => router.route(reqs[k++%16]), 20000/n*10), 'validate', cpu(() => validateRequest(reqs[k++%16]), 20000/n*10), 'routeValidated', cpu(() => router.routeValidated(v), 20000/n*10));
}
}
