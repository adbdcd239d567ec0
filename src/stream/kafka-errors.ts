// Whether a kafkajs failure is worth trying again: the broker not being there (refused, reset,
// timed out, not elected yet) is; a refused login, a missing permission or a certificate that
// does not verify is not — waiting would only delay the message that says so.

/** Socket and name-lookup codes of a broker that is not (yet) reachable. */
const RETRIABLE_CODES = new Set([
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
  // A broker's DNS name can appear after the service that uses it (a new cluster's records).
  'ENOTFOUND',
]);

/** Names of kafkajs errors no retry mends. */
const FATAL_NAMES = new Set(['KafkaJSSASLAuthenticationError', 'KafkaJSInvalidArgument', 'KafkaJSNotImplemented', 'KafkaJSUnsupportedMagicByteInMessageSet']);

function field(err: unknown, name: string): unknown {
  return err && typeof err === 'object' ? (err as Record<string, unknown>)[name] : undefined;
}

/** The chain err, err.cause, err.originalError, ... (bounded, cycle-safe). */
function chain(err: unknown): unknown[] {
  const out: unknown[] = [];
  let cur: unknown = err;
  while (cur !== undefined && cur !== null && out.length < 10 && !out.includes(cur)) {
    out.push(cur);
    cur = field(cur, 'cause') ?? field(cur, 'originalError');
  }
  return out;
}

function tlsCode(code: string): boolean {
  return /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|ERR_OSSL)/.test(code);
}

export function isRetriableKafkaError(err: unknown): boolean {
  const links = chain(err);
  for (const e of links) {
    const name = field(e, 'name');
    if (typeof name === 'string' && FATAL_NAMES.has(name)) return false;
    const code = field(e, 'code');
    if (typeof code === 'string' && tlsCode(code)) return false;
  }
  for (const e of links) {
    const code = field(e, 'code');
    if (typeof code === 'string' && RETRIABLE_CODES.has(code)) return true;
  }
  // The innermost kafkajs error decides, as kafkajs's own consumer does when it crashes.
  const inner = links[links.length - 1];
  return field(inner, 'retriable') === true;
}
