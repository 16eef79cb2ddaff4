/**
 * `chan bench --report FILE.html`: a run as one self-contained page (no script, no external file) that can be opened
 * anywhere and shared: the table of every scenario, and each scenario's latency percentile curve as inline SVG, on the
 * axis HdrHistogram's plots use (percentiles spread as 1/(1 - p), so that the tail from 99% to 99.999% is readable).
 */
import type { ScenarioResult } from './load.js';

export interface ReportInfo {
  /** What was measured: host, port, service. */
  target: string;
  /** When the run ended. */
  date: Date;
  /** The run's settings, for the heading (duration, connections, window, size, keys). */
  settings: Record<string, string | number>;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

function us(v: number | undefined): string {
  if (v === undefined) return '-';
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} ms` : `${Math.round(v)} µs`;
}

/** The highest percentile shown: 99.999% (five nines). */
const NINES = 5;

/** Where percentile `p` goes on the x axis, 0 to 1: log10(1 / (1 - p)) over five nines. */
function xOf(p: number): number {
  const tail = Math.max(1 - p / 100, 10 ** -NINES);
  return Math.min(1, -Math.log10(tail) / NINES);
}

/** A round number at or above `v` for the top of the y axis. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

const W = 640;
const H = 260;
const PAD = { left: 64, right: 16, top: 16, bottom: 40 };

/** One scenario's curve as SVG. */
export function curveSvg(r: ScenarioResult): string {
  const curve = r.curve ?? [];
  const top = niceMax(Math.max(...curve.map(([, v]) => v), 1));
  const x = (p: number): number => PAD.left + xOf(p) * (W - PAD.left - PAD.right);
  const y = (v: number): number => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const points = curve.map(([p, v]) => `${x(p).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const xTicks = [0, 90, 99, 99.9, 99.99, 99.999]
    .map((p) => {
      const at = x(p).toFixed(1);
      return `<line x1="${at}" y1="${PAD.top}" x2="${at}" y2="${H - PAD.bottom}" class="grid"/><text x="${at}" y="${H - PAD.bottom + 16}" text-anchor="middle">${p}%</text>`;
    })
    .join('');
  const yTicks = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const at = y(top * f).toFixed(1);
      return `<line x1="${PAD.left}" y1="${at}" x2="${W - PAD.right}" y2="${at}" class="grid"/><text x="${PAD.left - 6}" y="${at}" text-anchor="end" dominant-baseline="middle">${esc(us(top * f))}</text>`;
    })
    .join('');
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(r.name)} latency by percentile">
${xTicks}${yTicks}
<polyline points="${points}" class="curve"/>
<text x="${(W + PAD.left) / 2}" y="${H - 6}" text-anchor="middle" class="axis">percentile</text>
</svg>`;
}

/** The whole page. */
export function renderReport(results: ScenarioResult[], info: ReportInfo): string {
  const settings = Object.entries(info.settings)
    .map(([k, v]) => `${esc(k)} ${esc(String(v))}`)
    .join(' · ');
  const rows = results
    .map(
      (r) => `<tr><td>${esc(r.name)}</td><td class="n">${Math.round(r.opsPerSec).toLocaleString('en')}</td>
<td class="n">${us(r.p50)}</td><td class="n">${us(r.p90)}</td><td class="n">${us(r.p99)}</td><td class="n">${us(r.p999)}</td>
<td class="n">${us(r.max)}</td><td class="n">${r.clientCpuUs.toFixed(1)}</td><td class="n">${r.serverCpuUs === undefined ? '-' : r.serverCpuUs.toFixed(1)}</td>
<td class="n">${r.errors > 0 ? `<b class="bad">${r.errors}</b>` : '0'}</td></tr>`,
    )
    .join('\n');
  const curves = results
    .filter((r) => (r.curve ?? []).length > 0)
    .map(
      (r) =>
        `<section class="scenario"><h2>${esc(r.name)}</h2><p>${Math.round(r.opsPerSec).toLocaleString('en')} ops/s over ${r.ops.toLocaleString('en')} operations; p50 ${us(r.p50)}, p99 ${us(r.p99)}, max ${us(r.max)}</p>${curveSvg(r)}</section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>chan bench: ${esc(info.target)}</title>
<style>
  :root { color-scheme: light dark; --fg: #1d2430; --dim: #667085; --line: #e3e6eb; --curve: #2563eb; --bad: #cf222e; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --dim: #8b95a5; --line: #262c35; --curve: #60a5fa; } }
  body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); margin: 2rem auto; max-width: 980px; padding: 0 1rem; }
  h1 { font-size: 1.3rem; margin: 0 0 0.3rem; } h2 { font-size: 1.05rem; margin: 1.6rem 0 0.3rem; }
  .meta { color: var(--dim); margin: 0 0 1.2rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { padding: 0.35rem 0.6rem; border-bottom: 1px solid var(--line); text-align: left; }
  th { color: var(--dim); font-weight: 500; font-size: 0.85rem; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .bad { color: var(--bad); }
  svg { max-width: 100%; height: auto; font-size: 11px; fill: var(--dim); }
  svg .grid { stroke: var(--line); stroke-width: 1; }
  svg .curve { fill: none; stroke: var(--curve); stroke-width: 2; }
</style>
</head>
<body>
<h1>chan bench: ${esc(info.target)}</h1>
<p class="meta">${esc(info.date.toISOString())} · ${settings}</p>
<table>
<thead><tr><th>scenario</th><th>ops/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th>
<th>client µs/op</th><th>server µs/op</th><th>errors</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
${curves}
</body>
</html>
`;
}
