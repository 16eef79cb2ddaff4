/**
 * The admin port's status page: one self-contained HTML document (no build step, no framework) that polls
 * /status.json every second and shows, at a glance, the services and their state, connections, rates, and the recent
 * crashes and refusals. Every value from the server is put in the page as text, never as HTML.
 */

import type { StatusReport } from './metrics.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function esc(x: unknown): string {
  return String(x).replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

/** What the page shows before its script has run: the services as they are when it is served. */
type Initial = Partial<Pick<StatusReport, 'server' | 'services' | 'connections'>>;

function initialRows(initial: Initial): string {
  return (initial.services ?? [])
    .map(
      (x) =>
        `<tr data-service="${esc(x.name)}"><td>${esc(x.name)}</td><td class="${x.status === 'up' ? 'up' : 'down'}">${esc(x.status)}</td><td class="n">${esc(x.connections)}</td><td class="n">${esc(x.crashes)}</td><td class="n">${esc(x.restarts)}</td><td>${x.erlang === null ? '-' : x.erlang ? 'served' : 'not served'}</td></tr>`,
    )
    .join('');
}

/**
 * The page, with its script and style allowed by `nonce` (the Content-Security-Policy names it). `initial` is what it
 * shows before its script has run (the services are listed even with scripts off); the script then keeps it live.
 */
export function statusPage(nonce: string, initial: Initial = {}): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lib-chan</title>
<style nonce="${nonce}">
  :root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1d2430; --dim: #667085; --line: #e3e6eb;
          --up: #1a7f37; --down: #cf222e; --warn: #9a6700; }
  @media (prefers-color-scheme: dark) {
    :root { --bg: #0f1216; --card: #171b21; --fg: #e6e9ee; --dim: #8b95a5; --line: #262c35;
            --up: #3fb950; --down: #f85149; --warn: #d29922; }
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg);
         color: var(--fg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.4rem 1.2rem; padding: 1rem 1.5rem;
           border-bottom: 1px solid var(--line); background: var(--card); }
  header h1 { font-size: 1.2rem; margin: 0; }
  header span { color: var(--dim); }
  #state { font-weight: 600; }
  main { padding: 1.2rem 1.5rem; max-width: 1200px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 0.8rem; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.8rem 1rem; }
  .card b { display: block; font-size: 1.7rem; font-variant-numeric: tabular-nums; }
  .card span { color: var(--dim); font-size: 0.85rem; }
  h2 { font-size: 1rem; margin: 1.6rem 0 0.6rem; }
  table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line);
          border-radius: 8px; overflow: hidden; }
  th, td { text-align: left; padding: 0.45rem 0.8rem; border-bottom: 1px solid var(--line); }
  th { color: var(--dim); font-weight: 500; font-size: 0.85rem; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  tr:last-child td { border-bottom: none; }
  .up { color: var(--up); font-weight: 600; }
  .down { color: var(--down); font-weight: 600; }
  .crash, .down-event { color: var(--down); }
  .refused { color: var(--warn); }
  .empty { color: var(--dim); padding: 0.8rem; }
  time { color: var(--dim); font-variant-numeric: tabular-nums; white-space: nowrap; }
</style>
</head>
<body>
<header>
  <h1>lib-chan</h1>
  <span id="server">${esc(initial.server ?? 'connecting...')}</span>
  <span id="ports"></span>
  <span id="uptime"></span>
  <span id="state"></span>
</header>
<main>
  <div class="cards">
    <div class="card"><b id="connections">${esc(initial.connections?.open ?? '-')}</b><span>connections open</span></div>
    <div class="card"><b id="handshaking">${esc(initial.connections?.handshake ?? '-')}</b><span>in the handshake</span></div>
    <div class="card"><b id="in-rate">-</b><span>messages in / s</span></div>
    <div class="card"><b id="out-rate">-</b><span>messages out / s</span></div>
    <div class="card"><b id="refusals">-</b><span>refused handshakes</span></div>
    <div class="card"><b id="held">-</b><span>held in queues</span></div>
  </div>
  <h2>Services</h2>
  <table>
    <thead><tr><th>service</th><th>state</th><th class="n">connections</th><th class="n">crashes</th>
      <th class="n">restarts</th><th>Erlang port</th></tr></thead>
    <tbody id="services">${initialRows(initial)}</tbody>
  </table>
  <h2>Recent crashes and refusals</h2>
  <table>
    <thead><tr><th>when</th><th>what</th><th>service</th><th>detail</th></tr></thead>
    <tbody id="recent"></tbody>
  </table>
</main>
<script nonce="${nonce}">
'use strict';
const token = new URLSearchParams(location.search).get('token');
const statusUrl = 'status.json' + (token ? '?token=' + encodeURIComponent(token) : '');
const $ = (id) => document.getElementById(id);
let last = null;

function text(el, value) { el.textContent = String(value); }
function cell(row, value, cls) {
  const td = document.createElement('td');
  td.textContent = String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}
function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d > 0 ? d + 'd ' + h + 'h' : h > 0 ? h + 'h ' + m + 'm' : m + 'm ' + Math.floor(s % 60) + 's';
}
function rate(now, before, pick) {
  if (!before) return '-';
  const dt = (now.now - before.now) / 1000;
  return dt > 0 ? Math.max(0, Math.round((pick(now) - pick(before)) / dt)).toLocaleString() : '-';
}

