import { RouterPool } from '../src/engine/pool/pool.js';
import { Router } from '../src/engine/router.js';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const pool = await RouterPool.create({ workers: 1, features: { nowSeconds: 1700000100 } });
const router = new Router({ features: { nowSeconds: 1700000100 } });
const req = mk(10);
const a = await pool.route(req); const b = router.route(req);
console.log(JSON.stringify(a.decisions[0]), JSON.stringify(b.decisions[0]));
for (const n of [10, 100]) {
  const reqs = Array.from({length: 64}, (_, k) => mk(n, k));
  for (const conc of [1, 16, 64, 256]) {
    const N = n === 10 ? 20000 : 4000; let done = 0, i = 0;
    const t = performance.now();
    async function lane() { while (i < N) { i++; await pool.route(reqs[i % 64]); done++; } }
    await Promise.all(Array.from({length: conc}, lane));
    const el = performance.now() - t; console.log('pool', n, conc, (N/el*1000).toFixed(0), 'req/s');
  }
  const N = n === 10 ? 20000 : 3000; const t = performance.now(); for (let k=0;k<N;k++) router.route(reqs[k%64]); console.log('router', n, (N/(performance.now()-t)*1000).toFixed(0), 'req/s');
}
console.log(pool.stats());
await pool.close();
