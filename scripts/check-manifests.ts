// Schema check of the Kubernetes manifests — our stand-in for `kubeconform -strict` (a Go binary
// that is not installable here). Every YAML document under the directory (deploy/k8s by default)
// is checked in two passes:
//
//  1. schema: the document is validated against the JSON schema of its apiVersion/kind, as
//     generated from the Kubernetes OpenAPI spec and shipped by `kubernetes-models` (types,
//     required fields, enums, formats such as quantities). A kind without a schema is an error.
//  2. strict: fields the API does not know are errors (Kubernetes drops them silently, so a typo
//     such as `readinesProbe` would deploy a pod with no readiness probe). The document is
//     compiled as an object literal typed with `kubernetes-types` (generated from the same
//     OpenAPI spec); TypeScript's excess-property check names each unknown field.
//
// Plus: YAML errors (syntax, duplicate keys — parsed as YAML 1.1, like kubectl), missing
// apiVersion/kind/metadata.name, a namespace in a manifest (ours are namespace-agnostic), and a
// kustomization.yaml whose resources are missing or that leaves a manifest out (a file holding
// only Secrets may stay out: it is a placeholder that `apply -k` must never overwrite).
//
//   node --import tsx scripts/check-manifests.ts [DIR]    exit 0 clean, 1 problems, 2 setup error
//
// Needs the dev dependencies `yaml`, `kubernetes-models` and `kubernetes-types`; they are loaded
// lazily so the rest of the project type-checks and runs without them, and a missing one is one
// clear line naming the package to install.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_MANIFEST_DIR = join(ROOT, 'deploy', 'k8s');

/** Versions the check was written against (the lead adds them as devDependencies). */
export const CHECK_DEPENDENCIES = {
  yaml: '2.9.1',
  'kubernetes-models': '4.5.1',
  'kubernetes-types': '1.30.0',
} as const;

export class MissingDependencyError extends Error {
  constructor(readonly packageName: string, cause: unknown) {
    const version = CHECK_DEPENDENCIES[packageName as keyof typeof CHECK_DEPENDENCIES] ?? 'latest';
    super(`the dev dependency '${packageName}' is not installed: npm install --save-dev ${packageName}@${version}`, { cause });
    this.name = 'MissingDependencyError';
  }
}

// ---- the small parts of the optional packages that are used, typed here ----------------------

interface YamlIssue {
  message: string;
}
export interface YamlDocument {
  errors: YamlIssue[];
  warnings: YamlIssue[];
  contents: unknown;
  toJS(options?: { maxAliasCount?: number }): unknown;
}
export interface YamlModule {
  parse(source: string, options?: Record<string, unknown>): unknown;
  parseAllDocuments(source: string, options?: Record<string, unknown>): YamlDocument[];
}
type ModelClass = new (data: unknown) => { validate(): void };

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

async function importOptional<T>(packageName: string): Promise<T> {
  try {
    // A computed specifier: TypeScript does not resolve it, so the project builds without the
    // package; the shape is declared above.
    return (await import(packageName)) as T;
  } catch (err) {
    if (isNotFound(err) && String((err as Error).message).includes(packageName)) throw new MissingDependencyError(packageName, err);
    throw err;
  }
}

export async function loadYaml(): Promise<YamlModule> {
  return importOptional<YamlModule>('yaml');
}

/** The directory of an installed package (for TypeScript to resolve kubernetes-types from). */
function packageDir(packageName: string): string {
  let dir = ROOT;
  for (;;) {
    const candidate = join(dir, 'node_modules', packageName);
    try {
      if (statSync(join(candidate, 'package.json')).isFile()) return candidate;
    } catch {
      // keep walking up, like Node's resolution
    }
    const parent = dirname(dir);
    if (parent === dir) throw new MissingDependencyError(packageName, undefined);
    dir = parent;
  }
}

// ---- results ------------------------------------------------------------------------------------

export interface ManifestObject {
  file: string;
  /** 0-based index of the document within its file. */
  document: number;
  apiVersion: string;
  kind: string;
  name: string;
  value: Record<string, unknown>;
}

export interface Problem {
  file: string;
  document?: number;
  /** `Kind/name` when known. */
  object?: string;
  /** JSON pointer-ish path inside the document (`/spec/template/...`) when known. */
  path?: string;
  message: string;
}

