import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/index.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => (out.push(String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (err.push(String(chunk)), true));
  return { out, err };
}

describe('tiny-dancer dispatcher', () => {
  afterEach(() => vi.restoreAllMocks());

  it('--help lists usage and exits 0', async () => {
    const { out } = capture();
    expect(await main(['--help'])).toBe(0);
    expect(out.join('')).toMatch(/usage: tiny-dancer <command>/);
  });

  it('no command is a usage error (2)', async () => {
    capture();
    expect(await main([])).toBe(2);
  });

  it('an unknown command exits 2 and names it', async () => {
    const { err } = capture();
    expect(await main(['frobnicate'])).toBe(2);
    expect(err.join('')).toMatch(/unknown command 'frobnicate'/);
  });

  it('--version prints the package version', async () => {
    const { out } = capture();
    expect(await main(['--version'])).toBe(0);
    expect(out.join('')).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});
