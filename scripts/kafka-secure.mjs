// The secured listeners of the local broker (`npm run kafka:up -- --secure`): a development CA
// and certificates made with openssl, SASL users, the listener properties, and the environment
// a client needs. Everything lives in <TD_KAFKA_HOME>/secure and is made once.
//
//   SASL_SSL  localhost:<port+2>  PLAIN (user tdplain), SCRAM-SHA-512 (user tdscram),
//                                 OAUTHBEARER (Kafka's unsecured-JWS validator: any token with
//                                 alg "none", a `sub` and an unexpired `exp` is accepted)
//   SSL       localhost:<port+3>  mutual TLS: the client certificate must be signed by the CA
//
// SCRAM-SHA-256 is deliberately not offered, so a client can see how a mechanism the broker
// lacks is reported. These are development credentials: the files are readable by the owner only.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SECURE_MECHANISMS = ['PLAIN', 'SCRAM-SHA-512', 'OAUTHBEARER'];

function openssl(dir, args) {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run.error) throw new Error(`cannot run openssl: ${run.error.message}; install openssl`);
  if (run.status !== 0) throw new Error(`openssl ${args[0]} failed: ${(run.stderr || run.stdout).trim().split('\n').pop()}`);
}

/** A key and a certificate signed by the CA, with the given extensions. */
function issue(dir, name, subject, extensions) {
  writeFileSync(join(dir, `${name}.ext`), `${extensions.join('\n')}\n`);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '3650', '-sha256', '-extfile', `${name}.ext`]);
}

function makeCertificates(dir) {
  if (existsSync(join(dir, 'client.pem'))) return;
  openssl(dir, [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '3650', '-sha256',
    '-subj', '/CN=tiny-dancer development CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  // The broker answers as localhost and 127.0.0.1, the names clients are given.
  issue(dir, 'broker', '/CN=localhost', ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth,clientAuth', 'keyUsage=critical,digitalSignature,keyEncipherment']);
  issue(dir, 'client', '/CN=tiny-dancer-client', ['extendedKeyUsage=clientAuth', 'keyUsage=critical,digitalSignature,keyEncipherment']);
  // Kafka's PEM key store: the (PKCS#8, unencrypted) key followed by the certificate chain.
  writeFileSync(join(dir, 'broker-keystore.pem'), readFileSync(join(dir, 'broker.key'), 'utf8') + readFileSync(join(dir, 'broker.pem'), 'utf8'));
  for (const f of ['ca.key', 'broker.key', 'client.key', 'broker-keystore.pem']) chmodSync(join(dir, f), 0o600);
}

/** Makes (once) the certificates and credentials; returns what the broker and clients need. */
export function prepareSecure(s) {
  const dir = s.secureDir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  makeCertificates(dir);
  const credFile = join(dir, 'credentials.json');
  if (!existsSync(credFile)) {
    const cred = {
      plainUser: 'tdplain',
      plainPassword: randomBytes(12).toString('hex'),
      scramUser: 'tdscram',
      scramPassword: randomBytes(12).toString('hex'),
    };
    writeFileSync(credFile, `${JSON.stringify(cred, null, 2)}\n`, { mode: 0o600 });
  }
  return JSON.parse(readFileSync(credFile, 'utf8'));
}

/** server.properties entries for the two secured listeners (the plaintext one stays as it is). */
export function secureProperties(s, cred) {
  const dir = s.secureDir;
  return {
    listeners: `PLAINTEXT://127.0.0.1:${s.port},CONTROLLER://127.0.0.1:${s.controllerPort},SASL_SSL://127.0.0.1:${s.saslPort},MTLS://127.0.0.1:${s.mtlsPort}`,
    'advertised.listeners': `PLAINTEXT://localhost:${s.port},SASL_SSL://localhost:${s.saslPort},MTLS://localhost:${s.mtlsPort}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL',
    'ssl.keystore.type': 'PEM',
    'ssl.keystore.location': join(dir, 'broker-keystore.pem'),
    'ssl.truststore.type': 'PEM',
    'ssl.truststore.location': join(dir, 'ca.pem'),
    'listener.name.mtls.ssl.client.auth': 'required',
    'sasl.enabled.mechanisms': SECURE_MECHANISMS.join(','),
    'listener.name.sasl_ssl.sasl.enabled.mechanisms': SECURE_MECHANISMS.join(','),
    'listener.name.sasl_ssl.plain.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required username="${cred.plainUser}" password="${cred.plainPassword}" user_${cred.plainUser}="${cred.plainPassword}";`,
    'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config': 'org.apache.kafka.common.security.scram.ScramLoginModule required;',
    // No server callback handler: Kafka then validates OAUTHBEARER tokens with its built-in
    // unsecured-JWS validator, which needs no identity provider (offline).
    'listener.name.sasl_ssl.oauthbearer.sasl.jaas.config': 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="tdbroker";',
  };
}

/** SCRAM user of a data directory formatted before --secure: through the Admin API. */
export function registerScram(s, cred, runJava) {
  const run = runJava('kafka.admin.ConfigCommand', [
    '--bootstrap-server', `localhost:${s.port}`,
    '--alter', '--entity-type', 'users', '--entity-name', cred.scramUser,
    '--add-config', `SCRAM-SHA-512=[password=${cred.scramPassword}]`,
  ]);
  if (run.error || run.status !== 0) throw new Error(`could not create the SCRAM user: ${(run.stderr || run.stdout || String(run.error)).trim().split('\n').pop()}`);
}

/** The client environments, written to <secure>/client-env.json, and words to print. */
export function describeSecure(s, cred) {
  const dir = s.secureDir;
  const sasl = `localhost:${s.saslPort}`;
  const caFile = join(dir, 'ca.pem');
  const tls = { KAFKA_SSL: 'true', KAFKA_SSL_CA_FILE: caFile };
  const env = {
    scram: { KAFKA_BROKERS: sasl, ...tls, KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: cred.scramUser, KAFKA_SASL_PASSWORD: cred.scramPassword },
    plain: { KAFKA_BROKERS: sasl, ...tls, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: cred.plainUser, KAFKA_SASL_PASSWORD: cred.plainPassword },
    // Add KAFKA_SASL_OAUTH_TOKEN_FILE or KAFKA_SASL_OAUTH_TOKEN_URL (+ client id and secret).
    oauthbearer: { KAFKA_BROKERS: sasl, ...tls, KAFKA_SASL_MECHANISM: 'oauthbearer' },
    mtls: { KAFKA_BROKERS: `localhost:${s.mtlsPort}`, ...tls, KAFKA_SSL_CERT_FILE: join(dir, 'client.pem'), KAFKA_SSL_KEY_FILE: join(dir, 'client.key') },
  };
  const info = {
    plaintext: `localhost:${s.port}`,
    saslSsl: sasl,
    mtls: `localhost:${s.mtlsPort}`,
    mechanisms: SECURE_MECHANISMS,
    caFile,
    caKeyFile: join(dir, 'ca.key'),
    env,
  };
  const file = join(dir, 'client-env.json');
  writeFileSync(file, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  const lines = (e) => Object.entries(e).map(([k, v]) => `export ${k}=${v}`).join('\n');
  const instructions = [
    `# SASL_SSL with SCRAM-SHA-512 on ${sasl} (PLAIN, mutual TLS and OAUTHBEARER settings: ${file})`,
    lines(env.scram),
    '',
  ].join('\n');
  return { ...info, file, instructions };
}
