// Finds or starts the infrastructure integration tests need, once per run:
//   1. KAFKA_BROKERS / DATABASE_URL from the environment, when set (CI, a developer's own);
//   2. otherwise, where a Docker engine answers, Kafka and Postgres in testcontainers;
//   3. otherwise the project's own local broker (`npm run kafka:up`) and the local Postgres.
// Each test then makes its own random topics, groups and schemas (see ./infra.ts).
import { execFileSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string;
    databaseUrl: string;
  }
}

const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/test';

function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<unknown>> = [];
  let brokers = process.env.KAFKA_BROKERS;
  let databaseUrl = process.env.DATABASE_URL;

  if ((!brokers || !databaseUrl) && process.env.TD_TEST_NO_DOCKER !== '1' && dockerAnswers()) {
    if (!brokers) {
      const { KafkaContainer } = await import('@testcontainers/kafka');
      const kafka = await new KafkaContainer('confluentinc/cp-kafka:7.9.1').withKraft().start();
      brokers = `${kafka.getHost()}:${kafka.getMappedPort(9093)}`;
      stops.push(() => kafka.stop());
    }
    if (!databaseUrl) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const pg = await new PostgreSqlContainer('postgres:16-alpine').start();
      databaseUrl = pg.getConnectionUri();
      stops.push(() => pg.stop());
    }
    process.stderr.write(`integration tests: testcontainers Kafka ${brokers}, Postgres ${databaseUrl}\n`);
  }

  if (!brokers) {
    const { up } = await import('../../scripts/kafka.mjs');
    brokers = (await up()).brokers;
    process.stderr.write(`integration tests: local Apache Kafka broker at ${brokers}\n`);
  }
  databaseUrl ??= LOCAL_POSTGRES;

  // Both: `inject()` for tests, and the environment for child processes the tests spawn.
  process.env.KAFKA_BROKERS = brokers;
  process.env.DATABASE_URL = databaseUrl;
  project.provide('kafkaBrokers', brokers);
  project.provide('databaseUrl', databaseUrl);

  return async () => {
    for (const stop of stops.reverse()) await stop();
  };
}
