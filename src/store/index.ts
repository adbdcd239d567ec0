// The store: everything the service keeps in Postgres. Import from here.
export { DEFAULT_DATABASE_URL, createPool, quoteSchema, redactUrl, withClient } from './pg.js';
export { pgConnection, type PgTls } from './tls.js';
export type { PoolOptions, Queryable, StoreLog } from './pg.js';
export { MIGRATIONS, migrate, migrationChecksum, migrationLockKey } from './migrations.js';
export { ControlHistory } from './control-history.js';
export type { ControlHistoryEntry, ControlHistoryKind, ControlHistoryOptions } from './control-history.js';
export type { AppliedMigration, Migration, MigrateOptions, MigrateResult } from './migrations.js';
export { DecisionLog } from './decision-log.js';
export { encodeBatch } from './decision-rows.js';
export type {
  BacklogInfo,
  BreakerState,
  CloseResult,
  DecisionLogEvents,
  DecisionLogMetrics,
  DecisionLogOptions,
  DecisionRow,
  FlushInfo,
  LogToken,
  RejectedRow,
  RetryInfo,
} from './decision-log.js';
export { DEFAULT_STATS_WINDOW_MS, decisionStats, resolveWindow } from './stats.js';
export type {
  DecisionCounts,
  DecisionStats,
  LatencyPercentiles,
  ModelVersionStats,
  ReasonCounts,
  StatsOptions,
  StatsWindow,
} from './stats.js';
export { postgresAnswers, resolveDatabase, startEmbeddedPostgres } from './embedded.js';
export type { EmbeddedOptions, EmbeddedPostgres, ResolveDatabaseOptions, ResolvedDatabase } from './embedded.js';
export {
  DecisionLogClosedError,
  DecisionLogFullError,
  RowEncodingError,
  StoreError,
  classifyPgError,
  errorMessageWithCode,
  isRetriablePgError,
  pgErrorCode,
} from './errors.js';
export type { PgErrorKind } from './errors.js';
export { DEFAULT_BACKOFF, backoffDelay, sleep } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { openStore } from './store.js';
export type { OpenStoreOptions, Store } from './store.js';
