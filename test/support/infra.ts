// Helpers for integration tests: every test gets its own names, so tests never see each
// other's records and a re-run never sees the last run's.
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import pg from 'pg';
import { inject } from 'vitest';

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Postgres identifiers: lower case, no dashes. */
export function uniqueSchema(prefix = 'td_test'): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

export function kafkaBrokers(): string[] {
  return (process.env.KAFKA_BROKERS ?? inject('kafkaBrokers')).split(',').map((b) => b.trim());
}

export function databaseUrl(): string {
  return process.env.DATABASE_URL ?? inject('databaseUrl');
}

export function testKafka(clientId = uniqueName('td-test')): Kafka {
  return new Kafka({ clientId, brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

export async function createTopics(names: string[], numPartitions = 1): Promise<void> {
  await withAdmin((admin) =>
    admin.createTopics({ topics: names.map((topic) => ({ topic, numPartitions })), waitForLeaders: true }),
  );
}

/**
 * Deletes those of the topics that exist, ignoring errors (a tear-down must not fail a run).
 * Only existing ones are named: kafkajs retries a deletion that names a missing topic for
 * seconds before it gives up.
 */
export async function removeTopics(names: string[]): Promise<void> {
  await withAdmin(async (admin) => {
    const existing = new Set(await admin.listTopics());
    const topics = names.filter((t) => existing.has(t));
    if (topics.length > 0) await admin.deleteTopics({ topics });
  }).catch(() => {});
}

/** A schema that exists for the test's lifetime; drop() removes it with everything in it. */
export async function createSchema(prefix?: string): Promise<{ schema: string; drop: () => Promise<void> }> {
  const schema = uniqueSchema(prefix);
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await client.end();
  }
  return {
    schema,
    drop: async () => {
      const c = new pg.Client({ connectionString: databaseUrl() });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}