function render(s) {
  text($('server'), s.server + ' (pid ' + s.pid + ')');
  text($('ports'), s.ports.map((p) => p.name + ' ' + p.host + ':' + p.port).join(', '));
  text($('uptime'), 'up ' + duration(s.uptime));
  const down = s.services.filter((x) => x.status !== 'up').length;
  const state = $('state');
  state.className = s.closing || down > 0 ? 'down' : 'up';
  text(state, s.closing ? 'shutting down' : down > 0 ? down + ' service(s) down' : 'all services up');
  text($('connections'), s.connections.open.toLocaleString());
  text($('handshaking'), s.connections.handshake.toLocaleString());
  text($('in-rate'), rate(s, last, (x) => x.totals.messagesIn));
  text($('out-rate'), rate(s, last, (x) => x.totals.messagesOut));
  text($('refusals'), s.totals.refusedHandshakes.toLocaleString());
  text($('held'), bytes(s.held.heldBytes));
  const services = $('services');
  services.replaceChildren();
  for (const x of s.services) {
    const row = document.createElement('tr');
    row.dataset.service = x.name;
    cell(row, x.name);
    cell(row, x.status, x.status === 'up' ? 'up' : 'down');
    cell(row, x.connections, 'n');
    cell(row, x.crashes, 'n');
    cell(row, x.restarts, 'n');
    cell(row, x.erlang === null ? '-' : x.erlang ? 'served' : 'not served');
    services.appendChild(row);
  }
  const recent = $('recent');
  recent.replaceChildren();
  if (s.recent.length === 0) {
    const row = document.createElement('tr');
    cell(row, 'nothing yet', 'empty').colSpan = 4;
    recent.appendChild(row);
  }
  for (const e of s.recent.slice().reverse()) {
    const row = document.createElement('tr');
    const when = document.createElement('time');
    when.textContent = new Date(e.at).toLocaleTimeString();
    cell(row, '').appendChild(when);
    cell(row, e.kind === 'refused' ? e.reason : e.kind, e.kind === 'crash' ? 'crash' : e.kind === 'down' ? 'down-event' : 'refused');
    cell(row, e.service ?? '-');
    cell(row, e.text);
    recent.appendChild(row);
  }
  last = s;
}

async function poll() {
  try {
    const res = await fetch(statusUrl, { cache: 'no-store' });
    if (!res.ok) throw new Error(res.status === 401 ? 'this page needs ?token=...' : 'HTTP ' + res.status);
    render(await res.json());
  } catch (err) {
    const state = $('state');
    state.className = 'down';
    text(state, 'no answer from the server: ' + err.message);
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
}
