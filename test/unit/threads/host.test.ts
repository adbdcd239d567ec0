import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/errors.js';
import { ThreadCrashedError, ThreadStartError, toThreadError } from '../../../src/threads/error.js';
import { ThreadHost, type ThreadExit, type ThreadHostOptions } from '../../../src/threads/host.js';
import { workerScript } from '../../../src/threads/script.js';
import type { EchoInit, FromEcho, ToEcho } from './fixtures/echo-thread.js';

const SCRIPT = workerScript(import.meta.url, 'fixtures/echo-thread');

interface Harness {
  host: ThreadHost<ToEcho, FromEcho>;
  exits: ThreadExit[];
  readies: FromEcho[];
  messages: FromEcho[];
  init: EchoInit;
  next(type: FromEcho['type']): Promise<FromEcho>;
}

const hosts: ThreadHost<ToEcho, FromEcho>[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.terminate()));
});

function harness(init: EchoInit = {}, extra: Partial<ThreadHostOptions<FromEcho>> = {}): Harness {
  const exits: ThreadExit[] = [];
  const readies: FromEcho[] = [];
  const messages: FromEcho[] = [];
  const waiting: { type: string; resolve: (m: FromEcho) => void }[] = [];
  const see = (m: FromEcho) => {
    const i = waiting.findIndex((w) => w.type === m.type);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(m);
  };
  const h: Harness = {
    init,
    exits,
    readies,
    messages,
    next: (type) => new Promise((resolve) => waiting.push({ type, resolve })),
    host: new ThreadHost<ToEcho, FromEcho>({
      name: 'echo thread',
      script: SCRIPT,
      workerData: () => ({ ...h.init }),
      onReady: (m) => {
        readies.push(m);
        see(m);
      },
      onMessage: (m) => {
        messages.push(m);
        see(m);
      },
      onExit: (e) => exits.push(e),
      ...extra,
    }),
  };
  hosts.push(h.host);
  return h;
}