export interface CheckResult {
  files: string[];
  objects: ManifestObject[];
  problems: Problem[];
}

export interface CheckOptions {
  /** Fail on `metadata.namespace` (default true: the manifests are applied into any namespace). */
  namespaceAgnostic?: boolean;
}

export function formatProblem(p: Problem): string {
  const where = [p.file, p.document === undefined ? undefined : `doc ${p.document}`, p.object, p.path].filter(Boolean).join(' ');
  return `${where}: ${p.message}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- pass 1: schema ----------------------------------------------------------------------------

/** `apps/v1` -> `kubernetes-models/apps/v1`; `v1` -> `kubernetes-models/v1`. */
function modelModuleFor(apiVersion: string): string | undefined {
  if (!/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(apiVersion)) return undefined;
  return `kubernetes-models/${apiVersion}`;
}

async function schemaProblems(obj: ManifestObject, modelCache: Map<string, Record<string, unknown> | null>): Promise<Problem[]> {
  const base = { file: obj.file, document: obj.document, object: `${obj.kind}/${obj.name}` };
  const spec = modelModuleFor(obj.apiVersion);
  let mod: Record<string, unknown> | null | undefined = spec === undefined ? null : modelCache.get(spec);
  if (spec !== undefined && mod === undefined) {
    // Look the group/version up in the package's export map rather than interpreting import
    // errors (their codes differ between Node and bundlers such as vitest's).
    const pkg = JSON.parse(readFileSync(join(packageDir('kubernetes-models'), 'package.json'), 'utf8')) as { exports?: Record<string, unknown> };
    mod = pkg.exports?.[`./${obj.apiVersion}`] === undefined ? null : ((await import(spec)) as Record<string, unknown>);
    modelCache.set(spec, mod);
  }
  const Model = mod?.[obj.kind];
  if (typeof Model !== 'function') {
    return [{ ...base, message: `no schema for apiVersion '${obj.apiVersion}' kind '${obj.kind}'` }];
  }
  try {
    new (Model as ModelClass)(obj.value).validate();
    return [];
  } catch (err) {
    // kubernetes-models joins every ajv error as "data/<path> <message>, data/<path> ...".
    const text = err instanceof Error ? err.message : String(err);
    return text
      .split(/, (?=data[/ ])/)
      .map((part) => {
        const m = /^data(\/\S*)? (.*)$/s.exec(part.trim());
        return m ? { ...base, path: m[1] ?? '/', message: `schema: ${m[2]}` } : { ...base, message: `schema: ${part.trim()}` };
      });
  }
}

// ---- pass 2: strict (unknown fields) -------------------------------------------------------------

/** `apps/v1` -> `apps/v1`, `v1` -> `core/v1`, `rbac.authorization.k8s.io/v1` -> `rbac/v1`. */
function typesModuleFor(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  if (slash < 0) return `core/${apiVersion}`;
  const group = apiVersion.slice(0, slash).split('.')[0] ?? '';
  return `${group}/${apiVersion.slice(slash + 1)}`;
}

interface Emitted {
  lines: string[];
  /** The document path each line stands for. */
  paths: string[];
}

/** Writes `value` as a TypeScript literal, one property or element per line, remembering paths. */
function emitLiteral(value: unknown, path: string, out: Emitted, prefix: string, suffix: string): void {
  if (Array.isArray(value)) {
    out.lines.push(`${prefix}[`);
    out.paths.push(path);
    value.forEach((v, i) => emitLiteral(v, `${path}/${i}`, out, '', ','));
    out.lines.push(`]${suffix}`);
    out.paths.push(path);
  } else if (isRecord(value)) {
    out.lines.push(`${prefix}{`);
    out.paths.push(path);
    for (const [k, v] of Object.entries(value)) {
      // Bare keys where possible, so TypeScript's messages read `'readinesProbe'`, not `'"readinesProbe"'`.
      const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k);
      emitLiteral(v, `${path}/${k}`, out, `${key}: `, ',');
    }
    out.lines.push(`}${suffix}`);
    out.paths.push(path);
  } else {
    // Dates (YAML timestamps) and other scalars become their JSON form.
    out.lines.push(`${prefix}${JSON.stringify(value instanceof Date ? value.toISOString() : value ?? null)}${suffix}`);
    out.paths.push(path);
  }
}

// 2353: "Object literal may only specify known properties, and 'x' does not exist in type 'T'."
// 2561: the same with "Did you mean to write 'y'?".
const EXCESS_PROPERTY_CODES = new Set([2353, 2561]);

function strictProblems(objects: ManifestObject[]): Problem[] {
  if (objects.length === 0) return [];
  const typesDir = packageDir('kubernetes-types');
  const emitted: Emitted = { lines: [], paths: [] };
  const owner: (ManifestObject | undefined)[] = [];
  const problems: Problem[] = [];
  objects.forEach((obj, i) => {
    const module = typesModuleFor(obj.apiVersion);
    let exists = false;
    try {
      exists = statSync(join(typesDir, `${module}.d.ts`)).isFile();
    } catch {
      exists = false;
    }
    const type = exists ? readFileSync(join(typesDir, `${module}.d.ts`), 'utf8').includes(`export interface ${obj.kind} `) : false;
    if (!type) {
      problems.push({ file: obj.file, document: obj.document, object: `${obj.kind}/${obj.name}`, message: `no strict type for apiVersion '${obj.apiVersion}' kind '${obj.kind}' in kubernetes-types` });
      return;
    }
    const start = emitted.lines.length;
    emitLiteral(obj.value, '', emitted, `export const doc${i}: import(${JSON.stringify(`kubernetes-types/${module}`)}).${obj.kind} = `, ';');
    for (let l = start; l < emitted.lines.length; l++) owner[l] = obj;
  });

  // A virtual file at the repository root, so `kubernetes-types` resolves like any import.
  const fileName = join(ROOT, '__manifest_strict_check__.ts');
  const text = emitted.lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    types: [],
    lib: ['lib.es2020.d.ts'],
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, onError, shouldCreate) =>
    resolve(name) === fileName ? ts.createSourceFile(name, text, languageVersion, true) : getSourceFile(name, languageVersion, onError, shouldCreate);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => resolve(name) === fileName || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (resolve(name) === fileName ? text : readFile(name));
  const program = ts.createProgram({ rootNames: [fileName], options, host });
  const source = program.getSourceFile(fileName);
  const diagnostics = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)];
  for (const d of diagnostics) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (d.file === undefined || d.start === undefined) {
      // A failure to load the types themselves must not pass silently.
      problems.push({ file: relative(ROOT, typesDir), message: `strict check could not run: ${message}` });
      continue;
    }
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    const obj = owner[line];
    if (obj === undefined) {
      problems.push({ file: 'strict check', message });
      continue;
    }
    // Type mismatches are pass 1's job (and the kubernetes-types are stricter than the API for
    // quantities); here only unknown fields count.
    if (!EXCESS_PROPERTY_CODES.has(d.code)) continue;
    problems.push({ file: obj.file, document: obj.document, object: `${obj.kind}/${obj.name}`, path: emitted.paths[line] ?? '/', message: `unknown field: ${message}` });
  }
  return problems;
}

// ---- driver ------------------------------------------------------------------------------------

export interface ManifestSource {
  /** Path relative to the manifest directory, e.g. `deployment.yaml`. */
  file: string;
  text: string;
}

function listYaml(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listYaml(full));
    else if (/\.ya?ml$/.test(entry.name)) out.push(full);
  }
  return out.sort();
}

export function readManifestDir(dir: string = DEFAULT_MANIFEST_DIR): ManifestSource[] {
  return listYaml(dir).map((full) => ({ file: relative(dir, full), text: readFileSync(full, 'utf8') }));
}

const KUSTOMIZE_API = /^kustomize\.config\.k8s\.io\//;

/** Checks manifests given as text (the tests feed altered copies through here). */
export async function checkManifestSources(sources: ManifestSource[], options: CheckOptions = {}): Promise<CheckResult> {
  const yaml = await loadYaml();
  const namespaceAgnostic = options.namespaceAgnostic ?? true;
  const problems: Problem[] = [];
  const objects: ManifestObject[] = [];
  const kustomizations: { file: string; value: Record<string, unknown> }[] = [];
  const kindsByFile = new Map<string, string[]>();

  for (const { file, text } of sources) {
    // YAML 1.1 as kubectl reads it (unquoted yes/no/on/off are booleans there).
    const docs = yaml.parseAllDocuments(text, { version: '1.1', uniqueKeys: true, prettyErrors: false });
    docs.forEach((doc, document) => {
      for (const e of [...doc.errors, ...doc.warnings]) problems.push({ file, document, message: `YAML: ${e.message.split('\n')[0]}` });
      if (doc.errors.length > 0 || doc.contents === null) return;
      const value = doc.toJS({ maxAliasCount: 0 });
      if (value === null || value === undefined) return;
      if (!isRecord(value)) {
        problems.push({ file, document, message: 'a manifest must be a mapping' });
        return;
      }
      const { apiVersion, kind } = value;
      const metadata = isRecord(value.metadata) ? value.metadata : undefined;
      if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
        problems.push({ file, document, message: 'apiVersion and kind must be strings' });
        return;
      }
      if (KUSTOMIZE_API.test(apiVersion) && kind === 'Kustomization') {
        kustomizations.push({ file, value });
        return;
      }
      const name = metadata?.name;
      if (typeof name !== 'string' || name === '') {
        problems.push({ file, document, object: kind, message: 'metadata.name is required' });
        return;
      }
      if (namespaceAgnostic && metadata?.namespace !== undefined) {
        problems.push({ file, document, object: `${kind}/${name}`, path: '/metadata/namespace', message: 'the manifests are namespace-agnostic: remove metadata.namespace' });
      }
      objects.push({ file, document, apiVersion, kind, name, value });
      kindsByFile.set(file, [...(kindsByFile.get(file) ?? []), kind]);
    });
  }

  const modelCache = new Map<string, Record<string, unknown> | null>();
  for (const obj of objects) problems.push(...(await schemaProblems(obj, modelCache)));
  problems.push(...strictProblems(objects));

  const present = new Set(sources.map((s) => s.file));
  const seen = new Map<string, ManifestObject>();
  for (const obj of objects) {
    const key = `${obj.apiVersion}/${obj.kind}/${obj.name}`;
    const first = seen.get(key);
    if (first) problems.push({ file: obj.file, document: obj.document, object: `${obj.kind}/${obj.name}`, message: `defined twice (first in ${first.file})` });
    else seen.set(key, obj);
  }

  for (const k of kustomizations) {
    const dir = dirname(k.file);
    const resources = Array.isArray(k.value.resources) ? k.value.resources : [];
    const listed = new Set<string>();
    for (const r of resources) {
      const path = typeof r === 'string' ? join(dir, r) : '';
      if (!present.has(path)) problems.push({ file: k.file, path: '/resources', message: `resource '${String(r)}' is not a manifest in this directory` });
      listed.add(path);
    }
    if (namespaceAgnostic && k.value.namespace !== undefined) problems.push({ file: k.file, path: '/namespace', message: 'the manifests are namespace-agnostic: remove namespace' });
    for (const [file, kinds] of kindsByFile) {
      if (dirname(file) !== dir || listed.has(file)) continue;
      if (kinds.every((kind) => kind === 'Secret')) continue; // placeholder secrets stay out on purpose
      problems.push({ file: k.file, path: '/resources', message: `${basename(file)} is not listed in resources` });
    }
  }

  return { files: sources.map((s) => s.file), objects, problems };
}

export async function checkManifestDir(dir: string = DEFAULT_MANIFEST_DIR, options: CheckOptions = {}): Promise<CheckResult> {
  return checkManifestSources(readManifestDir(dir), options);
}

async function main(argv: string[]): Promise<number> {
  const dir = resolve(argv[0] ?? DEFAULT_MANIFEST_DIR);
  let result: CheckResult;
  try {
    result = await checkManifestDir(dir);
  } catch (err) {
    process.stderr.write(`check-manifests: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  for (const p of result.problems) process.stderr.write(`${formatProblem(p)}\n`);
  const summary = `${result.objects.length} objects in ${result.files.length} files checked (schema + strict) in ${relative(process.cwd(), dir) || '.'}: ${result.problems.length} problems`;
  (result.problems.length === 0 ? process.stdout : process.stderr).write(`${summary}\n`);
  return result.problems.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
