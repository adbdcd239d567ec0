#!/usr/bin/env node
// A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM) for development,
// tests and CI on machines without Docker. The jars come from Maven Central through the pom in
// deploy/kafka and are cached under .cache/kafka (ignored by git), so only the first run pays.
//
//   node scripts/kafka.mjs up      start (or find) the broker; returns once it accepts clients
//   node scripts/kafka.mjs up --secure
//                                  the same broker with two more listeners: SASL_SSL (PLAIN,
//                                  SCRAM-SHA-512, OAUTHBEARER with the unsecured-JWS validator)
//                                  and mutual TLS; see ./kafka-secure.mjs
//   node scripts/kafka.mjs down    stop it cleanly (SIGTERM, then SIGKILL after a grace period)
//   node scripts/kafka.mjs status  print whether it runs
//
// `up` is idempotent: a broker already answering on the port is left alone. Plain JavaScript on
// purpose: it must run before the TypeScript build exists (CI, first run).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SECURE_MECHANISMS, describeSecure, prepareSecure, registerScram, secureProperties } from './kafka-secure.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const POM = join(ROOT, 'deploy', 'kafka', 'pom.xml');

function settings(env = process.env) {
  const home = resolve(env.TD_KAFKA_HOME ?? join(ROOT, '.cache', 'kafka'));
  const port = Number(env.TD_KAFKA_PORT ?? 9092);
  const controllerPort = Number(env.TD_KAFKA_CONTROLLER_PORT ?? port + 1);
  for (const [name, value] of [['TD_KAFKA_PORT', port], ['TD_KAFKA_CONTROLLER_PORT', controllerPort]]) {
    if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`${name} must be a TCP port, got '${value}'`);
  }
  const version = readFileSync(POM, 'utf8').match(/<kafka\.version>([^<]+)<\/kafka\.version>/)?.[1];
  if (!version) throw new Error(`cannot read kafka.version from ${POM}`);
  const saslPort = Number(env.TD_KAFKA_SASL_PORT ?? port + 2);
  const mtlsPort = Number(env.TD_KAFKA_MTLS_PORT ?? port + 3);
  for (const [name, value] of [['TD_KAFKA_SASL_PORT', saslPort], ['TD_KAFKA_MTLS_PORT', mtlsPort]]) {
    if (!Number.isInteger(value) || value < 1 || value > 65535) throw new Error(`${name} must be a TCP port, got '${value}'`);
  }
  return {
    home,
    port,
    controllerPort,
    saslPort,
    mtlsPort,
    secureDir: join(home, 'secure'),
    version,
    // A broker of its own (a test's temporary home) may share the jars of the default one.
    libs: resolve(env.TD_KAFKA_LIBS ?? join(home, `libs-${version}`)),
    data: join(home, 'data'),
    pidFile: join(home, 'kafka.pid'),
    logFile: join(home, 'kafka.log'),
    config: join(home, 'server.properties'),
    log4j: join(home, 'log4j2.properties'),
    heap: env.TD_KAFKA_HEAP ?? '512m',
    startTimeoutMs: Number(env.TD_KAFKA_START_TIMEOUT_MS ?? 120_000),
  };
}

const say = (msg) => process.stderr.write(`kafka: ${msg}\n`);

function portOpen(port, host = '127.0.0.1', timeoutMs = 1000) {
  return new Promise((done) => {
    const socket = connect({ port, host });
    const finish = (ok) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/** True when a Kafka broker answers an ApiVersions request on the port (not just any listener). */
function kafkaAnswers(port, host = '127.0.0.1', timeoutMs = 2000) {
  // ApiVersions v0: size, api_key=18, api_version=0, correlation_id, client_id (int16 len + bytes).
  const clientId = Buffer.from('td-probe');
  const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length);
  body.writeInt16BE(18, 0);
  body.writeInt16BE(0, 2);
  body.writeInt32BE(7, 4);
  body.writeInt16BE(clientId.length, 8);
  clientId.copy(body, 10);
  const frame = Buffer.concat([Buffer.alloc(4), body]);
  frame.writeInt32BE(body.length, 0);
  return new Promise((done) => {
    const socket = connect({ port, host });
    let got = Buffer.alloc(0);
    const finish = (ok) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => socket.write(frame));
    socket.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      // Response: size(4) correlation_id(4) error_code(2) ...
      if (got.length >= 10) finish(got.readInt32BE(4) === 7 && got.readInt16BE(8) === 0);
    });
    socket.once('error', () => finish(false));
  });
}

