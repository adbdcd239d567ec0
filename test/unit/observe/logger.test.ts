import { describe, expect, it } from 'vitest';
import { Secret } from '../../../src/config.js';
import { TinyDancerError } from '../../../src/errors.js';
import { createLogger } from '../../../src/observe/logger.js';

function capture(opts: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  const logger = createLogger({ now: () => new Date('2026-01-02T03:04:05.000Z'), ...opts, write: (l) => lines.push(l) });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('logger', () => {
  it('writes one JSON object per line with time, level, msg and fields', () => {
    const { logger, lines, records } = capture();
    logger.info('hello', { a: 1, nested: { b: 'c' } });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(records()[0]).toEqual({ time: '2026-01-02T03:04:05.000Z', level: 'info', msg: 'hello', a: 1, nested: { b: 'c' } });
  });

  it('filters by level', () => {
    const { logger, records } = capture({ level: 'warn' });
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(records().map((r) => r.level)).toEqual(['warn', 'error']);
    expect(logger.isLevelEnabled('info')).toBe(false);
  });

  it('child loggers add their fields', () => {
    const { logger, records } = capture();
    logger.child({ component: 'processor' }).info('x', { n: 2 });
    expect(records()[0]).toMatchObject({ component: 'processor', n: 2 });
  });

  it('redacts secret-looking fields, URL passwords and registered secret values anywhere', () => {
    const token = 'tok-ABCDEF-123456';
    const { logger, lines } = capture({ secrets: [new Secret(token)] });
    logger.warn(`saw ${token} in a message`, {
      adminToken: token,
      password: 'pw1',
      headers: { authorization: `Bearer ${token}` },
      url: 'postgres://user:hunter2@db:5432/x',
      text: `the value is ${token}!`,
      list: [token],
    });
    const out = lines.join('');
    expect(out).not.toContain(token);
    expect(out).not.toContain('hunter2');
    expect(out).not.toContain('pw1');
    expect(out).toContain('postgres://user:***@db:5432/x');
    expect(out).toContain('[redacted]');
  });

  it('serialises errors with retriable flag and cause, and survives cycles and bigints', () => {
    const { logger, records } = capture();
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    logger.error('boom', { err: new TinyDancerError('outer', { retriable: true, cause: new Error('inner') }), cyclic, big: 10n, nan: Number.NaN });
    const r = records()[0]!;
    expect(r.err).toEqual({ name: 'TinyDancerError', message: 'outer', retriable: true, cause: { name: 'Error', message: 'inner' } });
    expect((r.cyclic as Record<string, unknown>).self).toBe('[circular]');
    expect(r.big).toBe('10');
    expect(r.nan).toBe('NaN');
  });

  it('does not let fields overwrite time, level or msg', () => {
    const { logger, records } = capture();
    logger.info('real', { msg: 'fake', level: 'error' });
    expect(records()[0]).toMatchObject({ msg: 'real', level: 'info' });
  });
});
