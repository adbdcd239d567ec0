// kcat (librdkafka's command-line client) as the tests' client we did not write: produce lines,
// read a topic to its end.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { kafkaBrokers } from './helpers.js';

const run = promisify(execFile);

export async function kcatAvailable(): Promise<boolean> {
  try {
    await run('kcat', ['-V']);
    return true;
  } catch {
    return false;
  }
}

/** Produces `lines` (key<TAB>value), every record with the headers given. */
export function kcatProduce(topic: string, lines: string[], headers: Record<string, string> = {}): Promise<void> {
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}=${v}`]);
  return new Promise((resolve, reject) => {
    const p = spawn('kcat', ['-P', '-b', kafkaBrokers().join(','), '-t', topic, '-K', '\t', '-X', 'message.max.bytes=33554432', ...h]);
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kcat -P exited ${code}: ${err}`))));
    p.stdin.end(`${lines.join('\n')}\n`);
  });
}

export interface KcatRecord {
  key: string;
  /** kcat's %h: name=value pairs joined by commas. */
  headers: string;
  /** The value as UTF-8 text, and its bytes (a protobuf value may hold any byte, newlines too). */
  value: string;
  bytes: Buffer;
}

/**
 * Reads a whole topic with kcat until its end: key, headers and value of each record. kcat
 * prints each value's length (%S) before it, so values are cut by length, not at newlines.
 */
export async function kcatConsume(topic: string, extra: string[] = []): Promise<KcatRecord[]> {
  const { stdout } = await run(
    'kcat',
    ['-C', '-b', kafkaBrokers().join(','), '-t', topic, '-o', 'beginning', '-e', '-q', ...extra, '-f', '%k\t%h\t%S\t%s\n'],
    { maxBuffer: 64 * 1024 * 1024, encoding: 'buffer' },
  );
  const out: KcatRecord[] = [];
  let pos = 0;
  const field = (): string => {
    const end = stdout.indexOf(0x09, pos);
    if (end < 0) throw new Error(`kcat output cut short at byte ${pos}`);
    const text = stdout.toString('utf8', pos, end);
    pos = end + 1;
    return text;
  };
  while (pos < stdout.length) {
    const key = field();
    const headers = field();
    const size = Math.max(0, Number(field()));
    const bytes = stdout.subarray(pos, pos + size);
    pos += size + 1; // the value, then its newline
    out.push({ key, headers, value: bytes.toString('utf8'), bytes });
  }
  return out;
}
