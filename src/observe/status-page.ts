// The live status page on TD_HTTP_ADDR: GET / (HTML), /status.css and /status.js, refreshed
// every 2 s from /status.json. Self-contained on purpose (the service often runs without
// internet): no CDN, no web font, no framework, and a strict Content-Security-Policy that allows
// only this origin's script, style and JSON. The chart is inline SVG built with DOM calls (SVG
// presentation attributes, no style attributes, so the CSP needs no 'unsafe-inline').
import { errorMessage } from '../errors.js';
import type { HttpReply } from './http.js';
import type { StatusTracker } from './status.js';

export const STATUS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const STATUS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiny-dancer status</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
  <h1>tiny-dancer</h1>
  <span id="health" class="pill">…</span>
  <span id="updated" class="muted"></span>
</header>
<main>
  <section class="card wide" aria-labelledby="chart-title">
    <h2 id="chart-title">Decisions per second and lightweight share</h2>
    <svg id="chart" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="decisions per second and lightweight share over the last minutes"></svg>
    <p class="legend"><span class="key rate"></span> decisions/s (max <span id="chart-max">0</span>) <span class="key share"></span> lightweight share (0–100 %) <span class="muted" id="chart-span"></span></p>
  </section>
  <section class="card"><h2>Decisions/s</h2><p class="big" id="rate">–</p><p class="muted"><span id="decisions">0</span> decisions since start</p></section>
  <section class="card"><h2>Lightweight share</h2><p class="big" id="share">–</p><p class="muted">since start <span id="share-total">–</span></p></section>
  <section class="card"><h2>DLQ rate</h2><p class="big" id="dlq-rate">–</p><p class="muted"><span id="dlq">0</span> records dead-lettered</p></section>
  <section class="card"><h2>End-to-end latency</h2><p class="big"><span id="p50">–</span> <small>p50</small></p><p class="muted">p99 <span id="p99">–</span></p></section>
  <section class="card"><h2>Circuit breaker</h2><p class="big" id="breaker">–</p><p class="muted"><span id="trips">0</span> trip(s)</p></section>
  <section class="card"><h2>Decision log</h2><p class="big" id="backlog">–</p><p class="muted">rows not yet in Postgres; consumer lag <span id="lag">–</span></p></section>
  <section class="card"><h2>Model</h2><p class="big mono" id="model">–</p><p class="muted">confidence ≥ <span id="t-conf">–</span>, uncertainty ≤ <span id="t-unc">–</span></p></section>
  <section class="card"><h2>Conformal coverage</h2><div id="coverage"><p class="muted">feedback loop off or no labelled outcomes yet</p></div></section>
  <section class="card" id="cost-card" hidden><h2>Estimated savings</h2><p class="big" id="savings">–</p><p class="muted">spent <span id="spend">–</span> of <span id="all-heavy">–</span> all-heavyweight</p></section>
  <section class="card wide" id="fleet-card" hidden><h2>Fleet</h2><table><thead><tr><th>replica</th><th>model</th><th>health</th><th>decisions/s</th><th>lightweight</th></tr></thead><tbody id="fleet"></tbody></table></section>
