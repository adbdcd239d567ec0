// How to start a worker thread whose module sits next to the caller, both when the project
// runs built (dist/…/x.js) and from source (vitest, tsx: …/x.ts).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface WorkerScript {
  /** The worker module, or bootstrap code when `eval`. */
  target: URL | string;
  eval: boolean;
}

/** `callerUrl`: the caller's import.meta.url; `name`: the worker module's name without extension. */
export function workerScript(callerUrl: string, name: string): WorkerScript {
  // Built: dist/…/caller.js next to name.js.
  if (!callerUrl.endsWith('.ts')) return { target: new URL(`./${name}.js`, callerUrl), eval: false };
  // From source (vitest, tsx): the worker is TypeScript. `execArgv: ['--import', 'tsx']` does not
  // reach a worker's entry module on Node 20, so a two-line bootstrap registers tsx's ESM hooks
  // inside the worker first, then imports the .ts module. tsx is a devDependency, present exactly
  // when running from source.
  const workerUrl = new URL(`./${name}.ts`, callerUrl).href;
  let tsxApi: string;
  try {
    tsxApi = import.meta.resolve('tsx/esm/api');
  } catch {
    const pkg = createRequire(callerUrl).resolve('tsx/package.json');
    tsxApi = pathToFileURL(join(dirname(pkg), 'dist/esm/api/index.mjs')).href;
  }
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl)}); });`;
  return { target: code, eval: true };
}
