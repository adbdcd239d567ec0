import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;
type Parsed<T extends OptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: T; allowPositionals: boolean; strict: true }>
>;

/** node:util parseArgs with its errors turned into UsageError (exit 2) and one-line messages. */
export function parseCommandArgs<T extends OptionsConfig>(argv: string[], options: T, allowPositionals = false): Parsed<T> {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0] ?? 'bad arguments');
  }
}

export function numberArg(name: string, raw: string | undefined, fallback: number, min = -Infinity, max = Infinity): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new UsageError(`--${name} must be a number in [${min}, ${max}], got '${raw}'`);
  }
  return value;
}

export function intArg(name: string, raw: string | undefined, fallback: number, min = -Infinity, max = Infinity): number {
  const value = numberArg(name, raw, fallback, min, max);
  if (!Number.isInteger(value)) throw new UsageError(`--${name} must be a whole number, got '${raw}'`);
  return value;
}
