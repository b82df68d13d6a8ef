// chainpulse live page: polls the JSON APIs on this origin and draws them.
// Every string from the data goes into the page as text (textContent or a
// text node), never as markup; links are made only from http(s) URLs.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const params = new URLSearchParams(location.search);
// ?refresh=N polls every N seconds (at least 1); default 5.
const REFRESH_MS = Math.max(1, Number(params.get('refresh')) || 5) * 1000;
const WINDOW_SECS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600 };
const WINDOW_NAMES = { '1m': 'the last minute', '5m': 'the last 5 min', '15m': 'the last 15 min', '1h': 'the last hour', all: 'since start' };
const KPI_NAMES = {
  latency_p50_seconds: 'P50 latency', latency_p95_seconds: 'P95 latency', latency_p99_seconds: 'P99 latency',
  error_rate: 'error rate', availability: 'availability', throughput_rps: 'throughput',
};
const STATUS_TEXT = { pass: 'met', fail: 'not met', no_data: 'no data' };

// A bearer token given as #token=… is kept for this tab and sent with every
// API request (for a metrics port behind bearer auth).
(function keepToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('chainpulse-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
})();

async function getJSON(path) {
  const headers = {};
  const token = sessionStorage.getItem('chainpulse-token');
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(path, { headers, cache: 'no-store' });
  if (!r.ok) {
    let msg = 'HTTP ' + r.status;
    try { msg += ': ' + (await r.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(path + ' — ' + msg);
  }
  return r.json();
}

// el('td', {class: 'num'}, 'text', childNode, …): attributes by name, children
// as text nodes or nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)));
  return e;
}
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function replace(id, ...nodes) { document.getElementById(id).replaceChildren(...nodes); }

const NONE = '—';
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fmt = {
  count: (v) => (isNum(v) ? String(Math.round(v)) : NONE),
  sec: (v) => (isNum(v) ? v.toFixed(3) + ' s' : NONE),
  pct: (v) => (isNum(v) ? (v * 100).toFixed(2) + ' %' : NONE),
  rps: (v) => (isNum(v) ? v.toFixed(2) + ' req/s' : NONE),
  usd: (v) => (isNum(v) ? '$' + v.toFixed(4) : NONE),
};
function fmtKpi(kpi, v) {
  if (kpi.startsWith('latency')) return fmt.sec(v);
  if (kpi === 'throughput_rps') return fmt.rps(v);
  return fmt.pct(v);
}
function fmtTime(ms) {
  const d = new Date(ms);
  return isNaN(d) ? NONE : d.toLocaleTimeString([], { hour12: false });
}
function fmtSpan(sec) {
  return sec % 60 === 0 ? sec / 60 + ' min' : sec + ' s';
}
// Only http(s) URLs become links: a trace_url is configuration, but the
// parts substituted into it come from spans.
function safeUrl(u) {
  if (typeof u !== 'string') return null;
  try {
    const url = new URL(u);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch (_) {
    return null;
  }
}
const chainKey = (c) => JSON.stringify([c.service, c.chain]);

// ---- charts -------------------------------------------------------------

const W = 240, H = 64, PAD = 4;
// series: [{key: point => value|null, cls}], fmtv: value => text.
// `slots` is the window's number of slots: points sit at their slot, the
// newest at the right edge, so a chain seen for two minutes fills only the
// right end of the last hour.
function chart(title, points, slotSec, slots, series, fmtv) {
  const values = points.flatMap((p) => series.map((s) => s.key(p))).filter(isNum);
  const max = values.length ? Math.max(...values) : 0;
  const top = max > 0 ? max : 1;
  const n = points.length;
  const total = Math.max(slots || n, n, 2);
  const x = (i) => PAD + ((total - n + i) * (W - 2 * PAD)) / (total - 1);
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
  g.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: H - PAD, y2: H - PAD }));
  series.forEach((s, si) => {
    let run = [];
    const flush = () => {
      if (run.length === 1) g.append(svg('circle', { class: s.cls || 's' + si, cx: run[0][0], cy: run[0][1], r: 2 }));
      else if (run.length > 1) g.append(svg('polyline', { class: s.cls || 's' + si, points: run.map((p) => p.join(',')).join(' ') }));
      run = [];
    };
    points.forEach((p, i) => {
      const v = s.key(p);
      if (isNum(v)) run.push([x(i).toFixed(1), y(v).toFixed(1)]);
      else flush();
    });
    flush();
  });
  // One hover band per slot, its tooltip the slot's figures.
  const band = (W - 2 * PAD) / (total - 1);
  points.forEach((p, i) => {
    const tip = fmtTime(p.start_unix_ms) + ' (' + fmtSpan(slotSec) + '): ' +
      series.map((s) => (s.name ? s.name + ' ' : '') + fmtv(s.key(p))).join(', ') + ' · ' + p.requests + ' requests';
    g.append(svg('rect', { class: 'hover', x: Math.max(0, x(i) - band / 2), y: 0, width: band, height: H }, svg('title', {}, tip)));
  });
  const legend = el('span', { class: 'legend' });
  series.forEach((s, si) => { if (s.name) legend.append(el('span', { class: 's' + si }, s.name + ' ')); });
  return el('figure', { class: 'chart' },
    el('figcaption', {}, el('span', {}, title, ' ', legend), el('span', {}, 'max ' + fmtv(values.length ? max : null))),
    g);
}

