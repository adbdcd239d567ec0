// Bearer-token authorization of the state-changing control calls.
//
// Secure by default: with no token configured the calls are refused, never open. The token is
// compared in constant time — both sides are hashed to 32 bytes first, so timingSafeEqual sees
// equal lengths and the comparison time says nothing about the token's length or prefix.
// Neither the configured nor the presented token ever appears in a message.
import { createHash, timingSafeEqual } from 'node:crypto';
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js';

export type AuthDecision = { ok: true } | { ok: false; code: GrpcStatus; message: string };

/** Anything holding the token: a string or the Secret of src/config.ts. */
export type TokenSource = string | { reveal(): string } | undefined;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export class AdminAuth {
  readonly #digest: Buffer | undefined;

  constructor(token: TokenSource) {
    const value = typeof token === 'string' ? token : token?.reveal();
    this.#digest = value === undefined || value === '' ? undefined : digest(value);
  }

  get configured(): boolean {
    return this.#digest !== undefined;
  }

  /** Decides from the call's metadata; `call` names the RPC in messages. */
  check(metadata: Metadata, call: string): AuthDecision {
    if (this.#digest === undefined) {
      return {
        ok: false,
        code: GrpcStatus.PERMISSION_DENIED,
        message: `${call} is disabled: the server has no admin token configured (set TD_ADMIN_TOKEN on the server to enable state-changing calls)`,
      };
    }
    const values = metadata.get('authorization');
    if (values.length === 0) {
      return { ok: false, code: GrpcStatus.UNAUTHENTICATED, message: `${call} needs metadata 'authorization: Bearer <TD_ADMIN_TOKEN>'; none was sent` };
    }
    if (values.length > 1) {
      return { ok: false, code: GrpcStatus.UNAUTHENTICATED, message: `${call}: send exactly one 'authorization' metadata entry` };
    }
    const raw = values[0];
    const text = typeof raw === 'string' ? raw : raw!.toString('utf8');
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(text);
    if (!m) {
      return { ok: false, code: GrpcStatus.UNAUTHENTICATED, message: `${call}: the 'authorization' metadata must be 'Bearer <token>'` };
    }
    if (!timingSafeEqual(digest(m[1]!), this.#digest)) {
      return { ok: false, code: GrpcStatus.UNAUTHENTICATED, message: `${call}: the admin token is not valid` };
    }
    return { ok: true };
  }
}
