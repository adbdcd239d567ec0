// Static checks of deploy/Dockerfile, .dockerignore and docker-compose.yml (Docker cannot run
// here): each file on its own, and that they agree with each other, with the Kubernetes
// manifests and with the configuration `serve` actually reads (src/config.ts, docs/contracts.md §2) on ports,
// environment and health checks.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.js';
import {
  SPEC_ENV,
  arr,
  configEnvNames,
  copyPaths,
  dockerignore,
  instructions,
  interpolate,
  obj,
  parseDockerfile,
  parseKeyValues,
  portOf,
  readRepo,
  readYaml,
  readYamlDocuments,
  repoFile,
  stageEnv,
  str,
  type Dockerfile,
  type Stage,
} from './support.js';

const dockerfile: Dockerfile = parseDockerfile(readRepo('deploy', 'Dockerfile'));
const isIgnored = dockerignore(readRepo('.dockerignore'));

function stage(name: string): Stage {
  const s = dockerfile.stages.find((st) => st.name === name);
  if (!s) throw new Error(`deploy/Dockerfile has no stage '${name}'`);
  return s;
}
const runtime = (): Stage => dockerfile.stages[dockerfile.stages.length - 1]!;
const exposed = (): number[] =>
  instructions(runtime(), 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => Number(p.replace(/\/tcp$/, '')))
    .sort((a, b) => a - b);
const healthcheckCommand = (): string[] => {
  const hc = instructions(runtime(), 'HEALTHCHECK');
  expect(hc).toHaveLength(1);
  expect(hc[0]!.exec, 'HEALTHCHECK must use the exec form (no shell in the probe)').toBeDefined();
  return hc[0]!.exec!;
};

describe('parsers used by these checks', () => {
  it('reads Dockerfile continuations, flags and exec forms', () => {
    const d = parseDockerfile(
      [
        'ARG IMG=node:20',
        'FROM ${IMG} AS b',
        'RUN a \\',
        '  # a comment inside',
        ' && b',
        'COPY --from=b --chown=1:1 x y /z/',
        'ENV A=1 \\',
        '    B="two words"',
        'HEALTHCHECK --interval=5s \\',
        '  CMD ["node","-e","1"]',
      ].join('\n'),
    );
    expect(d.stages[0]!.from).toBe('node:20');
    expect(d.stages[0]!.name).toBe('b');
    const [run, copy, env, hc] = d.stages[0]!.instructions;
    expect(run!.args).toBe('a    && b');
    expect(copy!.flags).toEqual({ from: 'b', chown: '1:1' });
    expect(copyPaths(copy!)).toEqual({ sources: ['x', 'y'], dest: '/z/' });
    expect(parseKeyValues(env!.args)).toEqual({ A: '1', B: 'two words' });
    expect(hc!.flags).toEqual({ interval: '5s' });
    expect(hc!.exec).toEqual(['node', '-e', '1']);
  });

  it('matches .dockerignore like Docker (last rule wins, parents match, ** spans directories)', () => {
    const ig = dockerignore('*\n!src/\nsrc/**/*.test.ts\n!keep.md\n');
    expect(ig('README.md')).toBe(true);
    expect(ig('src')).toBe(false);
    expect(ig('src/a/b.ts')).toBe(false);
    expect(ig('src/b.test.ts')).toBe(true);
    expect(ig('src/a/b.test.ts')).toBe(true);
    expect(ig('keep.md')).toBe(false);
    expect(ig('node_modules/x')).toBe(true);
  });

  it('interpolates like compose', () => {
    expect(interpolate('${A:-x}/${B-y}/$C/$$', { A: '', B: '', C: 'c' })).toBe('x//c/$');
    expect(interpolate('${A:-x}', { A: 'a' })).toBe('a');
  });
});