function readPid(s) {
  if (!existsSync(s.pidFile)) return undefined;
  const pid = Number(readFileSync(s.pidFile, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function ensureJars(s) {
  const marker = join(s.libs, '.complete');
  if (existsSync(marker)) return;
  say(`fetching Apache Kafka ${s.version} jars from Maven Central into ${s.libs} (first run only)`);
  rmSync(s.libs, { recursive: true, force: true });
  mkdirSync(s.libs, { recursive: true });
  const mvn = spawnSync(
    'mvn',
    ['-q', '-B', '-Dstyle.color=never', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${s.libs}`, '-DincludeScope=runtime'],
    // Quiet unless it fails: Maven's console codes are noise in CI logs.
    { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' },
  );
  if (mvn.error) throw new Error(`cannot run Maven (mvn): ${mvn.error.message}; install Maven and Java 17+`);
  if (mvn.status !== 0) {
    process.stderr.write(`${mvn.stdout ?? ''}${mvn.stderr ?? ''}`);
    throw new Error(`Maven failed to fetch the Kafka jars (exit ${mvn.status})`);
  }
  if (!readdirSync(s.libs).some((f) => f.startsWith('kafka_2.13-'))) throw new Error(`no kafka jar in ${s.libs} after Maven ran`);
  writeFileSync(marker, `${new Date().toISOString()}\n`);
}

function writeConfig(s, secure) {
  mkdirSync(s.data, { recursive: true });
  const props = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    'controller.quorum.voters': `1@127.0.0.1:${s.controllerPort}`,
    // Clients connect to `localhost:<port>`; the controller listener is for the quorum only.
    listeners: `PLAINTEXT://127.0.0.1:${s.port},CONTROLLER://127.0.0.1:${s.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://localhost:${s.port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': s.data,
    'num.partitions': '1',
    'auto.create.topics.enable': 'true',
    'offsets.topic.replication.factor': '1',
    // Fewer internal partitions than the default 50: the first group join and the first
    // transaction create these topics, and on a 2-core machine 50 partitions take seconds.
    'offsets.topic.num.partitions': '6',
    'transaction.state.log.num.partitions': '6',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'share.coordinator.state.topic.replication.factor': '1',
    'share.coordinator.state.topic.min.isr': '1',
    // Tests join and leave groups constantly; the default 3 s delay would slow every join.
    'group.initial.rebalance.delay.ms': '0',
    // SPEC §1 allows 1000 candidates × 4096 dims in one request: far above Kafka's 1 MB default.
    'message.max.bytes': String(32 * 1024 * 1024),
    'replica.fetch.max.bytes': String(32 * 1024 * 1024),
    'log.retention.hours': '24',
    'log.segment.bytes': String(64 * 1024 * 1024),
    ...(secure ? secureProperties(s, secure) : {}),
  };
  writeFileSync(s.config, Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
  writeFileSync(
    s.log4j,
    [
      'status = warn',
      'appender.out.type = Console',
      'appender.out.name = STDOUT',
      'appender.out.layout.type = PatternLayout',
      'appender.out.layout.pattern = [%d] %p %m (%c)%n',
      'rootLogger.level = info',
      'rootLogger.appenderRef.out.ref = STDOUT',
      // The state-change and request loggers are verbose and say nothing a developer needs.
      'logger.state.name = state.change.logger',
      'logger.state.level = warn',
      'logger.controller.name = org.apache.kafka.controller',
      'logger.controller.level = warn',
      '',
    ].join('\n'),
  );
}

function java(s, mainClass, args) {
  const classpath = join(s.libs, '*');
  return [
    `-Xms128m`,
    `-Xmx${s.heap}`,
    '-XX:+UseG1GC',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${s.log4j}`,
    '-cp',
    classpath,
    mainClass,
    ...args,
  ];
}

/** Formats a new data directory; true when it did (SCRAM users given here exist from the start). */
function formatStorage(s, extra = []) {
  if (existsSync(join(s.data, 'meta.properties'))) return false;
  // A KRaft cluster id is 16 random bytes in URL-safe base64 without padding. One that starts
  // with '-' would be read by kafka-storage as an option (as Kafka's own ids, it is drawn again).
  let clusterId;
  do clusterId = randomBytes(16).toString('base64url');
  while (clusterId.startsWith('-'));
  say(`formatting ${s.data} (cluster id ${clusterId})`);
  const run = spawnSync('java', java(s, 'kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', s.config, ...extra]), {
    encoding: 'utf8',
  });
  if (run.error) throw new Error(`cannot run java: ${run.error.message}; install Java 17+`);
  if (run.status !== 0) throw new Error(`kafka-storage format failed: ${(run.stderr || run.stdout).trim().split('\n').pop()}`);
  return true;
}

async function waitReady(s, pid) {
  const deadline = Date.now() + s.startTimeoutMs;
  while (Date.now() < deadline) {
    if (pid !== undefined && !alive(pid)) {
      const tail = existsSync(s.logFile) ? readFileSync(s.logFile, 'utf8').trim().split('\n').slice(-15).join('\n') : '';
      throw new Error(`the broker exited during start-up; last lines of ${s.logFile}:\n${tail}`);
    }
    if (await kafkaAnswers(s.port)) return;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`the broker did not accept clients on localhost:${s.port} within ${s.startTimeoutMs} ms (see ${s.logFile})`);
}

/**
 * Starts (or finds) the broker. With `{ secure: true }` it also has the SASL_SSL and mutual-TLS
 * listeners, and the result carries `secure`: the addresses, files and client environments
 * (also written to <home>/secure/client-env.json).
 */
export async function up(env = process.env, options = {}) {
  const s = settings(env);
  const secure = options.secure ? prepareSecure(s) : undefined;
  const result = (r) => (secure ? { ...r, secure: describeSecure(s, secure) } : r);
  const pid = readPid(s);
  if (pid !== undefined && alive(pid)) {
    await waitReady(s, pid);
    if (secure && !readFileSync(s.config, 'utf8').includes('SASL_SSL://')) {
      throw new Error(`the broker (pid ${pid}) runs without the secure listeners: run \`npm run kafka:down\` first`);
    }
    say(`already running (pid ${pid}) on localhost:${s.port}`);
    return result({ brokers: `localhost:${s.port}`, pid, started: false });
  }
  if (await kafkaAnswers(s.port)) {
    if (secure && !(await portOpen(s.saslPort))) throw new Error(`a broker not started here answers on localhost:${s.port}, without a SASL_SSL listener on ${s.saslPort}`);
    say(`a broker already answers on localhost:${s.port}; leaving it alone`);
    return result({ brokers: `localhost:${s.port}`, pid: undefined, started: false });
  }
  if (await portOpen(s.port)) throw new Error(`port ${s.port} is taken by something that is not Kafka`);
  mkdirSync(s.home, { recursive: true });
  ensureJars(s);
  writeConfig(s, secure);
  // SCRAM credentials live in the cluster metadata: given at format time for a new data
  // directory, through the Admin API (kafka-configs) for one formatted before.
  const scramAtFormat = secure ? formatStorage(s, ['--add-scram', `SCRAM-SHA-512=[name=${secure.scramUser},password=${secure.scramPassword}]`]) : formatStorage(s);
  const out = openSync(s.logFile, 'a');
  const child = spawn('java', java(s, 'kafka.Kafka', [s.config]), {
    detached: true,
    stdio: ['ignore', out, out],
    cwd: s.home,
  });
  closeSync(out);
  child.unref();
  writeFileSync(s.pidFile, `${child.pid}\n`);
  say(`starting Apache Kafka ${s.version} (pid ${child.pid}), log ${s.logFile}`);
  const started = Date.now();
  await waitReady(s, child.pid);
  if (secure && !scramAtFormat) registerScram(s, secure, (mainClass, args) => spawnSync('java', java(s, mainClass, args), { encoding: 'utf8' }));
  say(`ready on localhost:${s.port} after ${((Date.now() - started) / 1000).toFixed(1)} s${secure ? ` (SASL_SSL ${SECURE_MECHANISMS.join(', ')} on localhost:${s.saslPort}, mutual TLS on localhost:${s.mtlsPort})` : ''}`);
  return result({ brokers: `localhost:${s.port}`, pid: child.pid, started: true });
}

export async function down(env = process.env) {
  const s = settings(env);
  const pid = readPid(s);
  if (pid === undefined || !alive(pid)) {
    rmSync(s.pidFile, { force: true });
    say('not running');
    return false;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  if (alive(pid)) {
    say(`pid ${pid} ignored SIGTERM for 30 s; killing it`);
    process.kill(pid, 'SIGKILL');
  }
  rmSync(s.pidFile, { force: true });
  say(`stopped (pid ${pid})`);
  return true;
}

export async function status(env = process.env) {
  const s = settings(env);
  const pid = readPid(s);
  const answers = await kafkaAnswers(s.port);
  return { pid: pid !== undefined && alive(pid) ? pid : undefined, answers, brokers: `localhost:${s.port}` };
}

const invokedDirectly = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  const [command, ...flags] = process.argv.slice(2);
  const secure = flags.includes('--secure');
  const run = {
    up: async () => {
      const r = await up(process.env, { secure });
      if (r.secure) process.stdout.write(r.secure.instructions);
    },
    down,
    status: async () => console.log(JSON.stringify(await status())),
  }[command];
  if (!run || flags.some((f) => f !== '--secure') || (secure && command !== 'up')) {
    process.stderr.write('usage: node scripts/kafka.mjs <up [--secure]|down|status>\n');
    process.exit(2);
  }
  run().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`kafka: ${err.message}\n`);
      process.exit(1);
    },
  );
}
