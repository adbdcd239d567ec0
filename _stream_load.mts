import kafkajs from 'kafkajs';
import { encodeRequest } from './src/stream/codec.js';
const [id, N, enc] = [process.argv[2]!, Number(process.argv[3]), process.argv[4] as 'protobuf' | 'json'];
const kafka = new kafkajs.Kafka({ clientId: 'load', brokers: ['localhost:9092'], logLevel: kafkajs.logLevel.NOTHING });
const admin = kafka.admin(); await admin.connect();
await admin.createTopics({ waitForLeaders: true, topics: ['in', 'l', 'h', 'd', 'o'].map((t) => ({ topic: `${id}.${t}`, numPartitions: 6 })) });
const prod = kafka.producer(); await prod.connect();
let s = 1; const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
const vec = () => Float32Array.from({ length: 384 }, () => r() * 2 - 1);
let batch: any[] = []; let bytes = 0;
for (let i = 0; i < N; i++) {
  const req = { request_id: `${id}-${i}`, query_embedding: vec(), candidates: Array.from({ length: 10 }, (_, c) => ({ id: `c${c}`, embedding: vec(), metadata: { m: 'x' }, created_at: 1700000000, access_count: 5, success_rate: 0.5 })) };
  const v = encodeRequest(req, enc);
  batch.push({ key: req.request_id, value: v, headers: { 'content-type': enc === 'json' ? 'application/json' : 'application/x-protobuf' } }); bytes += v.length;
  if (bytes > 800000) { await prod.send({ topic: `${id}.in`, messages: batch, acks: -1 }); batch = []; bytes = 0; }
}
if (batch.length) await prod.send({ topic: `${id}.in`, messages: batch, acks: -1 });
await prod.disconnect(); await admin.disconnect();
