// experiment: pre-load N protobuf requests, run App in-process, log per-batch timings
import kafkajs from 'kafkajs';
import { createApp } from './src/app.js';
import { loadConfig, withConfig } from './src/config.js';
import { feedbackSettingsFromEnv } from './src/feedback/service.js';
import { createLogger } from './src/observe/logger.js';
import { encodeRequest } from './src/stream/codec.js';
const N = Number(process.env.N ?? 2000);
const enc = (process.env.ENC ?? 'protobuf') as 'protobuf' | 'json';
const id = 'exp' + Date.now().toString(36);
const kafka = new kafkajs.Kafka({ clientId: 'exp', brokers: ['localhost:9092'], logLevel: kafkajs.logLevel.NOTHING });
const admin = kafka.admin(); await admin.connect();
await admin.createTopics({ waitForLeaders: true, topics: ['in', 'l', 'h', 'd', 'o'].map((t) => ({ topic: `${id}.${t}`, numPartitions: 6 })) });
const prod = kafka.producer(); await prod.connect();
let s = 1; const r = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
const vec = () => Float32Array.from({ length: 384 }, () => r() * 2 - 1);
let batch: any[] = []; let bytes = 0;
for (let i = 0; i < N; i++) {
  const req = { request_id: `${id}-${i}`, query_embedding: vec(), candidates: Array.from({ length: 10 }, (_, c) => ({ id: `c${c}`, embedding: vec(), created_at: 1700000000, access_count: 5, success_rate: 0.5 })) };
  const v = encodeRequest(req, enc);
  batch.push({ key: req.request_id, value: v, headers: { 'content-type': enc === 'json' ? 'application/json' : 'application/x-protobuf' } }); bytes += v.length;
  if (bytes > 800000) { await prod.send({ topic: `${id}.in`, messages: batch, acks: -1 }); batch = []; bytes = 0; }
}
if (batch.length) await prod.send({ topic: `${id}.in`, messages: batch, acks: -1 });
await prod.disconnect();
const base = loadConfig({ KAFKA_BROKERS: 'localhost:9092', DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test', TD_DB_SCHEMA: id, TD_GROUP_ID: id, TD_TOPIC_REQUESTS: `${id}.in`, TD_TOPIC_LIGHTWEIGHT: `${id}.l`, TD_TOPIC_HEAVYWEIGHT: `${id}.h`, TD_TOPIC_DLQ: `${id}.d`, TD_TOPIC_OUTCOMES: `${id}.o`, ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('TD_'))) });
const config = withConfig(base, { httpAddr: { host: '127.0.0.1', port: 0 } });
const lines: string[] = []; const flines: string[] = [];
const logger = createLogger({ level: 'debug', write: (l) => { if (l.includes('batch done')) lines.push(l); if (l.includes('flush ')) flines.push(l); } });
const app = createApp({ config, logger, feedback: feedbackSettingsFromEnv({ TD_FEEDBACK: 'false' }) });
await app.start();
const t0 = performance.now(); const c0 = process.cpuUsage();
while (app.streamCounters()!.committedBatches === 0 || (await admin.fetchOffsets({ groupId: id, topics: [`${id}.in`] }))[0]!.partitions.reduce((a, p) => a + Number(p.offset), 0) < N) await new Promise((r) => setTimeout(r, 50));
const secs = (performance.now() - t0) / 1000;
const cu = process.cpuUsage(c0); console.log(`N=${N} ${enc} ${secs.toFixed(2)}s ${(N / secs).toFixed(0)} req/s cpu ${((cu.user + cu.system) / 1000 / N).toFixed(2)} ms/req`);
const recs = lines.map((l) => JSON.parse(l)); if (recs.length === 0) recs.push({messages:0,ms:0,acquireMs:0,prepareMs:0,flushWaitMs:0,commitMs:0});
const avg = (k: string) => (recs.reduce((a, x) => a + x[k], 0) / recs.length).toFixed(1);
console.log(`batches ${recs.length} avg messages ${avg('messages')} ms ${avg('ms')} acquire ${avg('acquireMs')} prepare ${avg('prepareMs')} flushWait ${avg('flushWaitMs')} commit ${avg('commitMs')}`);
for (const k of ['flush produce', 'flush log']) { const xs = flines.filter((l) => l.includes(k)).map((l) => JSON.parse(l).ms); console.log(k, xs.length, (xs.reduce((a: number, b: number) => a + b, 0) / xs.length).toFixed(1)); }
await app.stop({ timeoutMs: 5000 });
await admin.deleteTopics({ topics: ['in', 'l', 'h', 'd', 'o'].map((t) => `${id}.${t}`) });
await admin.disconnect();
process.exit(0);