describe('deploy/Dockerfile', () => {
  it('is multi-stage on node:20-bookworm-slim', () => {
    expect(dockerfile.stages.map((s) => s.name)).toEqual(['build', 'runtime']);
    for (const s of dockerfile.stages) expect(s.from).toBe('node:20-bookworm-slim');
  });

  it('builds with the lockfile and dev dependencies, then prunes them', () => {
    const b = stage('build');
    const runs = instructions(b, 'RUN').map((i) => i.args);
    const order = (pattern: RegExp): number => b.instructions.findIndex((i) => pattern.test(`${i.keyword} ${i.args}`));
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    expect(runs.some((r) => /\bnpm run build\b/.test(r))).toBe(true);
    expect(runs.some((r) => /\bnpm prune --omit=dev\b/.test(r))).toBe(true);
    // `npm ci` runs `prepare` (= the build) unless scripts are off: then the sources must already be there.
    const ci = order(/^RUN .*\bnpm ci\b/);
    if (!/--ignore-scripts/.test(b.instructions[ci]!.args)) {
      expect(order(/^COPY .*\bsrc\b/)).toBeLessThan(ci);
    }
    // What tsc needs is in place before the build.
    const build = order(/^RUN .*\bnpm run build\b/);
    for (const needed of [/^COPY .*\btsconfig\.json\b/, /^COPY .*\btsconfig\.build\.json\b/, /^COPY .*\bsrc\b/, /^COPY .*\bpackage-lock\.json\b/]) {
      const at = order(needed);
      expect(at, `${needed} before the build`).toBeGreaterThanOrEqual(0);
      expect(at).toBeLessThan(build);
    }
  });

  it('runtime: non-root, production, only runtime files, the serve entrypoint', () => {
    const r = runtime();
    const users = instructions(r, 'USER');
    expect(users.at(-1)?.args).toBe('node'); // uid 1000 in the node images
    expect(stageEnv(r).NODE_ENV).toBe('production');
    // The same node flags as `npm start` (serve's memory budget depends on them).
    const start = (JSON.parse(readRepo('package.json')) as { scripts: { start: string } }).scripts.start.split(/\s+/);
    expect(start.at(-1)).toBe('serve');
    expect(start).toContain('--max-semi-space-size=4');
    expect(instructions(r, 'ENTRYPOINT')[0]?.exec).toEqual([...start.slice(0, -1)]);
    expect(instructions(r, 'CMD')[0]?.exec).toEqual(['serve']);
    expect(exposed()).toEqual([9464, 50051]);

    const copies = instructions(r, 'COPY').map((i) => ({ from: i.flags.from, ...copyPaths(i) }));
    const fromBuild = copies.filter((c) => c.from === 'build').flatMap((c) => c.sources);
    expect(fromBuild.sort()).toEqual(['/app/dist', '/app/node_modules', '/app/package.json']);
    const fromContext = copies.filter((c) => c.from === undefined).flatMap((c) => c.sources);
    expect(fromContext.sort()).toEqual(['bin', 'models', 'proto']);
    // Nothing from the build stage's toolchain or the tests.
    for (const c of copies) for (const s of c.sources) expect(s).not.toMatch(/src|test|tsconfig|\.cache/);
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    for (const s of dockerfile.stages) {
      for (const i of instructions(s, 'COPY')) {
        if (i.flags.from !== undefined) continue;
        for (const src of copyPaths(i).sources) {
          expect(existsSync(repoFile(src)), `${src} (Dockerfile line ${i.line}) exists`).toBe(true);
          expect(isIgnored(src), `${src} (Dockerfile line ${i.line}) is not excluded by .dockerignore`).toBe(false);
        }
      }
    }
  });

  it('.dockerignore keeps secrets, build output and caches out of the context', () => {
    for (const p of ['node_modules/kafkajs/package.json', 'dist/index.js', '.cache/kafka/x.jar', '.env', '.git/config', '.tiny-dancer/pgdata/x', 'test/unit/x.test.ts', 'src/engine/x.test.ts']) {
      expect(isIgnored(p), p).toBe(true);
    }
    for (const p of ['src/cli/index.ts', 'proto/tiny_dancer/v1/routing.proto', 'bin/tiny-dancer.js', 'package-lock.json']) expect(isIgnored(p), p).toBe(false);
  });

  it('ships the default model that TD_MODEL_PATH points at', () => {
    const models = repoFile('models');
    const files = existsSync(models) ? readdirSync(models).filter((f) => statSync(repoFile('models', f)).isFile()) : [];
    expect(files, 'models/ must hold the default model, or `COPY models` fails and serve has no model').toContain('default.safetensors');
  });

  it('listens on every interface in the container, on the exposed ports', () => {
    const env = stageEnv(runtime());
    const config = loadConfig({ ...env, KAFKA_BROKERS: 'kafka:9092', DATABASE_URL: 'postgres://u@db/x' });
    expect(config.grpcAddr).toEqual({ host: '0.0.0.0', port: 50051 });
    expect(config.httpAddr).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(exposed()).toEqual([config.httpAddr.port, config.grpcAddr.port].sort((a, b) => a - b));
  });

  it('health check probes /healthz with node on the TD_HTTP_ADDR port', () => {
    const cmd = healthcheckCommand();
    expect(cmd.slice(0, 2)).toEqual(['node', '-e']);
    expect(cmd[2]).toContain('/healthz');
    expect(cmd[2]).toContain('TD_HTTP_ADDR');
    const flags = instructions(runtime(), 'HEALTHCHECK')[0]!.flags;
    expect(Object.keys(flags).sort()).toEqual(['interval', 'retries', 'start-period', 'timeout']);
  });

  it('the health check script answers 0 for a healthy server and 1 otherwise', async () => {
    const { createServer } = await import('node:http');
    let status = 200;
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? status : 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const run = async (addr: string): Promise<number | null> => {
      const { spawn } = await import('node:child_process');
      const [bin, ...args] = healthcheckCommand();
      const child = spawn(bin === 'node' ? process.execPath : bin!, args, { env: { ...process.env, TD_HTTP_ADDR: addr }, stdio: 'ignore' });
      return new Promise((r) => child.on('exit', (code) => r(code)));
    };
    try {
      expect(await run(`0.0.0.0:${port}`)).toBe(0);
      status = 503;
      expect(await run(`0.0.0.0:${port}`)).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(await run(`0.0.0.0:${port}`)).toBe(1); // nothing listening
  });
});

// ---- docker-compose.yml ----------------------------------------------------------------------------

type Service = Record<string, unknown>;
let compose: Record<string, unknown>;
let services: Record<string, Service>;

function env(service: string, shell: Record<string, string | undefined> = {}): Record<string, string> {
  const e = obj(services[service]!.environment, `${service}.environment`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v === null) {
      if (shell[k] !== undefined) out[k] = shell[k];
      continue;
    }
    expect(['string', 'number', 'boolean'], `${service}.environment.${k}`).toContain(typeof v);
    out[k] = interpolate(String(v), shell);
  }
  return out;
}

