// Static checks of deploy/prometheus and deploy/grafana against the metrics the service really
// exports (src/observe/metrics.ts): a renamed metric or label would otherwise leave a silent
// alert and an empty panel. Where promtool is installed (Debian package `prometheus`), the rules
// are also compiled and their unit tests (alerts.test.yml) run.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BREAKER_STATE_VALUE, createMetrics } from '../../../src/observe/metrics.js';
import { loadYaml } from '../../../scripts/check-manifests.js';
import { arr, obj, readRepo, readYaml, readYamlDocuments, repoFile, str } from './support.js';

interface MetricInfo {
  type: string;
  labels: Set<string>;
}

/** Labels Prometheus adds to every scraped series (prometheus.yml relabels namespace and pod). */
const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod'];
/** Series that come from elsewhere: Prometheus itself and kube-state-metrics. */
const EXTERNAL: Record<string, string[]> = {
  up: [],
  kube_pod_status_ready: ['condition', 'uid'],
};

function exportedMetrics(): Map<string, MetricInfo> {
  const out = new Map<string, MetricInfo>();
  const metrics = createMetrics();
  for (const m of metrics.registry.getMetricsAsArray() as unknown as { name: string; type: string; labelNames: string[] }[]) {
    out.set(m.name, { type: m.type, labels: new Set(m.labelNames) });
  }
  return out;
}

// PromQL words that are not metric names.
const PROMQL_WORDS = new Set([
  'sum', 'max', 'min', 'avg', 'count', 'by', 'without', 'rate', 'irate', 'increase', 'histogram_quantile', 'clamp_min',
  'clamp_max', 'and', 'or', 'unless', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'absent', 'deriv',
  'label_values', 'humanize', 'topk', 'bottomk', 'quantile', 'stddev', 'abs', 'vector', 'scalar', 'time',
]);

interface Reference {
  metric: string;
  /** Label names used in the selector's matchers, with the matched value and operator. */
  matchers: { label: string; op: string; value: string }[];
}

/** Metric selectors in an expression, and the labels of its `by (...)` / `without (...)` clauses. */
function parsePromql(expr: string): { refs: Reference[]; grouping: string[] } {
  // Protect string literals, then drop what holds no metric: grouping clauses and range durations.
  const strings: string[] = [];
  let s = expr.replace(/"(?:[^"\\]|\\.)*"/g, (lit) => `"${strings.push(lit.slice(1, -1)) - 1}"`);
  const grouping = [...s.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!.split(',').map((x) => x.trim()).filter(Boolean),
  );
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  const refs: Reference[] = [];
  for (const m of s.matchAll(/(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const word = m[1]!;
    const after = s.slice(m.index + m[0].length);
    if (PROMQL_WORDS.has(word)) continue;
    if (m[2] === undefined && /^\s*\(/.test(after)) continue; // a function call
    const matchers = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(\d+)"/g)].map((x) => ({
      label: x[1]!,
      op: x[2]!,
      value: strings[Number(x[3])]!,
    }));
    refs.push({ metric: word, matchers });
  }
  return { refs, grouping };
}

/** Every problem with the metrics and labels one expression uses. */
function checkExpression(expr: string, metrics: Map<string, MetricInfo>, srcLiterals: Set<string>): string[] {
  const problems: string[] = [];
  const { refs, grouping } = parsePromql(expr);
  if (refs.length === 0) problems.push(`no metric in '${expr}'`);
  const available = new Set([...TARGET_LABELS]);
  for (const ref of refs) {
    let name = ref.metric;
    let extra: string[] = [];
    const hist = /^(.*)_(bucket|sum|count)$/.exec(name);
    if (!metrics.has(name) && hist && metrics.get(hist[1]!)?.type === 'histogram') {
      name = hist[1]!;
      extra = hist[2] === 'bucket' ? ['le'] : [];
    }
    const info = metrics.get(name);
    const labels = info ? [...info.labels, ...extra] : EXTERNAL[name];
    if (labels === undefined) {
      problems.push(`'${ref.metric}' is not exported by src/observe/metrics.ts`);
      continue;
    }
    for (const l of labels) available.add(l);
    for (const mt of ref.matchers) {
      if (!TARGET_LABELS.includes(mt.label) && !labels.includes(mt.label)) problems.push(`'${ref.metric}' has no label '${mt.label}'`);
      // An exact label value of our own metric must be one the code writes.
      if (info && mt.op === '=' && !TARGET_LABELS.includes(mt.label) && !srcLiterals.has(mt.value)) {
        problems.push(`'${ref.metric}{${mt.label}="${mt.value}"}': no such value is written in src/`);
      }
    }
  }
  for (const g of grouping) if (!available.has(g)) problems.push(`grouping by '${g}', which none of the metrics has`);
  return problems;
}

