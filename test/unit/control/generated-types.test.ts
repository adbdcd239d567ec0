// The checked-in control-plane types (src/control/generated/) are what the generator makes from
// proto/ now: run `npm run proto:types` after a .proto change.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CHECKED_IN = join(ROOT, 'src/control/generated');

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

describe('generated control-plane types', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'td-proto-types-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('equal what proto-loader-gen-types makes from proto/ now', () => {
    const fresh = join(tmp, 'generated');
    execFileSync(process.execPath, [join(ROOT, 'scripts/gen-control-types.mjs'), fresh], { stdio: 'pipe' });
    const want = files(fresh);
    const have = files(CHECKED_IN);
    expect([...have.keys()].sort(), 'src/control/generated is stale: run `npm run proto:types`').toEqual([...want.keys()].sort());
    for (const [name, text] of want) expect(have.get(name), `${name} is stale: run \`npm run proto:types\``).toBe(text);
    expect(want.size).toBeGreaterThan(10);
  }, 30_000);
});
