import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  DecisionLogClosedError,
  DecisionLogFullError,
  RowEncodingError,
  classifyPgError,
  errorMessageWithCode,
  isRetriablePgError,
} from '../../../src/store/errors.js';

/** A server error as node-postgres builds it from an ErrorResponse message. */
function sqlError(code: string, message = 'boom'): pg.DatabaseError {
  const err = new pg.DatabaseError(message, message.length, 'error');
  err.code = code;
  return err;
}

function socketError(code: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`connect ${code} 127.0.0.1:5432`);
  err.code = code;
  return err;
}

describe('classifyPgError', () => {
  it.each([
    ['57P01', 'admin_shutdown'],
    ['57P02', 'crash_shutdown'],
    ['57P03', 'cannot_connect_now'],
    ['57014', 'query_canceled (statement_timeout)'],
    ['08000', 'connection_exception'],
    ['08006', 'connection_failure'],
    ['08001', 'sqlclient_unable_to_establish_sqlconnection'],
    ['40001', 'serialization_failure'],
    ['40P01', 'deadlock_detected'],
    ['53300', 'too_many_connections'],
    ['53100', 'disk_full'],
    ['55P03', 'lock_not_available'],
    ['25006', 'read_only_sql_transaction'],
  ])('SQLSTATE %s (%s) is retriable', (code) => {
    expect(classifyPgError(sqlError(code))).toBe('retriable');
    expect(isRetriablePgError(sqlError(code))).toBe(true);
  });

  it.each([
    ['22021', 'character_not_in_repertoire (NUL byte)'],
    ['22P02', 'invalid_text_representation'],
    ['22003', 'numeric_value_out_of_range'],
    ['22008', 'datetime_field_overflow'],
    ['23502', 'not_null_violation'],
    ['23514', 'check_violation'],
    ['54000', 'program_limit_exceeded (index row size)'],
  ])('SQLSTATE %s (%s) is a row error', (code) => {
    expect(classifyPgError(sqlError(code))).toBe('row');
    expect(isRetriablePgError(sqlError(code))).toBe(false);
  });

  it.each([
    ['42P01', 'undefined_table'],
    ['42501', 'insufficient_privilege'],
    ['42601', 'syntax_error'],
    ['3D000', 'invalid_catalog_name'],
    ['28P01', 'invalid_password'],
    ['XX000', 'internal_error'],
  ])('SQLSTATE %s (%s) is fatal: neither retried blindly nor blamed on rows', (code) => {
    expect(classifyPgError(sqlError(code))).toBe('fatal');
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])(
    'socket error %s is retriable',
    (code) => {
      expect(classifyPgError(socketError(code))).toBe('retriable');
    },
  );

  it('treats an open breaker as retriable (a trial goes through later)', () => {
    const err = Object.assign(new Error('Breaker is open'), { code: 'EOPENBREAKER' });
    expect(classifyPgError(err)).toBe('retriable');
  });

  it.each([
    'Connection terminated unexpectedly',
    'Connection terminated due to connection timeout',
    'timeout exceeded when trying to connect',
    'Query read timeout',
    'Client has encountered a connection error and is not queryable',
  ])('node-postgres message %j is retriable', (message) => {
    expect(classifyPgError(new Error(message))).toBe('retriable');
  });

  it('an AggregateError of refused connections (localhost → ::1 and 127.0.0.1) is retriable', () => {
    const agg = new AggregateError([socketError('ECONNREFUSED'), socketError('ECONNREFUSED')], '');
    expect(classifyPgError(agg)).toBe('retriable');
    const mixed = new AggregateError([socketError('ECONNREFUSED'), new Error('something else')], '');
    expect(classifyPgError(mixed)).toBe('fatal');
  });

  it('unknown errors are fatal (kept and reported), not retriable and not row errors', () => {
    expect(classifyPgError(new TypeError('x is not a function'))).toBe('fatal');
    expect(classifyPgError('a string')).toBe('fatal');
    expect(classifyPgError(undefined)).toBe('fatal');
  });

  it('knows its own errors', () => {
    expect(classifyPgError(new RowEncodingError('bad metadata'))).toBe('row');
    expect(classifyPgError(new DecisionLogFullError(10, 10, 1))).toBe('retriable');
    expect(classifyPgError(new DecisionLogClosedError('closed'))).toBe('fatal');
  });
});

describe('errorMessageWithCode', () => {
  it('adds the SQLSTATE when the message lacks it', () => {
    expect(errorMessageWithCode(sqlError('23514', 'violates check constraint'))).toBe('violates check constraint (23514)');
    expect(errorMessageWithCode(socketError('ECONNREFUSED'))).toBe('connect ECONNREFUSED 127.0.0.1:5432');
  });

  it('spells out an AggregateError with an empty message', () => {
    const agg = new AggregateError([socketError('ECONNREFUSED'), new Error('second')], '');
    expect(errorMessageWithCode(agg)).toBe('connect ECONNREFUSED 127.0.0.1:5432; second');
  });
});