function sourceStringLiterals(): Set<string> {
  const out = new Set<string>();
  const files = (readdirSync(repoFile('src'), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
  for (const f of files) {
    for (const m of readRepo('src', f).matchAll(/'([a-z_]+)'/g)) out.add(m[1]!);
  }
  return out;
}

let metrics: Map<string, MetricInfo>;
let literals: Set<string>;

beforeAll(() => {
  metrics = exportedMetrics();
  literals = sourceStringLiterals();
});

describe('the PromQL reference checker', () => {
  it('finds metrics, matchers and grouping labels, and flags what does not exist', () => {
    const m = new Map<string, MetricInfo>([
      ['td_x_total', { type: 'counter', labels: new Set(['route']) }],
      ['td_h_seconds', { type: 'histogram', labels: new Set() }],
    ]);
    const lits = new Set(['lightweight']);
    expect(checkExpression('sum by (route) (rate(td_x_total{job="a", route="lightweight"}[5m]))', m, lits)).toEqual([]);
    expect(checkExpression('histogram_quantile(0.99, sum by (le) (rate(td_h_seconds_bucket[$__rate_interval])))', m, lits)).toEqual([]);
    expect(checkExpression('rate(td_y_total[5m])', m, lits)).toEqual(["'td_y_total' is not exported by src/observe/metrics.ts"]);
    expect(checkExpression('td_x_total{rout="lightweight"}', m, lits)).toEqual(["'td_x_total' has no label 'rout'"]);
    expect(checkExpression('td_x_total{route="light"}', m, lits)).toEqual([`'td_x_total{route="light"}': no such value is written in src/`]);
    expect(checkExpression('sum by (reason) (td_x_total)', m, lits)).toEqual(["grouping by 'reason', which none of the metrics has"]);
    expect(checkExpression('td_h_seconds_sum / td_h_seconds_count', m, lits)).toEqual([]);
  });
});

describe('deploy/prometheus', () => {
  let config: Record<string, unknown>;
  let rules: Record<string, unknown>[];
  beforeAll(async () => {
    config = obj(await readYaml('deploy', 'prometheus', 'prometheus.yml'), 'prometheus.yml');
    const groups = arr(obj(await readYaml('deploy', 'prometheus', 'alerts.yml'), 'alerts.yml').groups, 'groups');
    rules = groups.flatMap((g) => arr(obj(g, 'group').rules, 'rules').map((r) => obj(r, 'rule')));
  });

  it('scrapes the pods of deploy/k8s on their metrics port', async () => {
    const jobs = arr(config.scrape_configs, 'scrape_configs').map((j) => obj(j, 'job'));
    expect(jobs).toHaveLength(1);
    const job = jobs[0]!;
    expect(job.job_name).toBe('tiny-dancer');
    expect(job.metrics_path).toBe('/metrics');
    expect(arr(config.rule_files, 'rule_files')).toEqual(['alerts.yml']);

    const [deployment] = await readYamlDocuments('deploy', 'k8s', 'deployment.yaml');
    const template = obj(obj(obj(deployment, 'deployment').spec, 'spec').template, 'template');
    const labels = obj(obj(template.metadata, 'metadata').labels, 'labels');
    const container = obj(arr(obj(template.spec, 'pod spec').containers, 'containers')[0], 'container');
    const ports = arr(container.ports, 'ports').map((p) => obj(p, 'port'));
    const relabel = arr(job.relabel_configs, 'relabel_configs').map((r) => obj(r, 'relabel'));
    const keep = (meta: string): string | undefined => relabel.find((r) => r.action === 'keep' && arr(r.source_labels, 'source_labels').includes(meta))?.regex as string | undefined;
    expect(keep('__meta_kubernetes_pod_label_app_kubernetes_io_name')).toBe(labels['app.kubernetes.io/name']);
    const portName = keep('__meta_kubernetes_pod_container_port_name');
    expect(ports.find((p) => p.name === portName)?.containerPort).toBe(9464);
    // The annotation-based discovery some clusters use points at the same port and path.
    const annotations = obj(obj(template.metadata, 'metadata').annotations, 'annotations');
    expect(annotations['prometheus.io/port']).toBe('9464');
    expect(annotations['prometheus.io/path']).toBe(job.metrics_path);
    // The labels the alerts group by are the ones relabelling adds.
    for (const target of ['namespace', 'pod']) expect(relabel.some((r) => r.target_label === target), target).toBe(true);
  });

  it('has the alerts the operator needs, each complete', () => {
    const names = rules.map((r) => str(r.alert, 'alert'));
    expect(new Set(names).size).toBe(names.length);
    for (const needed of ['TinyDancerBreakerOpen', 'TinyDancerDLQRate', 'TinyDancerConsumerLag', 'TinyDancerDecisionLogBacklog', 'TinyDancerNotReady', 'TinyDancerDown']) {
      expect(names).toContain(needed);
    }
    for (const r of rules) {
      expect(str(r.for, `${String(r.alert)}.for`)).toMatch(/^\d+[smh]$/);
      expect(['warning', 'critical']).toContain(obj(r.labels, 'labels').severity);
      const a = obj(r.annotations, 'annotations');
      expect(str(a.summary, 'summary').length).toBeGreaterThan(10);
      expect(str(a.description, 'description').length).toBeGreaterThan(10);
    }
  });

  it('alerts use only metrics, labels and label values the service exports', () => {
    const problems = rules.flatMap((r) => checkExpression(str(r.expr, 'expr'), metrics, literals).map((p) => `${String(r.alert)}: ${p}`));
    expect(problems).toEqual([]);
    // ...and the job the scrape config names.
    for (const r of rules) {
      for (const ref of parsePromql(str(r.expr, 'expr')).refs) {
        const job = ref.matchers.find((m) => m.label === 'job');
        if (job) expect(job.value, String(r.alert)).toBe('tiny-dancer');
      }
    }
  });

  it('the breaker alert compares with the value the code reports for open', () => {
    const rule = rules.find((r) => r.alert === 'TinyDancerBreakerOpen')!;
    expect(str(rule.expr, 'expr')).toMatch(new RegExp(`td_breaker_state\\b.*==\\s*${BREAKER_STATE_VALUE.open}\\s*$`));
  });

  const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!promtool)('promtool compiles the rules and their unit tests pass', () => {
    const dir = repoFile('deploy', 'prometheus');
    execFileSync('promtool', ['check', 'rules', 'alerts.yml'], { cwd: dir, stdio: 'pipe' });
    execFileSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir, stdio: 'pipe' });
  });

  it.skipIf(!promtool)('promtool accepts the scrape config', async () => {
    // Debian's promtool is built without Kubernetes discovery; everything else of the config is
    // checked with the discovery swapped for a static target.
    const yaml = await loadYaml();
    const tmp = mkdtempSync(join(tmpdir(), 'td-prom-'));
    try {
      const copy = structuredClone(config);
      for (const j of arr(copy.scrape_configs, 'scrape_configs').map((x) => obj(x, 'job'))) {
        expect(j.kubernetes_sd_configs).toBeDefined();
        delete j.kubernetes_sd_configs;
        j.static_configs = [{ targets: ['localhost:9464'] }];
      }
      const stringify = (yaml as unknown as { stringify(v: unknown): string }).stringify;
      writeFileSync(join(tmp, 'prometheus.yml'), stringify(copy));
      copyFileSync(repoFile('deploy', 'prometheus', 'alerts.yml'), join(tmp, 'alerts.yml'));
      execFileSync('promtool', ['check', 'config', 'prometheus.yml'], { cwd: tmp, stdio: 'pipe' });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('deploy/grafana/tiny-dancer.json', () => {
  const dashboard = JSON.parse(readRepo('deploy', 'grafana', 'tiny-dancer.json')) as Record<string, unknown>;
  const panels = arr(dashboard.panels, 'panels').map((p) => obj(p, 'panel'));
  const graphs = panels.filter((p) => p.type !== 'row');
  const variables = arr(obj(dashboard.templating, 'templating').list, 'templating.list').map((v) => obj(v, 'variable'));

  it('is an importable dashboard: unique ids, panels on the grid without overlap', () => {
    expect(dashboard.uid).toBe('tiny-dancer');
    expect(typeof dashboard.schemaVersion).toBe('number');
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const g = obj(p.gridPos, `${String(p.title)}.gridPos`) as { x: number; y: number; w: number; h: number };
      expect(g.x + g.w, String(p.title)).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const key = `${x},${y}`;
          expect(cells.has(key), `${String(p.title)} overlaps another panel at ${key}`).toBe(false);
          cells.add(key);
        }
      }
    }
  });

  it('queries the chosen Prometheus through variables that exist', () => {
    const names = new Set(variables.map((v) => v.name));
    expect(variables.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    for (const p of graphs) {
      expect(obj(p.datasource, 'datasource').uid, String(p.title)).toBe('${datasource}');
      const targets = arr(p.targets, `${String(p.title)}.targets`).map((t) => obj(t, 'target'));
      expect(targets.length, String(p.title)).toBeGreaterThan(0);
      for (const t of targets) {
        for (const v of str(t.expr, 'expr').matchAll(/\$(?!__)(\w+)/g)) expect(names, `${String(p.title)} uses $${v[1]}`).toContain(v[1]);
      }
    }
  });

  it('shows the key metrics', () => {
    const exprs = graphs.flatMap((p) => arr(p.targets, 'targets').map((t) => str(obj(t, 'target').expr, 'expr')));
    const uses = (re: RegExp): boolean => exprs.some((e) => re.test(e));
    expect(uses(/rate\(td_requests_total/)).toBe(true);
    expect(uses(/sum by \(route, reason\) \(rate\(td_decisions_total/)).toBe(true);
    expect(uses(/td_decisions_total\{[^}]*route="lightweight"[^}]*\}.*\/\s*sum\(rate\(td_decisions_total/)).toBe(true);
    for (const q of ['0.5', '0.99']) expect(uses(new RegExp(`histogram_quantile\\(${q}, .*td_end_to_end_seconds_bucket`))).toBe(true);
    for (const m of ['td_breaker_state', 'td_dlq_total', 'td_consumer_lag', 'td_decision_log_backlog', 'process_resident_memory_bytes']) expect(uses(new RegExp(m)), m).toBe(true);
  });

  it('uses only metrics, labels and label values the service exports', () => {
    const problems = graphs.flatMap((p) =>
      arr(p.targets, 'targets').flatMap((t) => checkExpression(str(obj(t, 'target').expr, 'expr'), metrics, literals).map((x) => `${String(p.title)}: ${x}`)),
    );
    for (const v of variables.filter((x) => x.type === 'query')) {
      const q = str(v.definition, 'definition').replace(/^label_values\((.*),\s*(\w+)\)$/, '$1');
      problems.push(...checkExpression(q, metrics, literals).map((x) => `variable ${String(v.name)}: ${x}`));
    }
    expect(problems).toEqual([]);
  });

  it('names the breaker states by the values the code reports', () => {
    const panel = graphs.find((p) => arr(p.targets, 'targets').some((t) => /td_breaker_state/.test(String(obj(t, 't').expr))))!;
    const mapping = obj(arr(obj(obj(panel.fieldConfig, 'fieldConfig').defaults, 'defaults').mappings, 'mappings')[0], 'mapping');
    const options = obj(mapping.options, 'options') as Record<string, { text: string }>;
    expect(options[String(BREAKER_STATE_VALUE.closed)]?.text).toBe('closed');
    expect(options[String(BREAKER_STATE_VALUE.half_open)]?.text).toBe('half-open');
    expect(options[String(BREAKER_STATE_VALUE.open)]?.text).toBe('open');
  });
});
