// The live page in a real browser: Debian's chromium driven by
// playwright-core, against the real chainpulse debug binary on ephemeral
// ports, fed demo-shaped traffic through the official OpenTelemetry JS SDK.
//
// Checks that the page shows the chains with the same numbers as the KPI API
// (requests, errors, error rate, P50/P95/P99, cost, cost per request, KPI
// statuses), that its charts and side panels are there, that it updates
// after more traffic, that it makes no request to another origin, logs no
// console error and has no failed request, and that a chain named with
// markup is shown as text. Saves a screenshot to target/page-test/page.png.
//
//   CHAINPULSE_BIN   binary to test   [target/debug/chainpulse]
//   CHROMIUM         browser          [/usr/bin/chromium]
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Traffic, SERVICE } from './traffic.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.CHAINPULSE_BIN || path.join(ROOT, 'target/debug/chainpulse');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTEFACTS = path.join(ROOT, 'target/page-test');
const XSS_CHAIN = '<img src=x onerror="window.__xss=1">';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

// Starts `chainpulse` on ephemeral loopback ports; resolves with the bound
// addresses read from its "chainpulse listening" log line.
function startChainpulse() {
  const child = spawn(BIN, ['--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', 'run'], {
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanups.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('chainpulse did not start:\n' + log)), 30000);
    const onData = (d) => {
      log += d.toString().replace(/\x1b\[[0-9;]*m/g, '');
      const m = /chainpulse listening.*?grpc=(\S+) http=(\S+) metrics=(\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ child, grpc: m[1], http: m[2], metrics: m[3] });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`chainpulse exited (${code}):\n${log}`)));
  });
}

async function api(base, p) {
  const r = await fetch(base + p);
  assert.equal(r.status, 200, `${p}: HTTP ${r.status}`);
  return r.json();
}

