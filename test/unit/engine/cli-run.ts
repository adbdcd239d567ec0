// Two ways to run `tiny-dancer` commands in tests:
// - runCli: the real process (node --import tsx, the dispatcher's main) — exit status, stderr
//   and stdout exactly as a user sees them. ~1–3 s each on this machine, so used sparingly.
// - runInProcess: the command module's run() with in-memory stdin/stdout and the dispatcher's
//   error mapping (InvalidInputError → 2, one line on stderr), for the many input cases.
import { spawn } from 'node:child_process';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { InvalidInputError, errorMessage, oneLine } from '../../../src/errors.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface CliResult { status: number | null; stdout: string; stderr: string }

export function runCli(args: string[], input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '-e', "import('./src/cli/index.ts').then((m) => m.main(process.argv.slice(1))).then((c) => { process.exitCode = c; })", ...args],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.on('error', () => { /* the child may exit before reading everything */ });
    child.stdin.end(input);
  });
}

type Command = { run(argv: string[], io: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream }): Promise<number> };

export async function runInProcess(name: 'route' | 'model', args: string[], input = ''): Promise<CliResult> {
  const mod = (await import(`../../../src/cli/commands/${name}.ts`)) as Command;
  const stdin = Readable.from(input === '' ? [] : [Buffer.from(input)]);
  let stdout = '';
  const out = new Writable({ write(chunk: Buffer, _enc, cb) { stdout += chunk.toString(); cb(); } });
  try {
    const status = await mod.run(args, { stdin, stdout: out });
    return { status, stdout, stderr: '' };
  } catch (err) {
    return { status: err instanceof InvalidInputError ? 2 : 1, stdout, stderr: `tiny-dancer ${name}: ${oneLine(errorMessage(err))}\n` };
  }
}
