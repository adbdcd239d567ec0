// `npm test`'s test runner: the unit and integration projects side by side, the unit one at a
// lower CPU priority. The integration files run one at a time and mostly wait on the broker,
// Postgres and child processes, so the unit files fill the idle CPU without slowing them.
// Arguments go to both vitest runs; a JSON report path (--outputFile.json=X.json) becomes
// X.unit.json and X.integration.json. With --project, one run as asked.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
const args = process.argv.slice(2);

function run(project, nice) {
  const own = args.map((a) => a.replace(/^(--outputFile\.json=.*?)(\.json)?$/, `$1.${project}.json`));
  const argv = [vitest, 'run', ...(project ? ['--project', project] : []), ...(project ? own : args)];
  const child = nice ? spawn('nice', ['-n', '10', process.execPath, ...argv], { stdio: 'inherit' }) : spawn(process.execPath, argv, { stdio: 'inherit' });
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

const codes = args.some((a) => a === '--project' || a.startsWith('--project='))
  ? [await run(undefined, false)]
  : await Promise.all([run('unit', true), run('integration', false)]);
process.exit(codes.find((c) => c !== 0) ?? 0);
