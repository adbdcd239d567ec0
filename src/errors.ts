// One base error for the whole service, in the manner of kafkajs: a `retriable` flag that retry
// loops trust, and the original `cause` kept for logs. Subclasses name the layer that failed.

export interface TinyDancerErrorOptions {
  retriable?: boolean;
  cause?: unknown;
}

export class TinyDancerError extends Error {
  readonly retriable: boolean;

  constructor(message: string, options: TinyDancerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable ?? false;
  }
}

/** Bad input from a user or a client: never retriable; the CLI exits 2 on it. */
export class InvalidInputError extends TinyDancerError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { ...options, retriable: false });
  }
}

/** Bad command-line arguments; the CLI exits 2. */
export class UsageError extends InvalidInputError {}

/** A model file or model bytes that cannot be used; the old model stays. */
export class ModelError extends InvalidInputError {}

/** Configuration that cannot be used; the process refuses to start. */
export class ConfigError extends InvalidInputError {}

/** One line, safe for a terminal or a Kafka header: no newlines, bounded length. */
export function oneLine(message: string, max = 500): string {
  const flat = message.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
