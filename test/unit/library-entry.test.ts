// The library entry (src/index.ts, the package's "." export) promises that importing it loads
// no Kafka, Postgres or gRPC code (contracts §7). Checked in a fresh process that records every module the
// import brings in (test/support/import-probe).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const probe = fileURLToPath(new URL('../support/import-probe/probe.mjs', import.meta.url));

/** Every module URL that importing `target` loads, seen from a fresh node process. */
async function modulesLoadedBy(target: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', probe, target], { cwd: root, timeout: 60_000 });
  return JSON.parse(stdout) as string[];
}

const FORBIDDEN_PACKAGES = /\/node_modules\/(kafkajs|pg|pg-[^/]+|@grpc\/[^/]+|grpc-health-check|@electric-sql\/[^/]+)\//;
const SERVICE_CODE = /\/(src|dist)\/(stream|store|control|feedback|cli|observe)\/|\/(src|dist)\/app\.(ts|js)$/;

function offenders(urls: string[]): string[] {
  return urls.filter((u) => FORBIDDEN_PACKAGES.test(u) || SERVICE_CODE.test(u));
}

describe('importing the library', () => {
  it('loads the engine and wire/, and no Kafka, Postgres or gRPC module (source entry)', async () => {
    const urls = await modulesLoadedBy(`${root}src/index.ts`);
    expect(urls.some((u) => u.endsWith('/src/engine/pool/pool.ts'))).toBe(true);
    expect(urls.some((u) => u.endsWith('/src/wire/errors.ts'))).toBe(true);
    expect(offenders(urls)).toEqual([]);
  });

  it.skipIf(!existsSync(`${root}dist/index.js`))("loads none through the package name (the built 'tiny-dancer')", async () => {
    const urls = await modulesLoadedBy('tiny-dancer');
    expect(urls.some((u) => u.endsWith('/dist/engine/pool/pool.js'))).toBe(true);
    expect(offenders(urls)).toEqual([]);
  });

  it('the probe does see such a module when one is loaded', async () => {
    const urls = await modulesLoadedBy(`${root}src/stream/kafka.ts`);
    expect(offenders(urls)).toEqual(expect.arrayContaining([expect.stringMatching(/\/node_modules\/kafkajs\//), expect.stringMatching(/\/src\/stream\/kafka\.ts$/)]));
  });
});
