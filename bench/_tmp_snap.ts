import { RouterPool } from '../src/engine/pool/pool.js';
import { validateRequest } from '../src/engine/validate.js';
import v8 from 'node:v8';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const pool = await RouterPool.create({ workers: 1, features: { nowSeconds: 1700000100 } });
const reqs = Array.from({length: 32}, (_, k) => validateRequest(mk(100, k)));
let i = 0; let snapped = false;
async function lane() { while (i < 12000) { i++; await pool.route(reqs[i % 32]); if (i > 8000 && !snapped) { snapped = true; console.log(v8.getHeapStatistics().used_heap_size/1e6); const f = v8.writeHeapSnapshot('/tmp/perfseed/snap.heapsnapshot'); console.log(f); } } }
await Promise.all(Array.from({length: 64}, lane));
await pool.close();
