// The one shape of an error crossing a thread boundary, both ways, for every worker thread of
// the service: what a retry loop looks at (`retriable`), what a log shows (name and message),
// and what the receiving side needs to rebuild a typed error (`kind`).
import { TinyDancerError, errorMessage } from '../errors.js';

export interface ThreadError {
  /** The class name it was thrown as: InvalidInputError, KafkaJSConnectionError, … */
  name: string;
  /** Its message, with its cause's appended when it has one. */
  message: string;
  retriable: boolean;
  /** A sub-kind the class carries (DecodeError's json, protobuf, utf8, …). */
  kind?: string;
}

/**
 * Describes `err` for the other side. `retriableUnlessSaid`: what an error that carries no
 * `retriable` flag counts as — a producer's network errors are worth retrying, an engine's
 * unexpected throw is not.
 */
export function toThreadError(err: unknown, retriableUnlessSaid: boolean): ThreadError {
  const e = err as { name?: unknown; retriable?: unknown; kind?: unknown; cause?: unknown } | null | undefined;
  const cause = e?.cause instanceof Error ? `: ${e.cause.message}` : '';
  const flag = e?.retriable;
  const out: ThreadError = {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: errorMessage(err) + cause,
    retriable: typeof flag === 'boolean' ? flag : retriableUnlessSaid,
  };
  if (typeof e?.kind === 'string') out.kind = e.kind;
  return out;
}

/** A worker thread ended unasked (exit, uncaught error) or never became ready. Always retriable. */
export class ThreadCrashedError extends TinyDancerError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retriable: true });
  }
}

/** A worker thread reported that it could not start (a bad model, a broker it cannot reach). */
export class ThreadStartError extends TinyDancerError {
  /** What the thread reported. */
  readonly reported: ThreadError;

  constructor(what: string, reported: ThreadError) {
    super(`${what} could not start: ${reported.message}`, { retriable: reported.retriable });
    this.reported = reported;
  }
}
