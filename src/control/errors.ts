// From a thrown error to the gRPC status the caller sees. One place, so every RPC answers the
// same failure with the same status, and the message always reaches the caller as one line.
import { status as GrpcStatus, type ServiceError, Metadata } from '@grpc/grpc-js';
import { InvalidInputError, TinyDancerError, errorMessage, oneLine } from '../errors.js';
import { ControlError, type ControlErrorKind } from './target.js';

const KIND_STATUS: Readonly<Record<ControlErrorKind, GrpcStatus>> = Object.freeze({
  invalid_argument: GrpcStatus.INVALID_ARGUMENT,
  not_found: GrpcStatus.NOT_FOUND,
  failed_precondition: GrpcStatus.FAILED_PRECONDITION,
  resource_exhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  aborted: GrpcStatus.ABORTED,
  unavailable: GrpcStatus.UNAVAILABLE,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  internal: GrpcStatus.INTERNAL,
});

/** fs error codes: a path the server cannot use is the caller's problem, said precisely. */
const ERRNO_STATUS: Readonly<Record<string, GrpcStatus>> = Object.freeze({
  ENOENT: GrpcStatus.NOT_FOUND,
  ENOTDIR: GrpcStatus.NOT_FOUND,
  EISDIR: GrpcStatus.INVALID_ARGUMENT,
  EACCES: GrpcStatus.FAILED_PRECONDITION,
  EPERM: GrpcStatus.FAILED_PRECONDITION,
  ELOOP: GrpcStatus.INVALID_ARGUMENT,
  ENAMETOOLONG: GrpcStatus.INVALID_ARGUMENT,
});

function errnoCode(err: unknown): string | undefined {
  // Walk the cause chain (bounded): an fs error is often wrapped in a ModelError.
  let e: unknown = err;
  for (let depth = 0; depth < 8 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code in ERRNO_STATUS) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The gRPC status for an error thrown by a ControlTarget (or by the server itself). */
export function grpcStatusOf(err: unknown): GrpcStatus {
  if (err instanceof ControlError) return KIND_STATUS[err.kind];
  const errno = errnoCode(err);
  if (errno !== undefined) return ERRNO_STATUS[errno]!;
  if (err instanceof InvalidInputError) return GrpcStatus.INVALID_ARGUMENT;
  // A duck-typed kind lets layers that cannot import ControlError (workers, other packages)
  // still pick a precise status.
  const kind = (err as { kind?: unknown } | null)?.kind;
  if (typeof kind === 'string' && kind in KIND_STATUS) return KIND_STATUS[kind as ControlErrorKind];
  if (err instanceof TinyDancerError && err.retriable) return GrpcStatus.UNAVAILABLE;
  return GrpcStatus.INTERNAL;
}

/** The name of a status code, e.g. 16 → "UNAUTHENTICATED". */
export function statusName(code: number): string {
  return (GrpcStatus as unknown as Record<number, string>)[code] ?? `STATUS_${code}`;
}

/** A ServiceError for a grpc-js callback: status from grpcStatusOf, one-line message. */
export function toServiceError(err: unknown, code: GrpcStatus = grpcStatusOf(err)): Partial<ServiceError> {
  return { code, details: oneLine(errorMessage(err)), metadata: new Metadata() };
}

export function serviceError(code: GrpcStatus, message: string): Partial<ServiceError> {
  return { code, details: oneLine(message), metadata: new Metadata() };
}