function chainCharts(h, slotSec, slots) {
  const pts = h ? h.points : [];
  const lat = (q) => (p) => p.latency_seconds[q];
  return el('div', { class: 'charts' },
    chart('latency', pts, slotSec, slots, [
      { key: lat('p50'), name: 'P50' }, { key: lat('p95'), name: 'P95' }, { key: lat('p99'), name: 'P99' }], fmt.sec),
    chart('throughput', pts, slotSec, slots, [{ key: (p) => p.throughput_rps, cls: 'one' }], fmt.rps),
    chart('error rate', pts, slotSec, slots, [{ key: (p) => p.error_rate, cls: 'one' }], fmt.pct),
    chart('cost per ' + fmtSpan(slotSec), pts, slotSec, slots, [{ key: (p) => (p.covered_seconds > 0 ? p.cost_usd : null), cls: 'one' }], fmt.usd));
}

// ---- sections -----------------------------------------------------------

function renderChains(kpis, history) {
  const hist = new Map(history.chains.map((h) => [chainKey(h), h]));
  const slotSec = history.slot_seconds;
  const slots = slotSec ? Math.round(WINDOW_SECS[history.window] / slotSec) : 0;
  document.getElementById('chains-note').textContent =
    'KPIs: ' + WINDOW_NAMES[kpis.window] + '; charts: ' + WINDOW_NAMES[history.window] +
    (slotSec ? ' as ' + slots + ' slots of ' + fmtSpan(slotSec) + ', one point per slot (the newest still filling)' : '');
  if (!kpis.chains.length) {
    replace('chains', el('p', { class: 'muted' }, 'No requests yet.'));
    return;
  }
  replace('chains', ...kpis.chains.map((c) => {
    const checks = c.kpis.filter((k) => k.status !== 'no_data' || c.requests > 0);
    const failed = c.kpis.filter((k) => k.status === 'fail').length;
    const withData = c.kpis.filter((k) => k.status !== 'no_data').length;
    const overall = failed ? 'fail' : withData ? 'pass' : 'no_data';
    const badgeText = failed ? failed + ' not met' : withData ? 'all targets met' : 'no data';
    const table = el('table', { class: 'kpis' },
      el('tr', {}, el('th', {}, 'KPI'), el('th', { class: 'num' }, 'value'), el('th', { class: 'num' }, 'target'), el('th', {}, '')),
      ...(checks.length ? checks : c.kpis).map((k) => el('tr', { 'data-kpi': k.kpi },
        el('td', {}, KPI_NAMES[k.kpi] || k.kpi),
        el('td', { class: 'num', 'data-field': 'value' }, fmtKpi(k.kpi, k.value)),
        el('td', { class: 'num' }, k.comparison.replace('<=', '≤').replace('>=', '≥') + ' ' + fmtKpi(k.kpi, k.target)),
        el('td', { class: 'status ' + k.status }, STATUS_TEXT[k.status] || k.status))));
    const stat = (name, field, text) => [el('dt', {}, name), el('dd', { 'data-field': field }, text)];
    const stats = el('dl', { class: 'stats' },
      ...stat('requests', 'requests', fmt.count(c.requests)),
      ...stat('errors', 'errors', fmt.count(c.errors)),
      ...stat('error rate', 'error_rate', fmt.pct(c.error_rate)),
      ...stat('throughput', 'throughput_rps', fmt.rps(c.throughput_rps)),
      ...stat('P50 / P95 / P99', 'latency', ''),
      ...stat('cost', 'cost_usd', fmt.usd(c.cost_usd)),
      ...stat('cost / request', 'cost_per_request_usd', fmt.usd(c.cost_per_request_usd)),
      ...stat('tokens in / out', 'tokens', fmt.count(c.tokens_input) + ' / ' + fmt.count(c.tokens_output)),
      ...stat('unpriced requests', 'unpriced_requests', fmt.count(c.unpriced_requests)),
      ...stat('cache hit rate', 'cache_hit_rate', fmt.pct(c.cache_hit_rate)),
      ...stat('window covered', 'covered_seconds', c.covered_seconds + ' s'));
    const lat = stats.querySelector('[data-field="latency"]');
    lat.append(el('span', { 'data-field': 'p50' }, fmt.sec(c.latency_seconds.p50)), ' / ',
      el('span', { 'data-field': 'p95' }, fmt.sec(c.latency_seconds.p95)), ' / ',
      el('span', { 'data-field': 'p99' }, fmt.sec(c.latency_seconds.p99)));
    return el('article', { class: 'chain', 'data-service': c.service, 'data-chain': c.chain },
      el('div', { class: 'chain-head' },
        el('span', { class: 'chain-name' }, c.chain),
        el('span', { class: 'muted' }, 'service ' + c.service),
        el('span', { class: 'badge ' + overall }, badgeText)),
      el('div', { class: 'chain-body' }, table, stats, chainCharts(hist.get(chainKey(c)), slotSec, slots)));
  }));
}