</main>
<footer class="muted">Refreshes every 2 s from <a href="/status.json">/status.json</a> · <a href="/metrics">/metrics</a></footer>
</body>
</html>
`;

export const STATUS_CSS = `:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1c2330; --muted: #5f6b7a; --rate: #2563eb; --share: #16a34a; --bad: #dc2626; --warn: #d97706; --line: #d8dde5; }
@media (prefers-color-scheme: dark) { :root { --bg: #11151c; --card: #1a202a; --fg: #e6e9ef; --muted: #98a2b3; --line: #2c3442; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 12px 16px; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 13px; font-weight: 600; margin: 0 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 12px; padding: 0 16px 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px; min-width: 0; overflow-wrap: anywhere; }
.wide { grid-column: 1 / -1; }
.big { font-size: 26px; font-weight: 600; margin: 0; font-variant-numeric: tabular-nums; }
.big small { font-size: 13px; color: var(--muted); font-weight: 400; }
.muted { color: var(--muted); margin: 4px 0 0; font-size: 13px; }
.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 18px; }
.pill { padding: 2px 10px; border-radius: 999px; background: var(--line); font-size: 13px; font-weight: 600; }
.ok { color: var(--share); } .bad { color: var(--bad); } .warn { color: var(--warn); }
#chart { width: 100%; height: 160px; display: block; }
.legend { margin: 6px 0 0; font-size: 13px; }
.key { display: inline-block; width: 12px; height: 3px; vertical-align: middle; margin: 0 4px 0 10px; }
.key.rate { background: var(--rate); } .key.share { background: var(--share); }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
footer { padding: 0 16px 16px; }
a { color: var(--rate); }
@media (max-width: 480px) { main { grid-template-columns: 1fr; padding: 0 8px 8px; } header { padding: 10px 8px; } .big { font-size: 22px; } }
`;

export const STATUS_JS = `'use strict';
(function () {
  var SVG = 'http://www.w3.org/2000/svg';
  function $(id) { return document.getElementById(id); }
  function set(id, text) { var el = $(id); if (el) el.textContent = text; }
  function num(x, digits) { return x === null || x === undefined || !isFinite(x) ? '–' : Number(x).toLocaleString('en-US', { maximumFractionDigits: digits === undefined ? 1 : digits }); }
  function pct(x) { return x === null || x === undefined || !isFinite(x) ? '–' : (x * 100).toFixed(1) + ' %'; }
  function ms(x) { return x === null || x === undefined ? '–' : x >= 1000 ? (x / 1000).toFixed(2) + ' s' : x.toFixed(x < 10 ? 2 : 0) + ' ms'; }
  function cls(id, name) { var el = $(id); if (el) el.className = el.className.replace(/\\b(ok|bad|warn)\\b/g, '').trim() + (name ? ' ' + name : ''); }

  function line(points, color) {
    var p = document.createElementNS(SVG, 'polyline');
    p.setAttribute('points', points.join(' '));
    p.setAttribute('fill', 'none');
    p.setAttribute('stroke', color);
    p.setAttribute('stroke-width', '2');
    p.setAttribute('vector-effect', 'non-scaling-stroke');
    return p;
  }

  function chart(doc) {
    var svg = $('chart');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 600, H = 160, s = doc.series;
    var grid = document.createElementNS(SVG, 'path');
    grid.setAttribute('d', 'M0 ' + H / 2 + ' H' + W + ' M0 ' + (H - 1) + ' H' + W);
    grid.setAttribute('stroke', 'currentColor');
    grid.setAttribute('stroke-opacity', '0.15');
    grid.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(grid);
    set('chart-span', 'last ' + Math.round(doc.historySeconds / 60) + ' min');
    if (s.length < 1) { set('chart-max', '0'); return; }
    var t1 = doc.time, t0 = t1 - doc.historySeconds * 1000;
    var max = 0;
    s.forEach(function (p) { if (p.decisionsPerSecond > max) max = p.decisionsPerSecond; });
    var top = max > 0 ? max * 1.1 : 1;
    function x(t) { return Math.max(0, ((t - t0) / (t1 - t0)) * W).toFixed(1); }
    var rate = [], share = [];
    s.forEach(function (p) {
      rate.push(x(p.t) + ',' + (H - (p.decisionsPerSecond / top) * (H - 4) - 2).toFixed(1));
      if (p.lightweightShare !== null) share.push(x(p.t) + ',' + (H - p.lightweightShare * (H - 4) - 2).toFixed(1));
    });
    svg.appendChild(line(rate, '#2563eb'));
    if (share.length) svg.appendChild(line(share, '#16a34a'));
    set('chart-max', num(max));
  }

  function render(doc) {
    set('health', doc.health === 'SERVING' ? 'serving' : 'not serving');
    cls('health', doc.health === 'SERVING' ? 'ok' : 'bad');
    set('updated', 'updated ' + new Date(doc.time).toLocaleTimeString());
    var now = doc.now;
    set('rate', now ? num(now.decisionsPerSecond) : '–');
    set('decisions', num(doc.totals.decisions, 0));
    set('share', now ? pct(now.lightweightShare) : '–');
    set('share-total', doc.totals.decisions > 0 ? pct(doc.totals.lightweight / doc.totals.decisions) : '–');
    set('dlq-rate', now ? num(now.dlqPerSecond, 2) + ' /s' : '–');
    cls('dlq-rate', now && now.dlqPerSecond > 0 ? 'warn' : '');
    set('dlq', num(doc.totals.dlq, 0));
    set('p50', doc.endToEnd ? ms(doc.endToEnd.p50Ms) : '–');
    set('p99', doc.endToEnd ? ms(doc.endToEnd.p99Ms) : '–');
    var b = doc.breaker.state;
    set('breaker', b.replace('_', '-'));
    cls('breaker', b === 'closed' ? 'ok' : b === 'open' ? 'bad' : 'warn');
    set('trips', num(doc.breaker.trips, 0));
    set('backlog', doc.logBacklog === null ? 'n/a' : num(doc.logBacklog, 0));
    set('lag', doc.consumerLag === null ? '–' : num(doc.consumerLag, 0));
    set('model', doc.model.version + (doc.model.calibrated ? '' : ' (uncalibrated)'));
    set('t-conf', num(doc.thresholds.confidence, 3));
    set('t-unc', num(doc.thresholds.maxUncertainty, 3));

    var cov = $('coverage');
    if (doc.coverage.length) {
      while (cov.firstChild) cov.removeChild(cov.firstChild);
      doc.coverage.forEach(function (c) {
        var p = document.createElement('p');
        p.className = 'big' + (c.drifting ? ' bad' : '');
        p.textContent = pct(c.coverage);
        var q = document.createElement('p');
        q.className = 'muted';
        q.textContent = c.version + ': target ' + pct(c.target) + ' over ' + num(c.labeled, 0) + ' labelled' + (c.drifting ? ' — DRIFTING' : '');
        cov.appendChild(p);
        cov.appendChild(q);
      });
    }

    var cost = doc.cost;
    $('cost-card').hidden = !cost;
    if (cost) {
      set('savings', num(cost.savings, 4) + ' (' + pct(cost.savingsShare) + ')');
      set('spend', num(cost.spend, 4));
      set('all-heavy', num(cost.allHeavyweightSpend, 4));
    }

    var fleet = doc.fleet || [];
    $('fleet-card').hidden = fleet.length < 2;
    var body = $('fleet');
    while (body.firstChild) body.removeChild(body.firstChild);
    fleet.forEach(function (r) {
      var tr = document.createElement('tr');
      [r.id, r.modelVersion, r.health || '–', num(r.decisionsPerSecond), pct(r.lightweightShare)].forEach(function (v) {
        var td = document.createElement('td');
        td.textContent = v;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    chart(doc);
  }

  function refresh() {
    fetch('/status.json', { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(render)
      .catch(function (err) { set('health', 'unreachable'); cls('health', 'bad'); set('updated', String(err && err.message || err)); })
      .then(function () { setTimeout(refresh, 2000); });
  }
  refresh();
})();
`;

const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#2563eb"/><path d="M4 11 L8 4 L12 11" fill="none" stroke="#fff" stroke-width="2"/></svg>';

/** The page's paths for the HTTP server: /, /status.css, /status.js and /status.json. */
export function statusRoutes(tracker: StatusTracker): Record<string, () => Promise<HttpReply> | HttpReply> {
  const headers = { 'content-security-policy': STATUS_CSP, 'referrer-policy': 'no-referrer' };
  return {
    '/': () => ({ body: STATUS_HTML, type: 'text/html; charset=utf-8', headers }),
    '/favicon.svg': () => ({ body: FAVICON, type: 'image/svg+xml', headers }),
    '/status.css': () => ({ body: STATUS_CSS, type: 'text/css; charset=utf-8', headers }),
    '/status.js': () => ({ body: STATUS_JS, type: 'text/javascript; charset=utf-8', headers }),
    '/status.json': async () => {
      try {
        return { body: JSON.stringify(await tracker.document()), type: 'application/json', headers };
      } catch (err) {
        // Before the engine is loaded (start-up) there is nothing to report yet.
        return { status: 503, body: JSON.stringify({ error: errorMessage(err) }), type: 'application/json', headers };
      }
    },
  };
}
