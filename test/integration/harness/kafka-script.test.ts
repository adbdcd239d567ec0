// `npm run kafka:up` is idempotent: run again while a broker runs, it starts nothing new.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { status } from '../../../scripts/kafka.mjs';

const run = promisify(execFile);

describe('scripts/kafka.mjs', () => {
  it('up on a running broker is a no-op that leaves one healthy broker', async (ctx) => {
    const before = await status();
    if (before.pid === undefined) ctx.skip(); // the broker under test is not ours (testcontainers / external)
    const { stderr } = await run(process.execPath, ['scripts/kafka.mjs', 'up'], { timeout: 60_000 });
    expect(stderr).toMatch(/already running/);
    const after = await status();
    expect(after.pid).toBe(before.pid);
    expect(after.answers).toBe(true);
  });

  it('refuses an unknown command with exit status 2', async () => {
    await expect(run(process.execPath, ['scripts/kafka.mjs', 'sideways'])).rejects.toMatchObject({ code: 2 });
  });
});
