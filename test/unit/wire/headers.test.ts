import { describe, expect, it } from 'vitest';
import { CONTENT_TYPES, encodingOf, getHeader } from '../../../src/wire/headers.js';

describe('content type → encoding', () => {
  it('is protobuf only for application/x-protobuf (parameters and case ignored)', () => {
    expect(encodingOf('application/x-protobuf')).toBe('protobuf');
    expect(encodingOf('Application/X-Protobuf; charset=binary')).toBe('protobuf');
    expect(encodingOf('application/json')).toBe('json');
    expect(encodingOf('application/protobuf')).toBe('json');
    expect(encodingOf(undefined)).toBe('json');
  });

  it('reads headers by exact name, then case-insensitively, Buffer or string', () => {
    expect(getHeader({ 'content-type': Buffer.from('application/x-protobuf') }, 'content-type')).toBe('application/x-protobuf');
    expect(getHeader({ 'Content-Type': 'application/json' }, 'content-type')).toBe('application/json');
    expect(getHeader({ x: ['a', 'b'] }, 'x')).toBe('a');
    expect(getHeader(undefined, 'x')).toBeUndefined();
  });

  it('content types are the two of the payload contract', () => {
    expect(CONTENT_TYPES).toEqual({ json: 'application/json', protobuf: 'application/x-protobuf' });
  });
});
