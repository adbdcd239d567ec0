// `tiny-dancer serve`: the stream processor with its control plane and metrics. Configuration
// comes from the environment (docs/contracts.md §2), read once here. SIGTERM/SIGINT drain: stop fetching,
// finish and commit what is in flight within TD_DRAIN_TIMEOUT_MS, exit 0. A second signal exits
// at once (nothing is lost: uncommitted records are redelivered and the log is idempotent).
import { loadConfig } from '../../config.js';
import { errorMessage, oneLine } from '../../errors.js';
import { createLogger } from '../../observe/logger.js';
import type { DemoOptions } from './demo.js';
import { numberArg, parseCommandArgs } from '../args.js';

export const summary = 'run the stream processor (Kafka in, decisions out, Postgres log, gRPC control, metrics)';
export const usage = `usage: tiny-dancer serve [--demo] [--rate N] [--control-only]

Consumes routing requests from Kafka, decides every candidate, publishes the decisions to the
lightweight/heavyweight topics, logs each one to Postgres and serves the gRPC control plane
and /metrics, /healthz, /readyz. Configured by environment variables (see the README):
KAFKA_BROKERS, TD_TOPIC_*, TD_GROUP_ID, TD_EXACTLY_ONCE, DATABASE_URL, TD_GRPC_ADDR,
TD_ADMIN_TOKEN, TD_HTTP_ADDR, TD_MODEL_PATH, TD_BREAKER_*, TD_MAX_IN_FLIGHT, TD_WORKERS, ...

On a bare machine: without KAFKA_BROKERS the local development broker is started
(scripts/kafka.mjs); without DATABASE_URL, and with no Postgres at the default address,
decisions are logged to an embedded Postgres in .tiny-dancer/pgdata.

  --demo           also feed synthetic traffic (see \`tiny-dancer demo --help\`)
  --rate N         demo requests per second (default 20)
  --control-only   serve only the gRPC control plane over a router pool (no Kafka, no Postgres)

Start-up waits for Postgres and the Kafka broker to answer (not ready meanwhile) for at most
TD_STARTUP_TIMEOUT_MS (default 300000; 0 waits forever).

Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 bad configuration, 1 start-up failure
(including the start-up timeout) or a consumer that stopped for good.`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    demo: { type: 'boolean' },
    rate: { type: 'string' },
    'control-only': { type: 'boolean' },
  });
  const config = loadConfig(process.env);
  // Read with the rest of the configuration, so a half-set TLS pair refuses to start at once.
  const { controlEnv } = await import('../../control/tls.js');
  const control = controlEnv(process.env);
  const logger = createLogger({ level: config.logLevel, secrets: [config.adminToken] });
  process.on('unhandledRejection', (err) => {
    // A bug, but one promise must not take the stream down unseen.
    logger.error('unhandled promise rejection', { err: oneLine(errorMessage(err)) });
  });

  if (values['control-only']) {
    const { startControlOnly } = await import('../../control/standalone.js');
    const host = config.grpcAddr.host.includes(':') ? `[${config.grpcAddr.host}]` : config.grpcAddr.host;
    const co = await startControlOnly({
      ...(config.modelPath ? { modelPath: config.modelPath } : {}),
      ...(config.workers ? { workers: config.workers } : {}),
      thresholds: config.thresholds,
      address: `${host}:${config.grpcAddr.port}`,
      adminToken: config.adminToken,
      ...control,
      logger,
    });
    logger.info('control plane (route-only) listening', { address: co.server.address });
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    await co.close({ timeoutMs: 5000 });
    return 0;
  }

  const { runService } = await import('../service.js');
  if (!values.demo) return runService({ config, logger, control });
  const demo: DemoOptions = { rate: numberArg('rate', values.rate, 20, 0.1, 100_000), encoding: 'mixed', badRate: 0.02, summaryEveryMs: 3000 };
  const { startDemoTraffic } = await import('./demo.js');
  return runService({ config, logger, control, onStarted: (app, stop) => startDemoTraffic(app, demo, () => stop('demo finished')) });
}