const until = async (cond: () => boolean, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('ThreadHost', () => {
  it('starts a thread, resolves at its ready report, and carries messages both ways', async () => {
    const h = harness({ tag: 'a' });
    expect(h.host.ready).toBe(false);
    await h.host.start();
    expect(h.host.ready).toBe(true);
    expect(h.readies).toEqual([{ type: 'ready', tag: 'a' }]);
    // A second start() while running is the same thread.
    await h.host.start();
    expect(h.readies).toHaveLength(1);
    const echoed = h.next('echoed');
    h.host.post({ type: 'echo', value: 42 });
    expect(await echoed).toEqual({ type: 'echoed', value: 42, tag: 'a' });
  });

  it('a thread that reports it cannot start rejects start() with what it reported', async () => {
    const h = harness({ failStart: true });
    const err = await h.host.start().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ThreadStartError);
    const reported = (err as ThreadStartError).reported;
    expect(reported).toMatchObject({ name: 'InvalidInputError', message: 'no such model: m.safetensors', retriable: false });
    expect((err as Error).message).toBe('echo thread could not start: no such model: m.safetensors');
    await until(() => h.exits.length === 1);
    expect(h.exits[0]).toMatchObject({ code: 70, wasReady: false, replacing: false });
    expect(h.host.alive).toBe(false);
  });

  it('a crash is reported once, retriably, with the exit code; without replacement the next start() spawns anew', async () => {
    const h = harness({ tag: 'first' });
    await h.host.start();
    h.host.post({ type: 'exit', code: 13 });
    await until(() => h.exits.length === 1);
    const [exit] = h.exits;
    expect(exit).toMatchObject({ code: 13, wasReady: true, replacing: false });
    expect(exit!.error).toBeInstanceOf(ThreadCrashedError);
    expect((exit!.error as ThreadCrashedError).retriable).toBe(true);
    expect(exit!.error.message).toBe('echo thread exited with code 13');
    expect(h.host.ready).toBe(false);
    expect(() => h.host.post({ type: 'echo', value: 1 })).toThrow(ThreadCrashedError);
    h.init.tag = 'second';
    await h.host.start();
    expect(h.readies.map((r) => (r as { tag: string }).tag)).toEqual(['first', 'second']);
  });

  it('kill() ends the running thread as a crash; a thread still starting is left alone', async () => {
    const h = harness();
    const starting = h.host.start();
    await h.host.kill();
    await starting;
    expect(h.exits).toHaveLength(0);
    await h.host.kill();
    await until(() => h.exits.length === 1);
    expect(h.exits[0]).toMatchObject({ wasReady: true, replacing: false });
    expect(h.exits[0]!.error).toBeInstanceOf(ThreadCrashedError);
  });

  it("an uncaught error in the thread is the crash's cause, and the owner's error class is used", async () => {
    class OwnCrash extends ThreadCrashedError {}
    const h = harness({}, { crashError: (message, cause) => new OwnCrash(message, { cause }) });
    await h.host.start();
    h.host.post({ type: 'throw', message: 'kernel went wrong' });
    await until(() => h.exits.length === 1);
    const err = h.exits[0]!.error;
    expect(err).toBeInstanceOf(OwnCrash);
    expect(err.message).toMatch(/^echo thread exited with code 1: kernel went wrong$/);
    expect((err.cause as Error).message).toBe('kernel went wrong');
  });

  it('replaces a crashed thread with backoff while asked to; healthy() resets the backoff', async () => {
    let replace = true;
    const h = harness({}, { replace: { backoffMs: [0, 1_500], when: () => replace } });
    await h.host.start();
    h.host.post({ type: 'exit', code: 3 });
    // First crash: replaced at once.
    await until(() => h.readies.length === 2);
    expect(h.exits[0]).toMatchObject({ code: 3, replacing: true });
    // Second consecutive crash: replaced after the second step.
    const crashedAt = Date.now();
    h.host.post({ type: 'exit', code: 4 });
    await until(() => h.readies.length === 3);
    expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(1_490);
    // Healthy again: the next crash starts from the first step.
    h.host.healthy();
    const again = Date.now();
    h.host.post({ type: 'exit', code: 5 });
    await until(() => h.readies.length === 4);
    expect(Date.now() - again).toBeLessThan(1_200);
    // Replacement refused: the crash says so and nothing comes back.
    replace = false;
    h.host.post({ type: 'exit', code: 6 });
    await until(() => h.exits.length === 4);
    expect(h.exits[3]).toMatchObject({ code: 6, replacing: false });
    await new Promise((r) => setTimeout(r, 200));
    expect(h.host.alive).toBe(false);
  });

  it('a thread that fails to start while being replaced goes on to the next backoff step', async () => {
    const h = harness({}, { replace: { backoffMs: [0, 30], when: () => true } });
    await h.host.start();
    h.init.failStart = true;
    h.host.post({ type: 'exit', code: 9 });
    await until(() => h.exits.length >= 3);
    expect(h.exits.slice(1).every((e) => e.code === 70 && !e.wasReady && e.replacing)).toBe(true);
    expect(h.exits[1]!.error.message).toBe('echo thread exited with code 70: echo thread could not start: no such model: m.safetensors');
    h.init.failStart = false;
    await until(() => h.host.ready);
  });

  it('close() waits for a thread that honours it, and no exit is reported', async () => {
    const h = harness();
    await h.host.start();
    expect(await h.host.close({ type: 'close' }, 2_000)).toBe(true);
    expect(h.host.alive).toBe(false);
    expect(h.exits).toHaveLength(0);
    await expect(h.host.start()).rejects.toThrow(/closed/);
  });

  it('close() is bounded: a thread that ignores it is terminated after the timeout', async () => {
    const h = harness({ ignoreClose: true });
    await h.host.start();
    const t0 = Date.now();
    expect(await h.host.close({ type: 'close' }, 150)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(h.host.alive).toBe(false);
    expect(h.exits).toHaveLength(0);
  });

  it('close() during the start waits for it, then closes', async () => {
    const h = harness();
    const started = h.host.start();
    const closed = h.host.close({ type: 'close' }, 2_000);
    await started;
    expect(await closed).toBe(true);
    expect(h.exits).toHaveLength(0);
  });

  it('terminate() ends the thread with no exit reported and no replacement', async () => {
    const h = harness({}, { replace: { backoffMs: [0], when: () => true } });
    await h.host.start();
    const waiting = h.host.whenReady();
    await h.host.terminate();
    await expect(waiting).rejects.toThrow(/was closed/);
    await new Promise((r) => setTimeout(r, 100));
    expect(h.exits).toHaveLength(0);
    expect(h.host.alive).toBe(false);
  });
});

describe('toThreadError', () => {
  it('keeps name, message, the retriable flag, kind and the cause', () => {
    const e = Object.assign(new InvalidInputError('bad candidates', { cause: new Error('dims 3 ≠ 384') }), { kind: 'protobuf' });
    expect(toThreadError(e, true)).toEqual({ name: 'InvalidInputError', message: 'bad candidates: dims 3 ≠ 384', retriable: false, kind: 'protobuf' });
  });

  it("uses the side's default where the error says nothing", () => {
    expect(toThreadError(new TypeError('x is undefined'), false)).toEqual({ name: 'TypeError', message: 'x is undefined', retriable: false });
    expect(toThreadError(new Error('socket hang up'), true).retriable).toBe(true);
    expect(toThreadError('a string', false)).toEqual({ name: 'Error', message: 'a string', retriable: false });
  });
});
