// OAUTHBEARER tokens for kafkajs. kafkajs asks for a token on every connection it authenticates
// and leaves caching and refreshing to the provider: a token file is read again each time (a
// projected service-account token is rotated in place), and a client-credentials token is
// reused until most of its lifetime has passed, then fetched anew.
import { readFile } from 'node:fs/promises';
import type { OauthbearerProviderResponse } from 'kafkajs';
import type { KafkaSaslSettings } from '../config-security.js';
import { KafkaSecurityError } from './security-errors.js';

type OAuthSettings = Extract<KafkaSaslSettings, { mechanism: 'oauthbearer' }>;
export type TokenProvider = () => Promise<OauthbearerProviderResponse>;

/** A token is refreshed once this share of its lifetime has passed. */
const REFRESH_AT = 0.8;
/** Lifetime assumed when the endpoint does not say (expires_in). */
const DEFAULT_LIFETIME_S = 300;

export function oauthTokenProvider(settings: OAuthSettings, fetchImpl: typeof fetch = fetch): TokenProvider {
  if ('tokenFile' in settings) {
    const file = settings.tokenFile;
    return async () => {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        throw new KafkaSecurityError(`KAFKA_SASL_OAUTH_TOKEN_FILE=${JSON.stringify(file)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      const value = text.trim();
      if (value === '') throw new KafkaSecurityError(`KAFKA_SASL_OAUTH_TOKEN_FILE=${JSON.stringify(file)} is empty`);
      return { value };
    };
  }
  const endpoint = new URL(settings.tokenUrl);
  // For messages: never the query string (some providers put parameters there).
  const where = `${endpoint.origin}${endpoint.pathname}`;
  let cached: { value: string; refreshAt: number } | undefined;
  let pending: Promise<OauthbearerProviderResponse> | undefined;

  const request = async (): Promise<OauthbearerProviderResponse> => {
    const body = new URLSearchParams({ grant_type: 'client_credentials' });
    if (settings.scope !== undefined) body.set('scope', settings.scope);
    // RFC 6749 §2.3.1: client id and secret, form-encoded, as HTTP Basic credentials.
    const basic = Buffer.from(`${encodeURIComponent(settings.clientId)}:${encodeURIComponent(settings.clientSecret.reveal())}`).toString('base64');
    let res: Response;
    try {
      res = await fetchImpl(endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: body.toString(),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new KafkaSecurityError(`OAuth token request to ${where} failed: ${cause?.code ?? cause?.message ?? (err as Error).message}`, { retriable: true });
    }
    const text = await res.text();
    let json: { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } = {};
    try {
      json = JSON.parse(text) as typeof json;
    } catch {
      /* reported below */
    }
    if (!res.ok) {
      const detail = [json.error, json.error_description].filter((x) => typeof x === 'string').join(': ');
      throw new KafkaSecurityError(`OAuth token request to ${where} was refused: HTTP ${res.status}${detail ? ` (${detail.slice(0, 200)})` : ''}`, {
        retriable: res.status >= 500,
      });
    }
    if (typeof json.access_token !== 'string' || json.access_token === '') {
      throw new KafkaSecurityError(`OAuth token endpoint ${where} answered without an access_token`);
    }
    const lifetime = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : DEFAULT_LIFETIME_S;
    cached = { value: json.access_token, refreshAt: Date.now() + lifetime * 1000 * REFRESH_AT };
    return { value: json.access_token };
  };

  return async () => {
    if (cached && Date.now() < cached.refreshAt) return { value: cached.value };
    // Connections authenticating at once share one request.
    pending ??= request().finally(() => (pending = undefined));
    return pending;
  };
}
