// The outcome consumer on the real broker and Postgres: JSON and protobuf outcomes stored once
// and joined, bad records on the DLQ with the request DLQ's headers, the live monitor and its
// metrics fed, drift logged once, and a redelivery counted as a duplicate.
import client from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeOutcome } from '../../../src/feedback/codec.js';
import { OutcomeConsumer } from '../../../src/feedback/consumer.js';
import { createFeedbackMetrics } from '../../../src/feedback/metrics.js';
import { CalibrationMonitor } from '../../../src/feedback/monitor.js';
import { OutcomeStore } from '../../../src/feedback/outcome-store.js';
import { DecisionLog, type DecisionRow } from '../../../src/store/decision-log.js';
import { DLQ_HEADERS } from '../../../src/stream/dlq.js';
import { capturedLogger, eventually, metricValue, migratedDb, readTopic, testKafka, topics, uniqueName, type FeedbackDb } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { minSamples?: number; window?: number } = {}) {
  const db: FeedbackDb = await migratedDb();
  cleanups.push(db.cleanup);
  const t = await topics('outcomes', 'dlq');
  const kafka = testKafka();
  const registry = new client.Registry();
  const monitor = new CalibrationMonitor({ window: opts.window ?? 200, minSamples: opts.minSamples ?? 50, epsilon: 0.05 });
  monitor.setCalibration('v1', { alpha: 0.1, qhat: 0.5 });
  const consumer = { current: undefined as OutcomeConsumer | undefined };
  const metrics = createFeedbackMetrics(registry, monitor, { pendingJoins: () => consumer.current?.pendingJoins ?? 0 });
  const cap = capturedLogger();
  const store = new OutcomeStore(db.pool, db.schema);
  const dlqReasons: string[] = [];
  const c = new OutcomeConsumer({
    kafka,
    topic: t.outcomes!,
    dlqTopic: t.dlq!,
    groupId: uniqueName('td-fb-outcomes'),
    store,
    monitor,
    metrics,
    logger: cap.logger,
    joinRetryMs: 100,
    dlqCounter: { inc: ({ reason }) => void dlqReasons.push(reason) },
  });
  consumer.current = c;
  const producer = kafka.producer();
  await producer.connect();
  cleanups.push(async () => {
    await producer.disconnect();
    await c.stop();
  });
  const log = new DecisionLog({ pool: db.pool, schema: db.schema, flushIntervalMs: 5 });
  cleanups.push(async () => void (await log.close({ timeout: 1000 })));
  return { db, t, kafka, registry, monitor, c, cap, producer, log, dlqReasons };
}

function decision(i: number, confidence: number, version = 'v1'): DecisionRow {
  return {
    request_id: `req-${i}`,
    candidate_id: 'c0',
    rank: 0,
    confidence,
    uncertainty: 0.1,
    use_lightweight: confidence >= 0.5,
    reason: 'model',
    model_version: version,
    inference_time_us: 10,
    features: [confidence, 0.5, 0.5, 0.9, 0.5],
  };
}

