// The one error every wire decoder throws: any bytes, in either encoding, either decode or fail
// with a DecodeError whose one-line reason is fit for a `td-error` DLQ header.
import { InvalidInputError, oneLine } from '../errors.js';

/** What went wrong, coarsely: the DLQ metric's label and the test's handle. */
export type DecodeErrorKind = 'too_large' | 'utf8' | 'json' | 'protobuf' | 'invalid';

export class DecodeError extends InvalidInputError {
  readonly kind: DecodeErrorKind;
  constructor(kind: DecodeErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(oneLine(message, 400), options);
    this.kind = kind;
  }
}
