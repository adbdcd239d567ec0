// The schema check of deploy/k8s (scripts/check-manifests.ts, our `kubeconform -strict`): the
// real manifests pass, and each kind of mistake it exists for is caught, so a green run means
// something.
import { beforeAll, describe, expect, it } from 'vitest';
import { checkManifestDir, checkManifestSources, formatProblem, readManifestDir, type CheckResult, type ManifestSource } from '../../../scripts/check-manifests.js';

let sources: ManifestSource[];

/** The real manifests with one text replacement in one file. */
function altered(file: string, from: string, to: string): ManifestSource[] {
  let applied = false;
  const out = sources.map((s) => {
    if (s.file !== file) return s;
    expect(s.text, `${file} contains the text to alter`).toContain(from);
    applied = true;
    return { ...s, text: s.text.replace(from, to) };
  });
  expect(applied, `${file} exists`).toBe(true);
  return out;
}

function messages(r: CheckResult): string[] {
  return r.problems.map(formatProblem);
}

describe('deploy/k8s schema check', () => {
  beforeAll(() => {
    sources = readManifestDir();
  });

  it('every manifest passes schema and strict checks', async () => {
    const result = await checkManifestDir();
    expect(messages(result)).toEqual([]);
    expect(result.objects.map((o) => `${o.apiVersion} ${o.kind}/${o.name}`).sort()).toEqual([
      'apps/v1 Deployment/tiny-dancer',
      'policy/v1 PodDisruptionBudget/tiny-dancer',
      'v1 ConfigMap/tiny-dancer-config',
      'v1 Secret/tiny-dancer-secrets',
      'v1 Service/tiny-dancer',
    ]);
    expect(result.files).toContain('kustomization.yaml');
  });

  it('catches an unknown (misspelt) field that Kubernetes would silently drop', async () => {
    const r = await checkManifestSources(altered('deployment.yaml', 'readinessProbe:', 'readinesProbe:'));
    expect(messages(r)).toEqual([expect.stringMatching(/containers\/0\/readinesProbe: unknown field: .*'readinesProbe'.*Did you mean to write 'readinessProbe'/)]);
  });

  it('catches a wrong type, a bad quantity and a value outside an enum', async () => {
    expect(messages(await checkManifestSources(altered('deployment.yaml', 'replicas: 3', 'replicas: three')))).toEqual([
      expect.stringMatching(/\/spec\/replicas: schema: must be integer/),
    ]);
    const qty = messages(await checkManifestSources(altered('deployment.yaml', 'memory: 384Mi', 'memory: 384 megs')));
    expect(qty.some((m) => /limits\/memory: schema: must match format "quantity"/.test(m))).toBe(true);
    expect(messages(await checkManifestSources(altered('service.yaml', 'type: ClusterIP', 'type: ClusterIp')))).toEqual([
      expect.stringMatching(/\/spec\/type: schema: must be equal to one of the allowed values/),
    ]);
  });

  it('catches a missing required field', async () => {
    const r = await checkManifestSources(altered('deployment.yaml', '        - name: tiny-dancer\n', '        -\n'));
    expect(messages(r)).toContainEqual(expect.stringMatching(/containers\/0: schema: must have required property name/));
  });

  it('reads YAML as kubectl does: an unquoted boolean in a ConfigMap is an error', async () => {
    const r = await checkManifestSources(altered('configmap.yaml', 'TD_EXACTLY_ONCE: "false"', 'TD_EXACTLY_ONCE: off'));
    expect(messages(r)).toEqual([expect.stringMatching(/\/data\/TD_EXACTLY_ONCE: schema: must be string/)]);
  });

  it('catches YAML errors and duplicate keys', async () => {
    expect(messages(await checkManifestSources(altered('pdb.yaml', 'maxUnavailable: 1', 'maxUnavailable: 1\n  maxUnavailable: 2')))).toEqual([
      expect.stringMatching(/pdb\.yaml doc 0: YAML: Map keys must be unique/),
    ]);
    const syntax = await checkManifestSources(altered('service.yaml', '  ports:\n', '  ports: [\n'));
    expect(syntax.problems.length).toBeGreaterThan(0);
    expect(syntax.problems.every((p) => p.file === 'service.yaml' && p.message.startsWith('YAML:'))).toBe(true);
  });

  it('refuses kinds and versions it has no schema for', async () => {
    expect(messages(await checkManifestSources(altered('pdb.yaml', 'apiVersion: policy/v1', 'apiVersion: policy/v1beta7')))).toContainEqual(
      expect.stringMatching(/no schema for apiVersion 'policy\/v1beta7' kind 'PodDisruptionBudget'/),
    );
    expect(messages(await checkManifestSources(altered('pdb.yaml', 'kind: PodDisruptionBudget', 'kind: PodDisruptionBudgit')))).toContainEqual(
      expect.stringMatching(/no schema for apiVersion 'policy\/v1' kind 'PodDisruptionBudgit'/),
    );
  });

  it('keeps the manifests namespace-agnostic', async () => {
    const r = await checkManifestSources(altered('service.yaml', '  name: tiny-dancer\n', '  name: tiny-dancer\n  namespace: prod\n'));
    expect(messages(r)).toEqual([expect.stringMatching(/Service\/tiny-dancer \/metadata\/namespace: the manifests are namespace-agnostic/)]);
  });

  it('keeps kustomization.yaml complete and its resources real', async () => {
    expect(messages(await checkManifestSources(altered('kustomization.yaml', '  - pdb.yaml\n', '')))).toEqual([
      expect.stringMatching(/kustomization\.yaml \/resources: pdb\.yaml is not listed in resources/),
    ]);
    expect(messages(await checkManifestSources(altered('kustomization.yaml', '  - pdb.yaml\n', '  - pdb.yaml\n  - hpa.yaml\n')))).toEqual([
      expect.stringMatching(/resource 'hpa\.yaml' is not a manifest in this directory/),
    ]);
  });

  it('reports an object defined twice', async () => {
    const svc = sources.find((s) => s.file === 'service.yaml')!;
    const r = await checkManifestSources([...sources, { file: 'extra.yaml', text: svc.text }], { namespaceAgnostic: true });
    expect(messages(r)).toContainEqual(expect.stringMatching(/extra\.yaml doc 0 Service\/tiny-dancer: defined twice \(first in service\.yaml\)/));
  });
});
