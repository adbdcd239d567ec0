// `tiny-dancer serve`: the stream processor with its control plane and metrics. Configuration
// comes from the environment (SPEC §2), read once here. SIGTERM/SIGINT drain: stop fetching,
// finish and commit what is in flight within TD_DRAIN_TIMEOUT_MS, exit 0. A second signal exits
// at once (nothing is lost: uncommitted records are redelivered and the log is idempotent).
import { loadConfig, type Config } from '../../config.js';
import { errorMessage, oneLine } from '../../errors.js';
import { createLogger, type Logger } from '../../observe/logger.js';
import type { DemoOptions } from './demo.js';
import type { ControlEnv } from '../../control/tls.js';
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

export interface ServiceOptions {
  config: Config;
  logger: Logger;
  /** Synthetic traffic alongside (the demo). */
  demo?: DemoOptions;
  /** The control plane's TLS and message-size settings (TD_GRPC_TLS_*, TD_GRPC_MAX_MESSAGE_BYTES). */
  control?: ControlEnv;
}

/** Runs the service until a signal (or the demo's duration); resolves with the exit status. */
export async function runService(opts: ServiceOptions): Promise<number> {
  const { config, logger } = opts;
  const { createApp } = await import('../../app.js');
  const { startControlServer } = await import('../../control/server.js');
  // FEEDBACK (issue 8): the feedback loop's settings (TD_FEEDBACK*, TD_DRIFT_*), read here at the edge.
  const { feedbackSettingsFromEnv } = await import('../../feedback/service.js');
  const app = createApp({ config, logger, localBroker: true, feedback: feedbackSettingsFromEnv(process.env) });

  let stopping = false;
  let resolveStop!: (reason: string) => void;
  const stopRequested = new Promise<string>((r) => (resolveStop = r));
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`second ${signal}: exiting now; uncommitted records will be redelivered`);
      process.exit(130);
    }
    stopping = true;
    resolveStop(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The app gives up for good (its consumer stopped): stop as for a signal, then exit 1.
  let fatal: string | undefined;
  app.on('event', (e: { type: string; reason?: string }) => {
    if (e.type !== 'fatal' || stopping) return;
    stopping = true;
    fatal = e.reason;
    resolveStop(`fatal: ${e.reason}`);
  });

  // The control plane listens first: a port conflict fails at once, before Kafka and Postgres
  // are touched, and gRPC answers (NOT_SERVING, then SERVING; calls that need the engine say
  // UNAVAILABLE until it runs) by the time /readyz says ready — clients that wait for readiness
  // can connect at once.
  const control = await startControlServer({
    target: app,
    address: `${config.grpcAddr.host.includes(':') ? `[${config.grpcAddr.host}]` : config.grpcAddr.host}:${config.grpcAddr.port}`,
    adminToken: config.adminToken,
    ...(opts.control ?? {}),
    logger,
  }).catch((err: unknown) => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    throw err;
  });
  logger.info('control plane listening', { address: control.address, adminCalls: config.adminToken ? 'token required' : 'refused (no TD_ADMIN_TOKEN)' });

  // A signal during start-up stops the start instead of waiting for it to finish.
  const starting = app.start();
  let early: string | undefined;
  try {
    early = await Promise.race([starting.then(() => undefined), stopRequested]);
  } catch (err) {
    await control.close({ timeoutMs: 2000 }).catch(() => {});
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    throw err;
  }
  if (early !== undefined) {
    logger.info(`stopping during start-up (${early})`);
    starting.catch(() => {});
    await control.close({ timeoutMs: 2000 }).catch(() => {});
    await app.stop();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    setTimeout(() => process.exit(fatal === undefined ? 0 : 1), 3000).unref();
    if (fatal !== undefined) throw new Error(fatal);
    return 0;
  }

  let demo: { stop(): Promise<void> } | undefined;
  if (opts.demo) {
    const { startDemoTraffic } = await import('./demo.js');
    demo = await startDemoTraffic(app, opts.demo, () => resolveStop('demo finished'));
  }

  const reason = await stopRequested;
  logger.info(`stopping (${reason})`);
  await demo?.stop().catch(() => {});
  await control.close({ timeoutMs: 2000 }).catch(() => {});
  const { clean } = await app.stop();
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  // Whatever a library left scheduled must not hold the process after a drain.
  setTimeout(() => process.exit(fatal === undefined ? 0 : 1), 3000).unref();
  if (!clean) logger.warn('stopped before everything was committed; the rest will be redelivered');
  if (fatal !== undefined) throw new Error(fatal);
  return 0;
}

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

  return runService({
    config,
    logger,
    control,
    ...(values.demo
      ? { demo: { rate: numberArg('rate', values.rate, 20, 0.1, 100_000), encoding: 'mixed' as const, badRate: 0.02, summaryEveryMs: 3000 } }
      : {}),
  });
}
