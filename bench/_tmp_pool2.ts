import { RouterPool } from '../src/engine/pool/pool.js';
const emb = () => Float32Array.from({length:384}, () => Math.random()-0.5);
const mk = (n: number, k = 0) => ({ request_id: 'r'+k, query_embedding: emb(), candidates: Array.from({length:n}, (_, i) => ({ id: 'c'+i, embedding: emb(), success_rate: 0.9, access_count: 5, created_at: 1700000000 })) });
const pool = await RouterPool.create({ workers: 1, features: { nowSeconds: 1700000100 } });
const n = Number(process.argv[2] ?? 100);
const reqs0 = Array.from({length: 32}, (_, k) => mk(n, k));
import { validateRequest } from "../src/engine/validate.js";
const reqs: any[] = process.env.PREVAL ? reqs0.map((r) => validateRequest(r)) : reqs0;
const N = Number(process.env.ITER ?? (n === 10 ? 100000 : 15000)); let i = 0;
const c0 = process.cpuUsage(); const t = performance.now();
async function lane() { while (i < N) { i++; await pool.route(reqs[i % 32]); } }
await Promise.all(Array.from({length: 64}, lane));
const el = performance.now() - t; const cu = process.cpuUsage(c0);
console.log('pool', n, (N/el*1000).toFixed(0), 'req/s', 'cpu us/req (all threads)', ((cu.user+cu.system)/N).toFixed(1));
await pool.close();
import { readdirSync, readFileSync } from 'node:fs';
for (const t of readdirSync('/proc/self/task')) {
  const st = readFileSync(`/proc/self/task/${t}/stat`, 'utf8'); const comm = readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
  const f = st.slice(st.lastIndexOf(')') + 2).split(' '); const ut = +f[11]!, stt = +f[12]!;
  if (ut + stt > 5) console.log(t, comm, 'user', ut, 'sys', stt);
}
