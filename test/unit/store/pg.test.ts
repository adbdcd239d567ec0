import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import { redactUrl, quoteSchema } from '../../../src/store/pg.js';

describe('redactUrl', () => {
  it('masks the password of the user-info part', () => {
    expect(redactUrl('postgres://app:s3cret@db.example:5432/prod')).toBe('postgres://app:***@db.example:5432/prod');
    expect(redactUrl('postgresql://app:p%40ss%3Aword@db/x?sslmode=require')).toBe('postgresql://app:***@db/x?sslmode=require');
  });

  it('masks a password given as a query parameter', () => {
    const out = redactUrl('postgres://app@db/prod?password=hunter2&sslmode=require');
    expect(out).not.toContain('hunter2');
    expect(out).toContain('password=***');
    expect(out).toContain('sslmode=require');
  });

  it('leaves a URL without a password exactly as it was', () => {
    expect(redactUrl('postgres://postgres@127.0.0.1:5432/postgres')).toBe('postgres://postgres@127.0.0.1:5432/postgres');
  });

  it('masks even strings that do not parse as URLs', () => {
    const out = redactUrl('postgres://app:hunter2@[bad host/db');
    expect(out).not.toContain('hunter2');
    expect(redactUrl('host=db user=app password=hunter2')).not.toContain('hunter2');
  });
});

describe('quoteSchema', () => {
  it('quotes plain identifiers', () => {
    expect(quoteSchema('public')).toBe('"public"');
    expect(quoteSchema('td_test_1')).toBe('"td_test_1"');
  });

  it.each(['', 'Public', '1abc', 'a-b', 'a"; DROP TABLE x; --', 'x'.repeat(64)])('refuses %j', (name) => {
    expect(() => quoteSchema(name)).toThrow(ConfigError);
  });
});
