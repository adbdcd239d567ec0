// What a Postgres failure means for the decision log, decided in one place so every retry loop
// in the store agrees:
//   'retriable' — the database or the path to it is unwell (connection lost, server restarting,
//                 too many connections, serialization failure, timeout). Try the same rows again
//                 later: the insert is idempotent, so a retry after a half-seen commit is safe.
//   'row'       — the data of some row is unacceptable (SQLSTATE class 22 data exception, class
//                 23 integrity violation, class 54 size limits). Retrying cannot help; the batch is split to find the
//                 guilty rows, and only they are set aside.
//   'fatal'     — anything else (undefined table, permission denied, an unknown error). It is not
//                 the rows' fault, so the rows are KEPT and retried with backoff while the failure
//                 is reported: dropping healthy rows because of a deployment mistake is worse than
//                 stalling (the stream sees the backlog and pauses).
import { TinyDancerError } from '../errors.js';

export type PgErrorKind = 'retriable' | 'row' | 'fatal';

/** Node socket errors that mean "the network or the server is not there right now". */
const RETRIABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTCONN',
  'ESOCKETTIMEDOUT',
  // opossum: the breaker in front of the database is open; it lets a trial through later.
  'EOPENBREAKER',
]);

/** Individual SQLSTATEs (outside the retriable classes) that are transient. */
const RETRIABLE_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '55006', // object_in_use
  '57014', // query_canceled (statement_timeout)
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, recovery)
  '57P05', // idle_session_timeout
  '25006', // read_only_sql_transaction: a failover left us on a replica for a moment
  '58000', // system_error
  '58030', // io_error
]);

/** SQLSTATE classes (first two characters) that are transient as a whole. */
const RETRIABLE_CLASSES = new Set([
  '08', // connection_exception
  '53', // insufficient_resources (disk full, out of memory, too many connections)
]);

/** SQLSTATE classes where the data of a row is at fault. */
const ROW_CLASSES = new Set([
  '22', // data_exception (bad encoding, NUL byte, out of range, invalid text representation)
  '23', // integrity_constraint_violation (not null, check, foreign key)
  // program_limit_exceeded: for our fixed statements this is a size that depends on the data,
  // e.g. a candidate_id too long for a btree entry (54000). Splitting the batch is the right
  // answer either way: a statement too large succeeds in halves, a single oversized row is set aside.
  '54',
]);

/** node-postgres reports a dead connection with plain Errors; these are their messages. */
const RETRIABLE_MESSAGES = [
  /connection terminated/i,
  /timeout exceeded when trying to connect/i,
  /query read timeout/i,
  /connection error and is not queryable/i,
  /server closed the connection unexpectedly/i,
  /socket hang up/i,
  /too many connections/i,
];

const SQLSTATE = /^[0-9A-Z]{5}$/;

function codeOf(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** Classifies an error thrown by node-postgres (or by the breaker in front of it). */
export function classifyPgError(err: unknown): PgErrorKind {
  if (err instanceof RowEncodingError) return 'row';
  if (err instanceof TinyDancerError) return err.retriable ? 'retriable' : 'fatal';
  const code = codeOf(err);
  if (code !== undefined) {
    if (RETRIABLE_NODE_CODES.has(code)) return 'retriable';
    if (SQLSTATE.test(code)) {
      if (RETRIABLE_SQLSTATES.has(code)) return 'retriable';
      const cls = code.slice(0, 2);
      if (RETRIABLE_CLASSES.has(cls)) return 'retriable';
      if (ROW_CLASSES.has(cls)) return 'row';
      return 'fatal';
    }
  }
  // Connecting to several addresses (localhost → ::1 and 127.0.0.1) fails with an AggregateError
  // whose members carry the codes.
  if (err instanceof AggregateError && err.errors.length > 0) {
    const kinds = err.errors.map(classifyPgError);
    return kinds.every((k) => k === 'retriable') ? 'retriable' : 'fatal';
  }
  const message = err instanceof Error ? err.message : String(err);
  if (RETRIABLE_MESSAGES.some((re) => re.test(message))) return 'retriable';
  return 'fatal';
}

export function isRetriablePgError(err: unknown): boolean {
  return classifyPgError(err) === 'retriable';
}

/** The SQLSTATE or socket code of an error, for logs and metrics labels. */
export function pgErrorCode(err: unknown): string {
  return codeOf(err) ?? (err instanceof Error ? err.name : 'unknown');
}

/**
 * The decision log's buffer is at its hard bound. Retriable: wait for capacity
 * (`waitForCapacity()`) and append again; nothing was appended.
 */
export class DecisionLogFullError extends TinyDancerError {
  constructor(readonly backlog: number, readonly maxBuffered: number, readonly attempted: number) {
    super(`decision log is full: ${backlog} rows waiting, bound ${maxBuffered}, ${attempted} more refused; wait for capacity`, {
      retriable: true,
    });
  }
}

/** A row that cannot even be turned into SQL parameters (e.g. metadata that is not JSON-able). */
export class RowEncodingError extends TinyDancerError {
  readonly code = 'ROW_ENCODING';
  constructor(message: string) {
    super(message, { retriable: false });
  }
}

/** The decision log was closed: appends are refused, unwritten rows are reported. */
export class DecisionLogClosedError extends TinyDancerError {
  constructor(message: string) {
    super(message, { retriable: false });
  }
}

/** Postgres could not be used (unreachable, refused the migration...). */
export class StoreError extends TinyDancerError {
  /** Wraps a pg error, retriable when the cause is. */
  static from(message: string, cause: unknown): StoreError {
    return new StoreError(message, { cause, retriable: classifyPgError(cause) === 'retriable' });
  }
}

/** "message (CODE)": pg's messages alone do not say which SQLSTATE or socket error it was. */
export function errorMessageWithCode(err: unknown): string {
  const message = err instanceof AggregateError && err.errors.length > 0 && !err.message
    ? err.errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')
    : err instanceof Error ? err.message : String(err);
  const code = codeOf(err);
  return code && !message.includes(code) ? `${message} (${code})` : message;
}
