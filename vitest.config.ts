import { defineConfig } from 'vitest/config';

// Two projects so either suite can run alone: `npm run test:unit` needs nothing running,
// `npm run test:integration` needs a Kafka broker and Postgres (found or started by globalSetup).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'src/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Integration tests share one broker and one Postgres on a 2-core machine: run files
          // one after another so timing-sensitive tests (rebalances, breaker windows) are stable.
          fileParallelism: false,
        },
      },
    ],
  },
});