function traceCell(r) {
  const href = safeUrl(r.trace_url);
  const id = typeof r.trace_id === 'string' ? r.trace_id : '';
  const label = id.slice(0, 16) + (id.length > 16 ? '…' : '');
  return href ? el('a', { href, target: '_blank', rel: 'noopener noreferrer', title: id }, label) : el('span', { title: id }, label);
}

function renderRecent(kpis) {
  const chains = kpis.chains.filter((c) => c.recent && typeof c.recent === 'object');
  document.getElementById('recent-section').hidden = chains.length === 0;
  if (!chains.length) return;
  const list = (title, rows) => el('div', {},
    el('h3', {}, title),
    rows && rows.length
      ? el('table', {},
        el('tr', {}, el('th', {}, 'ended'), el('th', { class: 'num' }, 'duration'), el('th', { class: 'num' }, 'cost'), el('th', {}, 'error'), el('th', {}, 'trace')),
        ...rows.map((r) => el('tr', {},
          el('td', {}, fmtTime(r.ended_at_unix_ms)),
          el('td', { class: 'num' }, fmt.sec(r.duration_seconds)),
          el('td', { class: 'num' }, r.cost_usd === null ? 'unpriced' : fmt.usd(r.cost_usd)),
          el('td', {}, r.error_type || ''),
          el('td', {}, traceCell(r)))))
      : el('p', { class: 'muted' }, 'none'));
  replace('recent', ...chains.map((c) => el('div', { class: 'recent-chain', 'data-service': c.service, 'data-chain': c.chain },
    el('h3', {}, c.chain, ' ', el('span', { class: 'muted' }, 'service ' + c.service)),
    el('div', { class: 'recent-lists' },
      list('slowest', c.recent.slowest), list('costliest', c.recent.costliest), list('failed', c.recent.failed)))));
}