async function until(what, f, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    last = await f();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// The number in a rendered figure ("0.812 s", "3.67 %", "$0.0123", "42").
function num(text) {
  const m = /-?\d+(?:\.\d+)?/.exec(text.replace(/,/g, ''));
  return m ? Number(m[0]) : null;
}
// Rendered value equals the API value up to the display's rounding.
function sameFigure(rendered, value, scale, decimals, what) {
  if (value === null || value === undefined) {
    assert.equal(rendered, '—', `${what}: API has no value, page shows ${rendered}`);
    return;
  }
  const shown = num(rendered);
  assert.notEqual(shown, null, `${what}: no number in ${JSON.stringify(rendered)}`);
  const tolerance = 0.5 * 10 ** -decimals + 1e-12;
  assert.ok(Math.abs(shown - value * scale) <= tolerance, `${what}: page shows ${rendered}, API says ${value}`);
}

// Compares every chain card with /api/v1/kpis (same window as the page).
async function comparePageWithApi(page, base, window) {
  const kpis = await api(base, `/api/v1/kpis?window=${window}`);
  const cards = await page.$$eval('article.chain', (els) => els.map((e) => {
    const f = (name) => e.querySelector(`[data-field="${name}"]`)?.textContent ?? null;
    const checks = {};
    for (const row of e.querySelectorAll('tr[data-kpi]')) {
      checks[row.dataset.kpi] = { value: row.querySelector('[data-field="value"]').textContent, status: row.querySelector('.status').textContent };
    }
    return {
      service: e.dataset.service, chain: e.dataset.chain, name: e.querySelector('.chain-name').textContent,
      requests: f('requests'), errors: f('errors'), error_rate: f('error_rate'), p50: f('p50'), p95: f('p95'), p99: f('p99'),
      cost: f('cost_usd'), cost_per_request: f('cost_per_request_usd'), tokens: f('tokens'), unpriced: f('unpriced_requests'),
      charts: e.querySelectorAll('figure.chart svg').length, checks,
    };
  }));
  assert.deepEqual(cards.map((c) => [c.service, c.chain]), kpis.chains.map((c) => [c.service, c.chain]), 'same chains, same order');
  for (const [i, c] of kpis.chains.entries()) {
    const card = cards[i];
    const what = `${c.service}/${c.chain}`;
    assert.equal(card.name, c.chain, `${what}: name shown as text`);
    assert.equal(num(card.requests), c.requests, `${what}: requests`);
    assert.equal(num(card.errors), c.errors, `${what}: errors`);
    sameFigure(card.error_rate, c.error_rate, 100, 2, `${what} error rate`);
    sameFigure(card.p50, c.latency_seconds.p50, 1, 3, `${what} P50`);
    sameFigure(card.p95, c.latency_seconds.p95, 1, 3, `${what} P95`);
    sameFigure(card.p99, c.latency_seconds.p99, 1, 3, `${what} P99`);
    sameFigure(card.cost, c.cost_usd, 1, 4, `${what} cost`);
    sameFigure(card.cost_per_request, c.cost_per_request_usd, 1, 4, `${what} cost per request`);
    assert.equal(card.tokens, `${c.tokens_input} / ${c.tokens_output}`, `${what}: tokens`);
    assert.equal(num(card.unpriced), c.unpriced_requests, `${what}: unpriced requests`);
    assert.equal(card.charts, 4, `${what}: four charts`);
    for (const k of c.kpis) {
      const shown = card.checks[k.kpi];
      if (k.status === 'no_data' && c.requests > 0) continue;
      assert.ok(shown, `${what}: KPI ${k.kpi} shown`);
      assert.equal(shown.status, { pass: 'met', fail: 'not met', no_data: 'no data' }[k.status], `${what}: ${k.kpi} status`);
      if (k.kpi !== 'throughput_rps') {
        const scale = k.kpi.startsWith('latency') ? 1 : 100;
        sameFigure(shown.value, k.value, scale, k.kpi.startsWith('latency') ? 3 : 2, `${what} ${k.kpi}`);
      }
    }
  }
  return kpis;
}

// Waits for the page's next complete refresh after now.
async function nextRefresh(page) {
  const n = Number(await page.getAttribute('#updated', 'data-refreshes')) || 0;
  await page.waitForFunction((k) => Number(document.getElementById('updated').dataset.refreshes || 0) > k, n, { timeout: 15000 });
}

test('the live page shows the KPI API\'s numbers, updates, and stays safe', { timeout: 120000 }, async () => {
  const cp = await startChainpulse();
  const base = `http://${cp.metrics}`;
  const traffic = new Traffic(cp.http);
  cleanups.push(() => traffic.shutdown());

  // Burst 1, plus one request whose chain name is markup, plus one
  // malformed export (the health panel must count it).
  const sent = traffic.send(120);
  traffic.request(XSS_CHAIN, { latency: 0.3 });
  sent[XSS_CHAIN] = 1;
  await traffic.flush();
  const bad = await fetch(`http://${cp.http}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: 'not protobuf' });
  assert.equal(bad.status, 400);
  const count = (kpis) => Object.fromEntries(kpis.chains.map((c) => [c.chain, c.requests]));
  await until('burst 1 in the KPI API', async () => {
    const k = await api(base, '/api/v1/kpis?window=5m');
    return JSON.stringify(count(k)) === JSON.stringify(Object.fromEntries(Object.keys(sent).sort().map((c) => [c, sent[c]]))) ? k : null;
  });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  cleanups.push(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  page.on('request', (r) => { if (!r.url().startsWith(base + '/')) problems.push(`request to another origin: ${r.url()}`); });

  const response = await page.goto(`${base}/?refresh=1`);
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  await page.waitForSelector('article.chain');
  await nextRefresh(page);

  const first = await comparePageWithApi(page, base, '5m');
  // The demo's chains are there, and the markup chain is text, not an element.
  const shownChains = first.chains.map((c) => c.chain);
  for (const c of ['rag_query', 'summarize', XSS_CHAIN]) assert.ok(shownChains.includes(c), `chain ${c} shown`);
  assert.equal(first.chains.find((c) => c.chain === 'rag_query').service, SERVICE);
  assert.equal(await page.locator('article.chain .chain-name', { hasText: XSS_CHAIN }).count(), 1);
  assert.equal(await page.locator('main img').count(), 0, 'no <img> element from the chain name');
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'the chain name\'s handler did not run');

  // Charts: the history behind them adds up to the 1 h KPI window.
  const history = await api(base, '/api/v1/history?window=1h');
  const hour = await api(base, '/api/v1/kpis?window=1h');
  for (const c of hour.chains) {
    const h = history.chains.find((x) => x.service === c.service && x.chain === c.chain);
    assert.equal(h.points.reduce((s, p) => s + p.requests, 0), c.requests, `${c.chain}: history points add up to the 1h window`);
  }
  assert.match(await page.textContent('#chains-note'), /10 slots of 6 min/);
  const polylines = await page.locator('article.chain figure.chart svg circle, article.chain figure.chart svg polyline').count();
  assert.ok(polylines > 0, 'the charts draw something');

  // Side panels: models (with the unpriced fine-tune), top spenders, health.
  const models = await page.textContent('#models');
  for (const m of ['gpt-4o-mini', 'gpt-4o']) assert.ok(models.includes(m), `model ${m} listed`);
  const health = await api(base, '/api/v1/health');
  const unpriced = Object.keys(health.pricing.unpriced_calls_by_model);
  for (const m of unpriced) assert.ok((await page.textContent('#unpriced')).includes(m), `unpriced model ${m} listed`);
  assert.ok((await page.textContent('#top')).includes('rag_query'));
  assert.equal(health.ingest.requests_rejected_by_reason.malformed_protobuf, 1);
  const healthText = await page.textContent('#health');
  assert.match(healthText, /requests rejected1 \(malformed_protobuf 1\)/);
  assert.ok(healthText.includes(`spans received${health.ingest.spans_received}`), 'spans received as in /api/v1/health');

  // Recent requests: rendered when the KPI API carries them (the contract).
  const withRecent = first.chains.filter((c) => c.recent);
  assert.ok(withRecent.length > 0, 'the KPI API lists recent requests for the chains');
  assert.equal(await page.isVisible('#recent-section'), withRecent.length > 0);
  const recentRows = await page.$$eval('#recent .recent-chain', (els) => els.map((e) => [e.dataset.service, e.dataset.chain, e.querySelectorAll('tr').length]));
  for (const c of withRecent) {
    const lists = [c.recent.slowest, c.recent.costliest, c.recent.failed];
    // One header row per non-empty list, one row per request.
    const want = lists.reduce((s, l) => s + l.length + (l.length ? 1 : 0), 0);
    const got = recentRows.find(([s, ch]) => s === c.service && ch === c.chain);
    assert.equal(got && got[2], want, `${c.chain}: recent request rows`);
  }

  // Burst 2: the page updates by itself to the new numbers.
  const before = first.chains.find((c) => c.chain === 'rag_query').requests;
  const more = traffic.send(80);
  await traffic.flush();
  await until('burst 2 in the KPI API', async () => {
    const k = await api(base, '/api/v1/kpis?window=5m');
    return k.chains.find((c) => c.chain === 'rag_query').requests === before + more.rag_query;
  });
  await page.waitForFunction((n) => {
    const card = [...document.querySelectorAll('article.chain')].find((e) => e.dataset.chain === 'rag_query');
    return card && Number(card.querySelector('[data-field="requests"]').textContent) === n;
  }, before + more.rag_query, { timeout: 15000 });
  await nextRefresh(page);
  await comparePageWithApi(page, base, '5m');

  // Another window: the selector re-reads the API.
  await page.selectOption('#kpi-window', '1h');
  await page.selectOption('#chart-window', '1m');
  await page.waitForFunction(() => /KPIs: the last hour; charts: the last minute as 6 slots of 10 s/.test(document.getElementById('chains-note').textContent), null, { timeout: 15000 });
  await nextRefresh(page);
  await comparePageWithApi(page, base, '1h');

  // The real `recent` lists were checked above; hostile ones are checked
  // here: a second page gets the real KPI answer with the `recent` field
  // replaced by the test — on one chain, one request with an http trace
  // link, one whose trace_url is a javascript: URL and whose error type is
  // markup (neither may become live); the other chains' lists removed.
  {
    const page2 = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page2.on('pageerror', (e) => problems.push(`page 2 error: ${e.message}`));
    page2.on('console', (m) => { if (m.type() === 'error') problems.push(`page 2 console: ${m.text()}`); });
    const R = (over) => ({
      trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331', service: SERVICE, chain: 'rag_query',
      ended_at_unix_ms: Date.now(), duration_seconds: 1.234, cost_usd: 0.0012, error_type: null, trace_url: null, ...over,
    });
    await page2.route('**/api/v1/kpis?*', async (route) => {
      const real = await route.fetch();
      const body = await real.json();
      for (const c of body.chains) {
        if (c.chain !== 'rag_query') { delete c.recent; continue; }
        c.recent = {
          slowest: [R({ trace_url: 'http://127.0.0.1:16686/trace/0af7651916cd43dd8448eb211c80319c' }), R({ duration_seconds: 0.5, cost_usd: null })],
          costliest: [],
          failed: [R({ error_type: '<b>RateLimitError</b>', trace_url: 'javascript:window.__xss=2' })],
        };
      }
      await route.fulfill({ response: real, json: body });
    });
    // A token given as #token=… goes with every API request (for a metrics
    // port behind bearer auth), and leaves the address bar.
    const auth = [];
    page2.on('request', (r) => { if (r.url().includes('/api/v1/')) auth.push(r.headers().authorization); });
    await page2.goto(`${base}/#token=s3cret%20t`);
    await page2.waitForSelector('#recent .recent-chain');
    const recent = await page2.$$eval('#recent .recent-chain', (els) => els.map((e) => ({
      chain: e.dataset.chain,
      rows: e.querySelectorAll('tr').length,
      links: [...e.querySelectorAll('a')].map((a) => a.getAttribute('href')),
      text: e.textContent,
      bold: e.querySelectorAll('b').length,
    })));
    assert.equal(recent.length, 1);
    assert.equal(recent[0].chain, 'rag_query');
    assert.equal(recent[0].rows, 2 + 1 + 1 + 1, 'two slowest and one failed, each table with a header');
    assert.deepEqual(recent[0].links, ['http://127.0.0.1:16686/trace/0af7651916cd43dd8448eb211c80319c'], 'only the http trace link is a link');
    assert.ok(recent[0].text.includes('<b>RateLimitError</b>'), 'error type shown as text');
    assert.equal(recent[0].bold, 0);
    assert.ok(recent[0].text.includes('1.234 s') && recent[0].text.includes('$0.0012') && recent[0].text.includes('unpriced'));
    assert.equal(await page2.evaluate(() => window.__xss), undefined);
    assert.ok(auth.length >= 9 && auth.every((a) => a === 'Bearer s3cret t'), `bearer token on every API request: ${auth}`);
    assert.equal(await page2.evaluate(() => location.hash), '');
    await page2.close();
  }

  mkdirSync(ARTEFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTEFACTS, 'page.png'), fullPage: true });
  assert.deepEqual(problems, [], 'no console errors, failed or cross-origin requests');
  const size = (await Promise.all(['/', '/assets/page.js', '/assets/page.css'].map(async (p) => (await (await fetch(base + p)).arrayBuffer()).byteLength))).reduce((a, b) => a + b, 0);
  console.log(`page assets: ${size} bytes; screenshot: ${path.join(ARTEFACTS, 'page.png')}`);
  assert.ok(size < 60 * 1024, `page is ${size} bytes`);
});
