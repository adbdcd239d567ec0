// TLS for the control plane, from PEM files. Read once at start (the I/O edge); a missing or
// unreadable file is a ConfigError naming the variable or option and the path.
import { readFileSync } from 'node:fs';
import { ServerCredentials, credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { ConfigError, errorMessage } from '../errors.js';

export interface ServerTlsFiles {
  /** PEM certificate chain the server presents. */
  certFile: string;
  /** PEM private key of that certificate. */
  keyFile: string;
  /** PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS). */
  caFile?: string;
}

export interface ClientTlsFiles {
  /** CA bundle to verify the server with; the system roots when absent. */
  caFile?: string;
  /** Client certificate and key, for mutual TLS. */
  certFile?: string;
  keyFile?: string;
  /** Expected server name when it differs from the host dialled (e.g. dialling 127.0.0.1). */
  serverName?: string;
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${what} ${JSON.stringify(path)} cannot be read: ${errorMessage(err)}`, { cause: err });
  }
}

export function serverCredentials(tls: ServerTlsFiles | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const cert = readPem('TLS certificate', tls.certFile);
  const key = readPem('TLS key', tls.keyFile);
  const ca = tls.caFile === undefined ? null : readPem('TLS client CA', tls.caFile);
  try {
    return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null);
  } catch (err) {
    throw new ConfigError(`TLS configuration is unusable: ${errorMessage(err)}`, { cause: err });
  }
}

export function clientCredentials(tls: ClientTlsFiles | undefined): { creds: ChannelCredentials; options: Record<string, string> } {
  if (!tls) return { creds: credentials.createInsecure(), options: {} };
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new ConfigError('mutual TLS needs both a client certificate and its key');
  }
  const ca = tls.caFile === undefined ? null : readPem('TLS CA', tls.caFile);
  const cert = tls.certFile === undefined ? null : readPem('TLS client certificate', tls.certFile);
  const key = tls.keyFile === undefined ? null : readPem('TLS client key', tls.keyFile);
  const options: Record<string, string> = {};
  if (tls.serverName !== undefined) options['grpc.ssl_target_name_override'] = tls.serverName;
  return { creds: credentials.createSsl(ca, key, cert), options };
}

type Env = Record<string, string | undefined>;

function envValue(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

export interface ControlEnv {
  tls: ServerTlsFiles | undefined;
  maxMessageBytes: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

/**
 * The control plane's own environment variables (the rest is in src/config.ts):
 *   TD_GRPC_TLS_CERT, TD_GRPC_TLS_KEY  serve TLS with this certificate and key (both or neither)
 *   TD_GRPC_TLS_CA                     also require client certificates signed by this CA (mTLS)
 *   TD_GRPC_MAX_MESSAGE_BYTES          largest message accepted (default 32 MiB: the largest
 *                                      legal RoutingRequest, 1000 x 4096 floats, fits)
 */
export function controlEnv(env: Env = process.env): ControlEnv {
  const certFile = envValue(env, 'TD_GRPC_TLS_CERT');
  const keyFile = envValue(env, 'TD_GRPC_TLS_KEY');
  const caFile = envValue(env, 'TD_GRPC_TLS_CA');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError('TD_GRPC_TLS_CERT and TD_GRPC_TLS_KEY must be set together (TLS needs both the certificate and its key)');
  }
  if (caFile !== undefined && certFile === undefined) {
    throw new ConfigError('TD_GRPC_TLS_CA needs TD_GRPC_TLS_CERT and TD_GRPC_TLS_KEY: mutual TLS is TLS plus client certificates');
  }
  let maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  const rawMax = envValue(env, 'TD_GRPC_MAX_MESSAGE_BYTES');
  if (rawMax !== undefined) {
    const n = Number(rawMax);
    if (!/^\d+$/.test(rawMax) || !Number.isSafeInteger(n) || n < 1024 || n > 1024 * 1024 * 1024) {
      throw new ConfigError(`TD_GRPC_MAX_MESSAGE_BYTES=${JSON.stringify(rawMax)} is invalid: expected a whole number of bytes in [1024, 1073741824]`);
    }
    maxMessageBytes = n;
  }
  const tls = certFile === undefined ? undefined : { certFile, keyFile: keyFile!, ...(caFile === undefined ? {} : { caFile }) };
  return { tls, maxMessageBytes };
}
