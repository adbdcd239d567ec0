// A pre-connect check of a secured Kafka connection, made once before the clients start: a TLS
// handshake with the first broker that answers, then a SaslHandshake request, and for
// OAUTHBEARER the authentication itself. kafkajs reports a certificate it does not trust as a
// connection error and retries it, a mechanism the broker lacks as a bare error code, and it
// takes the broker's OAUTHBEARER error challenge for success (the connection then just drops);
// this check turns each into one final line that says what to fix.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { KafkaSecurity } from '../config-security.js';
import { KafkaSecurityError } from './security-errors.js';
import type { Logger } from '../observe/logger.js';
import { clientSecurity, tlsOptions } from './security.js';

const SASL_HANDSHAKE = 17;
const SASL_AUTHENTICATE = 36;
const UNSUPPORTED_SASL_MECHANISM = 33;
const ILLEGAL_SASL_STATE = 34;

// Node's codes for a certificate chain or name that does not verify.
const VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

function splitBroker(broker: string): { host: string; port: number } {
  const i = broker.lastIndexOf(':');
  const host = broker.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(broker.slice(i + 1)) };
}

/** Opens the connection kafkajs would open (TCP or TLS); undefined when nothing answers. */
function open(broker: string, security: KafkaSecurity, timeoutMs: number): Promise<Socket | undefined> {
  const { host, port } = splitBroker(broker);
  const tls = tlsOptions(security);
  return new Promise((resolve, reject) => {
    const socket: Socket = tls
      ? tlsConnect({ ...tls, host, port, ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }) })
      : netConnect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, timeoutMs);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      const code = err.code ?? '';
      if (tls && VERIFY_CODES.has(code)) {
        const hint = security.tls?.caFile ? `is its certificate signed by KAFKA_SSL_CA_FILE=${security.tls.caFile}?` : 'set KAFKA_SSL_CA_FILE to the CA that signed it';
        reject(new KafkaSecurityError(`TLS verification of Kafka broker ${broker} failed: ${code}: ${err.message} (${hint})`));
      } else if (['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT'].includes(code)) {
        // Not reachable: the clients' own retries and start-up deadline deal with that.
        resolve(undefined);
      } else if (tls) {
        reject(new KafkaSecurityError(`TLS handshake with Kafka broker ${broker} failed: ${code || err.message} (is it a TLS listener?)`));
      } else resolve(undefined);
    });
  });
}

function request(socket: Socket, apiKey: number, apiVersion: number, body: Buffer, timeoutMs: number): Promise<Buffer | undefined> {
  const clientId = Buffer.from('tiny-dancer-preflight');
  const header = Buffer.alloc(10);
  header.writeInt16BE(apiKey, 0);
  header.writeInt16BE(apiVersion, 2);
  header.writeInt32BE(1, 4);
  header.writeInt16BE(clientId.length, 8);
  const payload = Buffer.concat([header, clientId, body]);
  const size = Buffer.alloc(4);
  size.writeInt32BE(payload.length, 0);
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const done = (v: Buffer | undefined) => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= 4 && got.length >= 4 + got.readInt32BE(0)) done(got.subarray(4, 4 + got.readInt32BE(0)));
    });
    socket.once('close', () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.write(Buffer.concat([size, payload]));
  });
}

/** Parses a SaslHandshake v1 response: error code and the mechanisms the listener offers. */
export function parseSaslHandshake(frame: Buffer): { errorCode: number; mechanisms: string[] } {
  // correlation_id(4) error_code(2) mechanisms: int32 count, then int16-length strings.
  const errorCode = frame.readInt16BE(4);
  const count = frame.readInt32BE(6);
  const mechanisms: string[] = [];
  let at = 10;
  for (let i = 0; i < count && at + 2 <= frame.length; i++) {
    const len = frame.readInt16BE(at);
    mechanisms.push(frame.toString('utf8', at + 2, at + 2 + len));
    at += 2 + len;
  }
  return { errorCode, mechanisms };
}

