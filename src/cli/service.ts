// Runs `serve`'s service (the app and its control plane) until a signal or a fatal stop, for the
// `serve` and `demo` commands alike.
import type { App } from '../app.js';
import type { Config } from '../config.js';
import type { ControlEnv } from '../control/tls.js';
import type { Logger } from '../observe/logger.js';

export interface ServiceOptions {
  config: Config;
  logger: Logger;
  /**
   * Called once the service is ready, with a way to stop it; what it returns is stopped before
   * the service (the demo's synthetic traffic uses this).
   */
  onStarted?: (app: App, stop: (reason: string) => void) => Promise<{ stop(): Promise<void> } | undefined>;
  /** The control plane's TLS and message-size settings (TD_GRPC_TLS_*, TD_GRPC_MAX_MESSAGE_BYTES). */
  control?: ControlEnv;
}

/** Runs the service until a signal (or the demo's duration); resolves with the exit status. */
export async function runService(opts: ServiceOptions): Promise<number> {
  const { config, logger } = opts;
  const { createApp } = await import('../app.js');
  const { startControlServer } = await import('../control/server.js');
  // The feedback loop's settings (TD_FEEDBACK*, TD_DRIFT_*), read here at the edge.
  const { feedbackSettingsFromEnv } = await import('../feedback/service.js');
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
    target: app.control,
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

  const companion = await opts.onStarted?.(app, resolveStop);

  const reason = await stopRequested;
  logger.info(`stopping (${reason})`);
  await companion?.stop().catch(() => {});
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