function healthcheck(service: string): { test: string[]; interval: string; timeout: string; retries: number; start_period?: string } {
  const hc = obj(services[service]!.healthcheck, `${service}.healthcheck`);
  const test = arr(hc.test, `${service}.healthcheck.test`).map((x) => str(x, 'healthcheck word'));
  expect(['CMD', 'CMD-SHELL']).toContain(test[0]);
  for (const k of ['interval', 'timeout'] as const) expect(str(hc[k], k)).toMatch(/^\d+(ms|s|m)$/);
  expect(Number.isInteger(hc.retries) && (hc.retries as number) > 0).toBe(true);
  return hc as never;
}

/** "127.0.0.1:9092:9092" -> { host: 9092, container: 9092 } */
function publishedPorts(service: string): { ip: string | undefined; host: number; container: number }[] {
  return arr(services[service]!.ports ?? [], `${service}.ports`).map((p) => {
    const m = /^(?:([\d.]+):)?(\d+):(\d+)(?:\/tcp)?$/.exec(str(p, 'port'));
    if (!m) throw new Error(`${service}: cannot read port '${String(p)}'`);
    return { ip: m[1], host: Number(m[2]), container: Number(m[3]) };
  });
}

function listeners(value: string): Map<string, { host: string; port: number }> {
  const out = new Map<string, { host: string; port: number }>();
  for (const l of value.split(',')) {
    const m = /^([A-Z_]+):\/\/([^:]*):(\d+)$/.exec(l.trim());
    if (!m) throw new Error(`cannot read listener '${l}'`);
    out.set(m[1]!, { host: m[2]!, port: Number(m[3]) });
  }
  return out;
}