function topTable(rows, cols) {
  if (!rows.length) return el('p', { class: 'muted' }, 'none yet');
  return el('table', {},
    el('tr', {}, ...cols.map((c) => el('th', { class: c.num ? 'num' : undefined }, c.name))),
    ...rows.map((r) => el('tr', {}, ...cols.map((c) => el('td', { class: c.num ? 'num' : 'key' }, c.value(r))))));
}
// "≤ x" when Space-Saving may have over-counted the key.
const est = (f) => (e) => (e.error_bound > 0 ? '≤ ' : '') + f(e.estimate);

function renderModels(cost, tokens, calls) {
  const models = new Map();
  const row = (k) => models.get(k) || models.set(k, { key: k }).get(k);
  for (const e of calls.entries) row(e.key).calls = e;
  for (const e of tokens.entries) row(e.key).tokens = e;
  for (const e of cost.entries) row(e.key).cost = e;
  const rows = [...models.values()].sort((a, b) => ((b.cost && b.cost.estimate) || 0) - ((a.cost && a.cost.estimate) || 0));
  const cell = (f, fmtv) => (r) => (r[f] ? est(fmtv)(r[f]) : NONE);
  replace('models', topTable(rows, [
    { name: 'model', value: (r) => r.key },
    { name: 'calls', num: true, value: cell('calls', fmt.count) },
    { name: 'tokens', num: true, value: cell('tokens', fmt.count) },
    { name: 'cost', num: true, value: cell('cost', fmt.usd) }]));
}

function renderTop(lists) {
  replace('top', ...lists.flatMap(([title, list]) => [
    el('h3', {}, title),
    topTable(list.entries, [{ name: 'key', value: (e) => e.key }, { name: 'cost', num: true, value: est(fmt.usd) }]),
  ]));
}