describe('OutcomeConsumer', () => {
  it('stores JSON and protobuf outcomes, joins them, parks bad records on the DLQ, and commits', async () => {
    const { db, t, kafka, registry, c, producer, log, monitor, dlqReasons } = await setup({ minSamples: 1 });
    await log.flushed(log.append([decision(1, 0.9), decision(2, 0.2), decision(3, 0.8)]));
    await c.start();
    const bad = [
      { value: Buffer.from('{"request_id":"req-9","candidate_id":"c0"}'), why: 'ok is required' },
      { value: Buffer.from('not json'), why: 'not JSON' },
      { value: Buffer.from('{"request_id":"req-9","candidate_id":"c0","ok":true,"quality":7}'), why: 'quality must be in [0, 1]' },
      { value: Buffer.from([0x0a, 0x7f, 0x41]), why: 'runs past the end', protobuf: true },
    ];
    await producer.send({
      topic: t.outcomes!,
      messages: [
        { key: 'req-1', value: encodeOutcome({ request_id: 'req-1', candidate_id: 'c0', ok: true, served_by: 'lightweight' }, 'json'), headers: { 'content-type': 'application/json' } },
        ...bad.map((b) => ({ key: 'bad', value: b.value, headers: { 'content-type': b.protobuf ? 'application/x-protobuf' : 'application/json', 'x-trace': 'abc' } })),
        {
          key: 'req-2',
          value: encodeOutcome({ request_id: 'req-2', candidate_id: 'c0', ok: true, quality: 0.75, served_by: 'heavyweight' }, 'protobuf'),
          headers: { 'content-type': 'application/x-protobuf' },
        },
        // An outcome for a decision not logged yet: stored now, joined when the decision lands.
        { key: 'req-4', value: encodeOutcome({ request_id: 'req-4', candidate_id: 'c0', ok: false, served_by: 'lightweight' }, 'json') },
      ],
    });

    const dlq = await readTopic(kafka, t.dlq!, bad.length);
    expect(dlq).toHaveLength(bad.length);
    for (const [i, rec] of dlq.entries()) {
      expect(rec.value!.equals(bad[i]!.value)).toBe(true);
      expect(rec.key!.toString()).toBe('bad');
      expect(rec.headers![DLQ_HEADERS.error]!.toString()).toContain(bad[i]!.why);
      expect(rec.headers![DLQ_HEADERS.topic]!.toString()).toBe(t.outcomes);
      expect(rec.headers![DLQ_HEADERS.partition]!.toString()).toBe('0');
      expect(rec.headers![DLQ_HEADERS.offset]!.toString()).toBe(String(i + 1));
      expect(rec.headers!['x-trace']!.toString()).toBe('abc'); // original headers kept
    }
    await eventually(() => c.status().stored === 3, 20_000, 'three outcomes stored');
    await eventually(() => dlqReasons.length === bad.length, 10_000, 'the DLQ counted');
    expect(dlqReasons.sort()).toEqual(['outcome_invalid', 'outcome_invalid', 'outcome_json', 'outcome_protobuf']);
    const { rows } = await db.pool.query(`SELECT request_id, ok, quality, served_by FROM "${db.schema}".routing_outcomes ORDER BY request_id`);
    expect(rows).toEqual([
      { request_id: 'req-1', ok: true, quality: null, served_by: 'lightweight' },
      { request_id: 'req-2', ok: true, quality: 0.75, served_by: 'heavyweight' },
      { request_id: 'req-4', ok: false, quality: null, served_by: 'lightweight' },
    ]);
    // req-1 (label 1 at 0.9: covered) and req-2 (quality 0.75 → label 1 at 0.2: not covered) are in the monitor.
    expect(monitor.snapshotVersion('v1')).toMatchObject({ outcomes: 2, labeled: 2, coverage: 0.5 });
    expect(c.status().pendingJoins).toBe(1);
    await log.flushed(log.append([decision(4, 0.1)]));
    await eventually(() => c.status().pendingJoins === 0, 10_000, 'the early outcome joined');
    expect(monitor.snapshotVersion('v1')).toMatchObject({ outcomes: 3, labeled: 3, lightweightSamples: 2, lightweightSuccessRate: 0.5 });

    const text = await registry.metrics();
    expect(metricValue(text, 'td_outcomes_total', { result: 'stored' })).toBe(3);
    expect(metricValue(text, 'td_outcomes_total', { result: 'rejected' })).toBe(bad.length);
    expect(metricValue(text, 'td_outcome_labels_total', { served_by: 'heavyweight', label: '1' })).toBe(1);
    expect(metricValue(text, 'td_conformal_coverage', { version: 'v1' })).toBeCloseTo(2 / 3, 6);
    expect(metricValue(text, 'td_conformal_coverage_target', { version: 'v1' })).toBeCloseTo(0.9, 6);
    expect(metricValue(text, 'td_outcomes_pending_join')).toBe(0);

    // Offsets are committed: a new consumer in the same group sees nothing to redo.
    const admin = kafka.admin();
    await admin.connect();
    try {
      await eventually(async () => {
        const offs = await admin.fetchOffsets({ groupId: c.status().groupId, topics: [t.outcomes!] });
        return offs[0]!.partitions[0]!.offset === String(bad.length + 3);
      }, 10_000, 'offsets committed');
    } finally {
      await admin.disconnect();
    }
  });

  it('counts a redelivered outcome as a duplicate, and fires drift once with one log line', async () => {
    const { t, registry, c, cap, producer, log, monitor } = await setup({ minSamples: 50, window: 200 });
    const n = 120;
    const rows: DecisionRow[] = [];
    for (let i = 0; i < n; i++) rows.push(decision(i, 0.9));
    await log.flushed(log.append(rows));
    await c.start();
    // The model said 0.9 for all; 60 % failed on the lightweight model: coverage 0.4 < 0.85.
    const msgs = [];
    for (let i = 0; i < n; i++) msgs.push({ key: `req-${i}`, value: encodeOutcome({ request_id: `req-${i}`, candidate_id: 'c0', ok: i % 5 < 2, served_by: 'lightweight' }, 'json') });
    await producer.send({ topic: t.outcomes!, messages: msgs });
    await eventually(() => c.status().stored === n, 20_000, 'all outcomes stored');
    // The same outcome again (a producer retry): stored nothing, counted nothing.
    await producer.send({ topic: t.outcomes!, messages: [msgs[0]!] });
    await eventually(() => c.status().duplicates === 1, 20_000, 'the duplicate seen');
    const s = monitor.snapshotVersion('v1')!;
    expect(s.outcomes).toBe(n);
    expect(s.coverage).toBeCloseTo(0.4, 6);
    expect(s.drifting).toBe(true);
    const text = await registry.metrics();
    expect(metricValue(text, 'td_calibration_drift', { version: 'v1' })).toBe(1);
    expect(metricValue(text, 'td_calibration_drift_events_total', { version: 'v1' })).toBe(1);
    expect(metricValue(text, 'td_outcomes_total', { result: 'duplicate' })).toBe(1);
    const driftLines = cap.lines.filter((l) => String(l.msg).startsWith('calibration drift:'));
    expect(driftLines).toHaveLength(1);
    expect(driftLines[0]).toMatchObject({ level: 'warn', version: 'v1', samples: 50, threshold: 0.85 });
  });
});
