// Shared set-up for the feedback integration tests: a migrated schema of its own, topics of its
// own, a captured logger, and small polling helpers.
import type { Kafka, KafkaMessage } from 'kafkajs';
import type pg from 'pg';
import { createLogger, type Logger } from '../../../src/observe/logger.js';
import { migrate } from '../../../src/store/migrations.js';
import { createPool } from '../../../src/store/pg.js';
import { createTopics, databaseUrl, testKafka, uniqueName, uniqueSchema } from '../../support/infra.js';

export interface FeedbackDb {
  pool: pg.Pool;
  schema: string;
  cleanup(): Promise<void>;
}

export async function migratedDb(prefix = 'td_fb'): Promise<FeedbackDb> {
  const schema = uniqueSchema(prefix);
  const pool = createPool({ url: databaseUrl(), max: 6, applicationName: 'td-feedback-test' });
  await migrate(pool, { schema });
  return {
    pool,
    schema,
    cleanup: async () => {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
      await pool.end().catch(() => {});
    },
  };
}

export interface CapturedLogger {
  logger: Logger;
  lines: Record<string, unknown>[];
}

export function capturedLogger(level: 'debug' | 'info' | 'warn' = 'info'): CapturedLogger {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level, write: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

export async function topics(...names: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of names) out[n] = uniqueName(`td-fb-${n}`);
  await createTopics(Object.values(out));
  return out;
}

/** Reads `count` records from a topic from the beginning (or fails after timeoutMs). */
export async function readTopic(kafka: Kafka, topic: string, count: number, timeoutMs = 30_000): Promise<KafkaMessage[]> {
  const consumer = kafka.consumer({ groupId: uniqueName('td-fb-reader'), maxWaitTimeInMs: 100 });
  const got: KafkaMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    await consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message);
        if (got.length >= count) resolve();
      },
    });
    await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`read ${got.length}/${count} records of ${topic} in ${timeoutMs} ms`)), timeoutMs))]);
    return got;
  } finally {
    await consumer.disconnect();
  }
}

export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export { testKafka, uniqueName };

/** The value of one series of a metric in Prometheus text format, or undefined. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (.+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const part of (m[3] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
      const eq = part.indexOf('=');
      have[part.slice(0, eq)] = JSON.parse(part.slice(eq + 1)) as string;
    }
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}