function renderHealth(h) {
  const status = document.getElementById('health-status');
  status.replaceChildren(el('span', { class: 'badge ' + (h.status === 'ok' ? 'pass' : 'fail') }, h.status));
  const unpriced = Object.entries(h.pricing.unpriced_calls_by_model).sort((a, b) => b[1] - a[1]);
  replace('unpriced', unpriced.length
    ? topTable(unpriced, [{ name: 'model', value: (r) => r[0] }, { name: 'calls', num: true, value: (r) => fmt.count(r[1]) }])
    : el('p', { class: 'muted' }, 'none: every call so far was priced'));
  const byReason = (o) => Object.entries(o).map(([k, v]) => k + ' ' + fmt.count(v)).join(', ');
  const i = h.ingest, a = h.assembly, d = h.dropped_spans;
  const rows = [
    ['export requests', fmt.count(i.export_requests) + (Object.keys(i.export_requests_by_protocol).length ? ' (' + byReason(i.export_requests_by_protocol) + ')' : '')],
    ['spans received', fmt.count(i.spans_received)],
    ['requests rejected', fmt.count(i.requests_rejected) + (i.requests_rejected ? ' (' + byReason(i.requests_rejected_by_reason) + ')' : '')],
    ['in-flight requests', i.inflight_requests + ' of ' + i.max_inflight_requests],
    ['in-flight memory', fmtBytes(i.inflight_bytes) + ' of ' + fmtBytes(i.inflight_bytes_limit)],
    ['connections open', byReason(i.connections) || '0'],
    ['connections refused', fmt.count(i.connections_refused)],
    ['traces / spans held', fmt.count(a.traces_held) + ' / ' + fmt.count(a.spans_held)],
    ['assembly evictions', byReason(a.evictions_by_reason) || '0'],
    ['late spans', fmt.count(a.late_spans)],
    ['spans rejected (invalid)', fmt.count(d.rejected_invalid) + (d.rejected_invalid ? ' (' + byReason(d.rejected_by_reason) + ')' : '')],
    ['spans not forwarded', 'failed ' + fmt.count(d.forward_failed) + ', dropped ' + fmt.count(d.forward_dropped)],
    ['label cardinality', 'overflowed ' + fmt.count(h.cardinality.overflowed) + (h.cardinality.families_at_limit.length ? ', at limit: ' + h.cardinality.families_at_limit.join(', ') : '')],
  ];
  const nodes = [];
  if (h.problems.length) nodes.push(el('ul', { class: 'problems' }, ...h.problems.map((p) => el('li', {}, p))));
  nodes.push(el('dl', { class: 'stats' }, ...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
  nodes.push(el('h3', {}, 'Forwarding'));
  nodes.push(h.forwarding.length
    ? topTable(h.forwarding, [
      { name: 'destination', value: (f) => f.destination },
      { name: 'queue', num: true, value: (f) => fmt.count(f.queue_spans) + ' spans, ' + fmtBytes(f.queue_bytes) + ' of ' + fmtBytes(f.queue_max_bytes) },
      { name: 'oldest', num: true, value: (f) => f.oldest_age_seconds.toFixed(0) + ' s' },
      { name: 'sent', num: true, value: (f) => fmt.count(f.sent_spans) },
      { name: 'failed / dropped', num: true, value: (f) => fmt.count(f.failed_spans) + ' / ' + fmt.count(f.dropped_spans) }])
    : el('p', { class: 'muted' }, 'off (no destination configured)'));
  replace('health', ...nodes);
}
function fmtBytes(b) {
  if (!isNum(b)) return NONE;
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : String(b)) + ' ' + units[i];
}

// ---- polling ------------------------------------------------------------

const kpiSelect = document.getElementById('kpi-window');
const chartSelect = document.getElementById('chart-window');
let timer = null;
let busy = false;

async function refresh() {
  if (busy) return;
  busy = true;
  clearTimeout(timer);
  try {
    const win = encodeURIComponent(kpiSelect.value);
    const [kpis, history, cost, tokens, calls, users, sessions, chains, health] = await Promise.all([
      getJSON('/api/v1/kpis?window=' + win),
      getJSON('/api/v1/history?window=' + encodeURIComponent(chartSelect.value)),
      getJSON('/api/v1/top?by=model&metric=cost&n=20'),
      getJSON('/api/v1/top?by=model&metric=tokens&n=20'),
      getJSON('/api/v1/top?by=model&metric=requests&n=20'),
      getJSON('/api/v1/top?by=user&metric=cost&n=5'),
      getJSON('/api/v1/top?by=session&metric=cost&n=5'),
      getJSON('/api/v1/top?by=chain&metric=cost&n=5'),
      getJSON('/api/v1/health'),
    ]);
    renderChains(kpis, history);
    renderRecent(kpis);
    renderModels(cost, tokens, calls);
    renderTop([['by user', users], ['by session', sessions], ['by chain', chains]]);
    renderHealth(health);
    document.getElementById('error').hidden = true;
    const updated = document.getElementById('updated');
    updated.textContent = 'updated ' + fmtTime(Date.now()) + ', every ' + REFRESH_MS / 1000 + ' s';
    updated.dataset.refreshes = String(Number(updated.dataset.refreshes || 0) + 1);
  } catch (e) {
    const banner = document.getElementById('error');
    banner.textContent = 'Could not refresh: ' + e.message + ' (retrying)';
    banner.hidden = false;
  } finally {
    busy = false;
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

kpiSelect.addEventListener('change', refresh);
chartSelect.addEventListener('change', refresh);
refresh();