describe('docker-compose.yml', () => {
  beforeAll(async () => {
    compose = obj(await readYaml('docker-compose.yml'), 'compose file');
    services = obj(compose.services, 'services') as Record<string, Service>;
  });

  it('has exactly kafka, postgres and tiny-dancer, each with a health check', () => {
    expect(Object.keys(services).sort()).toEqual(['kafka', 'postgres', 'tiny-dancer']);
    for (const s of Object.keys(services)) healthcheck(s);
    expect(compose.version, 'the top-level version key is obsolete').toBeUndefined();
    // Named volumes that services use are declared.
    const declared = Object.keys(obj(compose.volumes ?? {}, 'volumes'));
    for (const [name, s] of Object.entries(services)) {
      for (const v of (s.volumes as string[] | undefined) ?? []) {
        const source = v.split(':')[0]!;
        if (!source.startsWith('.') && !source.startsWith('/')) expect(declared, `${name} volume ${source}`).toContain(source);
      }
    }
  });

  it('kafka: official image 4.x in KRaft combined mode, one node', () => {
    const k = services.kafka!;
    expect(str(k.image, 'kafka.image')).toMatch(/^apache\/kafka:4\.\d+\.\d+$/);
    const e = env('kafka');
    expect(e.KAFKA_PROCESS_ROLES!.split(',').sort()).toEqual(['broker', 'controller']);
    expect(e.KAFKA_NODE_ID).toBe('1');
    // The image formats storage with CLUSTER_ID: a 16-byte id in canonical URL-safe base64.
    const id = Buffer.from(e.CLUSTER_ID!, 'base64url');
    expect(id).toHaveLength(16);
    expect(id.toString('base64url')).toBe(e.CLUSTER_ID);
    for (const rf of ['KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR', 'KAFKA_DEFAULT_REPLICATION_FACTOR']) {
      expect(e[rf], rf).toBe('1');
    }
    expect(e.KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS).toBe('0');
  });

  it('kafka: listeners for containers and for the host, controller on its own', () => {
    const e = env('kafka');
    const bound = listeners(e.KAFKA_LISTENERS!);
    const advertised = listeners(e.KAFKA_ADVERTISED_LISTENERS!);
    const protocols = new Map(e.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP!.split(',').map((p) => p.split(':') as [string, string]));
    const controller = e.KAFKA_CONTROLLER_LISTENER_NAMES!;
    for (const name of bound.keys()) expect(protocols.has(name), `${name} has a security protocol`).toBe(true);
    expect(bound.has(controller)).toBe(true);
    expect(advertised.has(controller), 'clients are never sent to the controller').toBe(false);
    const ports = [...bound.values()].map((l) => l.port);
    expect(new Set(ports).size, 'one port per listener').toBe(ports.length);
    // Every advertised listener is bound on the same port.
    for (const [name, a] of advertised) expect(bound.get(name)?.port, name).toBe(a.port);
    expect(bound.has(e.KAFKA_INTER_BROKER_LISTENER_NAME!)).toBe(true);
    expect(e.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(`${e.KAFKA_NODE_ID}@kafka:${bound.get(controller)!.port}`);

    // The host reaches localhost:9092 (docs/contracts.md §8's address), published on that port.
    const host = [...advertised.values()].find((a) => a.host === 'localhost');
    expect(host).toEqual({ host: 'localhost', port: 9092 });
    expect(publishedPorts('kafka')).toEqual([{ ip: '127.0.0.1', host: 9092, container: 9092 }]);

    // tiny-dancer uses the in-network listener, by the service's name.
    const inNetwork = [...advertised.entries()].filter(([, a]) => a.host === 'kafka');
    expect(inNetwork).toHaveLength(1);
    expect(env('tiny-dancer').KAFKA_BROKERS).toBe(`kafka:${inNetwork[0]![1].port}`);
  });

  it('kafka: health check asks the broker itself for its API versions', () => {
    const { test } = healthcheck('kafka');
    const cmd = test.slice(1).join(' ');
    expect(cmd).toContain('/opt/kafka/bin/kafka-broker-api-versions.sh');
    const bootstrap = /--bootstrap-server\s+(\S+)/.exec(cmd)?.[1];
    const advertised = [...listeners(env('kafka').KAFKA_ADVERTISED_LISTENERS!).values()].map((a) => `${a.host}:${a.port}`);
    expect(advertised).toContain(bootstrap);
  });

  it('postgres 16 with pg_isready, and DATABASE_URL pointing at it', () => {
    expect(str(services.postgres!.image, 'postgres.image')).toMatch(/^postgres:16(\.\d+)?(-[a-z0-9]+)?$/);
    const pg = env('postgres');
    const { test } = healthcheck('postgres');
    expect(test).toContain('pg_isready');
    expect(test.join(' ')).toContain(`-U ${pg.POSTGRES_USER}`);
    const url = new URL(env('tiny-dancer').DATABASE_URL!);
    expect(url.hostname).toBe('postgres');
    expect(url.port || '5432').toBe('5432');
    expect(decodeURIComponent(url.username)).toBe(pg.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe(pg.POSTGRES_PASSWORD);
    expect(url.pathname).toBe(`/${pg.POSTGRES_DB}`);
  });

  it('tiny-dancer: built from deploy/Dockerfile, started after healthy infrastructure', () => {
    const td = services['tiny-dancer']!;
    const build = obj(td.build, 'tiny-dancer.build');
    expect(build.context).toBe('.');
    expect(build.dockerfile).toBe('deploy/Dockerfile');
    expect(existsSync(repoFile(str(build.dockerfile, 'dockerfile')))).toBe(true);
    const deps = obj(td.depends_on, 'depends_on');
    expect(Object.keys(deps).sort()).toEqual(['kafka', 'postgres']);
    for (const d of Object.values(deps)) expect(obj(d, 'dependency').condition).toBe('service_healthy');
    expect(arr(td.command ?? ['serve'], 'command')).toEqual(['serve']);
  });

  it('tiny-dancer: sets every docs/contracts.md §2 variable, only names serve reads, and they load', () => {
    const raw = obj(services['tiny-dancer']!.environment, 'environment');
    expect(Object.keys(raw).sort()).toEqual(Object.keys(SPEC_ENV).sort());
    const known = configEnvNames();
    for (const k of Object.keys(raw)) expect(known, `${k} is read by src/config.ts`).toContain(k);
    // Topic and group names are the contract's defaults: clients of other teams rely on them.
    const e = env('tiny-dancer');
    for (const k of ['TD_TOPIC_REQUESTS', 'TD_TOPIC_LIGHTWEIGHT', 'TD_TOPIC_HEAVYWEIGHT', 'TD_TOPIC_DLQ', 'TD_TOPIC_OUTCOMES', 'TD_GROUP_ID', 'TD_EXACTLY_ONCE', 'TD_MODEL_PATH']) {
      expect(e[k], k).toBe(SPEC_ENV[k]);
    }
    // Without a token in the shell, mutating admin calls are refused (no token configured).
    expect(loadConfig(env('tiny-dancer')).adminToken).toBeUndefined();
    const withToken = loadConfig(env('tiny-dancer', { TD_ADMIN_TOKEN: 'a-long-enough-token' }));
    expect(withToken.adminToken?.reveal()).toBe('a-long-enough-token');
  });

  it('tiny-dancer: ports, environment and health check agree with the Dockerfile', () => {
    const config = loadConfig(env('tiny-dancer'));
    const published = publishedPorts('tiny-dancer');
    expect(published.map((p) => p.container).sort((a, b) => a - b)).toEqual(exposed());
    for (const p of published) {
      expect(p.ip, 'published on loopback only').toBe('127.0.0.1');
      expect(p.host).toBe(p.container);
    }
    expect(config.grpcAddr).toEqual({ host: '0.0.0.0', port: 50051 });
    expect(config.httpAddr).toEqual({ host: '0.0.0.0', port: 9464 });
    // The compose values repeat the image's own ENV.
    const imageEnv = stageEnv(runtime());
    for (const k of ['TD_GRPC_ADDR', 'TD_HTTP_ADDR']) expect(env('tiny-dancer')[k], k).toBe(imageEnv[k]);
    // Same probe as the image.
    expect(healthcheck('tiny-dancer').test).toEqual(['CMD', ...healthcheckCommand()]);
    expect(portOf(env('tiny-dancer').TD_HTTP_ADDR!)).toBe(9464);
    // Room to drain on stop (serve's default drain is 15 s).
    expect(Number(str(services['tiny-dancer']!.stop_grace_period, 'stop_grace_period').replace(/s$/, ''))).toBeGreaterThan(config.drainTimeoutMs / 1000);
  });

  const docker = spawnSync('docker', ['compose', 'version'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!docker)('docker compose config accepts the file (where Docker is installed)', () => {
    execFileSync('docker', ['compose', '-f', repoFile('docker-compose.yml'), 'config', '--quiet'], { stdio: 'pipe' });
  });
});

// ---- Kubernetes agrees with the image ----------------------------------------------------------------

describe('deploy/k8s agrees with the image and the config', () => {
  const k8s: Record<string, Record<string, unknown>> = {};
  beforeAll(async () => {
    for (const f of ['deployment.yaml', 'service.yaml', 'configmap.yaml', 'secret.yaml', 'pdb.yaml']) {
      const docs = await readYamlDocuments('deploy', 'k8s', f);
      expect(docs, f).toHaveLength(1);
      k8s[f] = obj(docs[0], f);
    }
  });

  const podSpec = (): Record<string, unknown> => obj(obj(obj(k8s['deployment.yaml']!.spec, 'spec').template, 'template').spec, 'pod spec');
  const container = (): Record<string, unknown> => obj(arr(podSpec().containers, 'containers')[0], 'container');
  const configMapData = (): Record<string, string> => obj(k8s['configmap.yaml']!.data, 'data') as Record<string, string>;

  it('container ports are the exposed ports, and the config binds them', () => {
    const ports = arr(container().ports, 'ports').map((p) => obj(p, 'port'));
    expect(ports.map((p) => p.containerPort as number).sort((a, b) => a - b)).toEqual(exposed());
    const byName = Object.fromEntries(ports.map((p) => [p.name, p.containerPort]));
    const data = configMapData();
    expect(byName.grpc).toBe(portOf(data.TD_GRPC_ADDR!));
    expect(byName.metrics).toBe(portOf(data.TD_HTTP_ADDR!));
  });

  it('probes use /healthz and /readyz on the metrics port', () => {
    const c = container();
    const probe = (k: string): Record<string, unknown> => obj(obj(c[k], k).httpGet, `${k}.httpGet`);
    expect(probe('livenessProbe')).toEqual({ path: '/healthz', port: 'metrics' });
    expect(probe('readinessProbe')).toEqual({ path: '/readyz', port: 'metrics' });
    expect(probe('startupProbe')).toEqual({ path: '/healthz', port: 'metrics' });
  });

  it('Service and PodDisruptionBudget select the pods; Service ports match', () => {
    const labels = obj(obj(obj(k8s['deployment.yaml']!.spec, 'spec').template, 'template').metadata, 'metadata').labels as Record<string, string>;
    const matches = (sel: Record<string, string>): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v) && Object.keys(sel).length > 0;
    expect(matches(obj(k8s['service.yaml']!.spec, 'spec').selector as Record<string, string>)).toBe(true);
    expect(matches(obj(obj(k8s['pdb.yaml']!.spec, 'spec').selector, 'selector').matchLabels as Record<string, string>)).toBe(true);
    expect(matches(obj(obj(k8s['deployment.yaml']!.spec, 'spec').selector, 'selector').matchLabels as Record<string, string>)).toBe(true);
    const svcPorts = arr(obj(k8s['service.yaml']!.spec, 'spec').ports, 'ports').map((p) => obj(p, 'port'));
    expect(svcPorts.map((p) => [p.name, p.port, p.targetPort])).toEqual([
      ['grpc', 50051, 'grpc'],
      ['metrics', 9464, 'metrics'],
    ]);
  });

  it('runs as the image user with a read-only root and writable mounts where the image writes', () => {
    const pod = obj(podSpec().securityContext, 'pod securityContext');
    expect(pod.runAsNonRoot).toBe(true);
    expect(pod.runAsUser).toBe(1000); // the node image's `node` user, USER in the Dockerfile
    const sc = obj(container().securityContext, 'container securityContext');
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    const mounts = arr(container().volumeMounts, 'volumeMounts').map((m) => obj(m, 'mount').mountPath);
    expect(mounts).toContain('/tmp');
    // The one directory the image prepares for writing.
    const made = instructions(runtime(), 'RUN').map((i) => /mkdir -p (\S+)/.exec(i.args)?.[1]).filter(Boolean);
    for (const dir of made) expect(mounts, `${dir} is writable in the pod`).toContain(dir);
  });

  it('resources fit the memory budget', () => {
    const res = obj(container().resources, 'resources');
    expect(res).toEqual({ requests: { cpu: '500m', memory: '256Mi' }, limits: { cpu: '2', memory: '384Mi' } });
    expect(obj(k8s['deployment.yaml']!.spec, 'spec').replicas).toBe(3);
    // Worker threads sized to the CPU limit, not the node's core count.
    expect(configMapData().TD_WORKERS).toBe('2');
  });

  it('ConfigMap holds only settings serve reads, enough partitions for the replicas, and loads', () => {
    const data = configMapData();
    const known = configEnvNames();
    for (const k of Object.keys(data)) expect(known, `${k} is read by src/config.ts`).toContain(k);
    expect(Number(data.TD_REQUEST_PARTITIONS)).toBeGreaterThanOrEqual(obj(k8s['deployment.yaml']!.spec, 'spec').replicas as number);
    // Every docs/contracts.md §2 variable comes from the ConfigMap or the Secret.
    const secretKeys = Object.keys(obj(k8s['secret.yaml']!.stringData, 'stringData'));
    expect([...Object.keys(data), ...secretKeys].filter((k) => k in SPEC_ENV).sort()).toEqual(Object.keys(SPEC_ENV).sort());
    expect(secretKeys.sort()).toEqual(['DATABASE_URL', 'TD_ADMIN_TOKEN']);
    const config = loadConfig({ ...data, DATABASE_URL: 'postgres://u:p@db:5432/x', TD_ADMIN_TOKEN: 'a-real-token-value' });
    expect(config.workers).toBe(2);
    expect(config.requestPartitions).toBe(Number(data.TD_REQUEST_PARTITIONS));
  });

  it('the Deployment reads the Secret and ConfigMap that exist; the placeholder token fails closed', () => {
    const c = container();
    const cmName = obj(obj(arr(c.envFrom, 'envFrom')[0], 'envFrom').configMapRef, 'configMapRef').name;
    expect(cmName).toBe(obj(k8s['configmap.yaml']!.metadata, 'metadata').name);
    const secretName = obj(k8s['secret.yaml']!.metadata, 'metadata').name;
    const stringData = obj(k8s['secret.yaml']!.stringData, 'stringData');
    for (const e of arr(c.env, 'env').map((x) => obj(x, 'env'))) {
      const ref = obj(obj(e.valueFrom, 'valueFrom').secretKeyRef, 'secretKeyRef');
      expect(ref.name).toBe(secretName);
      expect(Object.keys(stringData)).toContain(ref.key);
      expect(ref.key).toBe(e.name);
    }
    // An unedited placeholder must not start a server with a token published in this repository.
    expect(() => loadConfig({ ...configMapData(), DATABASE_URL: String(stringData.DATABASE_URL), TD_ADMIN_TOKEN: String(stringData.TD_ADMIN_TOKEN) })).toThrow(/TD_ADMIN_TOKEN is invalid/);
  });

  it('grace period covers the drain', () => {
    const config = loadConfig({ ...configMapData(), DATABASE_URL: 'postgres://u@db/x' });
    expect(podSpec().terminationGracePeriodSeconds as number).toBeGreaterThan(config.drainTimeoutMs / 1000);
  });
});
