// Kafka record headers as the clients hand them over (Buffer or string, maybe repeated), and the
// content-type header that selects a payload's encoding.

export type Encoding = 'json' | 'protobuf';

export const CONTENT_TYPES: Readonly<Record<Encoding, string>> = Object.freeze({
  json: 'application/json',
  protobuf: 'application/x-protobuf',
});

export type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;
export type Headers = Record<string, HeaderValue>;

function headerString(v: HeaderValue): string | undefined {
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined) return undefined;
  return typeof first === 'string' ? first : first.toString('latin1');
}

/** Reads a header by name (exact name first, then case-insensitively). */
export function getHeader(headers: Headers | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  const exact = headers[name];
  if (exact !== undefined) return headerString(exact);
  const lower = name.toLowerCase();
  for (const k of Object.keys(headers)) if (k.toLowerCase() === lower) return headerString(headers[k]);
  return undefined;
}

/** Protobuf when the content type is application/x-protobuf (parameters ignored), JSON otherwise (contracts §1). */
export function encodingOf(contentType: string | undefined): Encoding {
  if (contentType === undefined) return 'json';
  const media = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return media === CONTENT_TYPES.protobuf ? 'protobuf' : 'json';
}
