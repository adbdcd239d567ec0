// Proves the integration harness itself: the broker and Postgres found or started by the global
// setup are real, reachable, and isolated per test by random names.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createSchema, createTopics, databaseUrl, testKafka, uniqueName } from '../../support/infra.js';

describe('integration harness', () => {
  it('round-trips records through the real Kafka broker with a consumer group', async () => {
    const topic = uniqueName('harness');
    await createTopics([topic], 2);
    const kafka = testKafka();
    const producer = kafka.producer({ idempotent: true });
    const consumer = kafka.consumer({ groupId: uniqueName('harness-group') });
    await producer.connect();
    await consumer.connect();
    try {
      const sent = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 5}`, value: `v${i}` }));
      await producer.send({ topic, acks: -1, messages: sent });
      await consumer.subscribe({ topic, fromBeginning: true });
      const seen: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${seen.length} of 20 records arrived`)), 30_000);
        void consumer.run({
          eachMessage: async ({ message }) => {
            seen.push(message.value!.toString());
            if (seen.length === sent.length) {
              clearTimeout(timer);
              resolve();
            }
          },
        });
      });
      expect(seen.sort()).toEqual(sent.map((m) => m.value).sort());
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
    }
  });

  const schemas: Array<{ drop: () => Promise<void> }> = [];
  afterAll(async () => {
    for (const s of schemas) await s.drop();
  });

  it('queries the real Postgres in a schema of its own', async () => {
    const created = await createSchema('harness');
    schemas.push(created);
    const client = new pg.Client({ connectionString: databaseUrl() });
    await client.connect();
    try {
      await client.query(`CREATE TABLE ${created.schema}.t (id int primary key, v text)`);
      await client.query(`INSERT INTO ${created.schema}.t SELECT g, 'row ' || g FROM generate_series(1, 50) g`);
      const { rows } = await client.query(`SELECT count(*)::int AS n, max(id) AS top FROM ${created.schema}.t`);
      expect(rows[0]).toEqual({ n: 50, top: 50 });
    } finally {
      await client.end();
    }
  });
});
