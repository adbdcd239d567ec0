import { Router } from '../src/engine/router.js';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const router = new Router({ features: { nowSeconds: 1700000100 } });
const reqs = Array.from({length: 16}, (_, k) => mk(Number(process.env.N ?? 100), k));
for (let k=0;k<Number(process.env.ITER ?? 20000);k++) router.route(reqs[k%16]);