/** Authenticates with the token (RFC 7628 client response) and reads the broker's verdict. */
async function checkToken(socket: Socket, broker: string, token: { value: string }, timeoutMs: number): Promise<void> {
  const auth = Buffer.from(`n,,\x01auth=Bearer ${token.value}\x01\x01`);
  const body = Buffer.alloc(4 + auth.length);
  body.writeInt32BE(auth.length, 0);
  auth.copy(body, 4);
  const frame = await request(socket, SASL_AUTHENTICATE, 1, body, timeoutMs);
  if (!frame) throw new KafkaSecurityError(`Kafka broker ${broker} closed the connection during OAUTHBEARER authentication`);
  const verdict = parseSaslAuthenticate(frame);
  // A refused token comes back as an error challenge (a JSON status) or an error code.
  if (verdict.errorCode !== 0 || verdict.challenge.length > 0) {
    let status = verdict.errorMessage ?? '';
    try {
      const j = JSON.parse(verdict.challenge) as { status?: string };
      status = j.status ?? status;
    } catch {
      /* not JSON */
    }
    throw new KafkaSecurityError(`Kafka SASL authentication failed at broker ${broker}: the OAUTHBEARER token was refused${status ? ` (${status})` : ''}`);
  }
}

/** A SaslAuthenticate v1 response: error code and message, and the server's bytes. */
export function parseSaslAuthenticate(frame: Buffer): { errorCode: number; errorMessage: string | undefined; challenge: string } {
  // correlation_id(4) error_code(2) error_message(nullable string) auth_bytes(int32 + bytes) ...
  const errorCode = frame.readInt16BE(4);
  const msgLen = frame.readInt16BE(6);
  const errorMessage = msgLen < 0 ? undefined : frame.toString('utf8', 8, 8 + msgLen);
  const at = 8 + Math.max(0, msgLen);
  const n = frame.readInt32BE(at);
  const challenge = n > 0 ? frame.toString('utf8', at + 4, at + 4 + n) : '';
  return { errorCode, errorMessage, challenge };
}

/**
 * Checks TLS (chain and name) and that the broker offers the SASL mechanism. Throws
 * KafkaSecurityError on a failure a person must fix; returns quietly when the settings check
 * out or no broker answers (the clients' retries handle an unreachable cluster).
 */
export async function preflightKafka(brokers: readonly string[], security: KafkaSecurity, logger: Logger, timeoutMs = 10_000): Promise<void> {
  if (!security.secured) return;
  for (const broker of brokers) {
    const socket = await open(broker, security, timeoutMs);
    if (!socket) continue;
    try {
      const sasl = security.sasl;
      if (!sasl) return;
      const wanted = sasl.mechanism.toUpperCase();
      const name = Buffer.from(wanted);
      const body = Buffer.alloc(2 + name.length);
      body.writeInt16BE(name.length, 0);
      name.copy(body, 2);
      const frame = await request(socket, SASL_HANDSHAKE, 1, body, timeoutMs);
      if (!frame) {
        throw new KafkaSecurityError(
          `Kafka broker ${broker} closed the connection at the SASL handshake${security.tls ? '' : ' (is it a TLS listener? set KAFKA_SSL=true)'}`,
        );
      }
      const { errorCode, mechanisms } = parseSaslHandshake(frame);
      if (errorCode === UNSUPPORTED_SASL_MECHANISM) {
        throw new KafkaSecurityError(
          `Kafka broker ${broker} does not offer SASL mechanism ${wanted} (KAFKA_SASL_MECHANISM); it offers: ${mechanisms.length ? mechanisms.join(', ') : 'none'}`,
        );
      }
      if (errorCode === ILLEGAL_SASL_STATE) {
        throw new KafkaSecurityError(`Kafka broker ${broker} is not a SASL listener, but KAFKA_SASL_MECHANISM is set (wrong port?)`);
      }
      if (errorCode !== 0) throw new KafkaSecurityError(`Kafka broker ${broker} refused the SASL handshake for ${wanted}: error code ${errorCode}`);
      const options = clientSecurity(security, logger).sasl;
      if (options && 'oauthBearerProvider' in options) await checkToken(socket, broker, await options.oauthBearerProvider(), timeoutMs);
      return;
    } finally {
      socket.destroy();
    }
  }
}
