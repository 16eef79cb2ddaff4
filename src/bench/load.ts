/**
 * The load generator behind `chan bench`: kvs lookups (and stores) against a name-server service, in the spirit of
 * redis-benchmark and `nats bench`. Every answer is checked. Scenarios:
 *
 *   rpc       C connections, each sending one lookup at a time
 *   pipeline  one connection with W lookups in flight
 *   cast      one connection sending stores one way; at the end a lookup of the last key proves all arrived
 *   connect   connect + authenticate + close, one after another on each of C connections at once
 *   idle      N authenticated connections held open; the server's memory per connection (with --server-pid)
 */
import { readFileSync } from 'node:fs';
import { connect, type Channel } from '../client.js';
import type { Destination } from '../client-options.js';
import { Atom, Tuple, isTuple, type Term } from '../term/model.js';
import { MAX_TIMER_MS } from '../inbox.js';
import { procStatFields } from '../proc-stat.js';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

export type Scenario = 'rpc' | 'store' | 'pipeline' | 'cast' | 'connect' | 'idle';
/** Every scenario; `store` is left out of the default run (it writes to the server's store). */
export const SCENARIOS: readonly Scenario[] = ['rpc', 'store', 'pipeline', 'cast', 'connect', 'idle'];
export const DEFAULT_SCENARIOS: readonly Scenario[] = ['rpc', 'pipeline', 'cast', 'connect', 'idle'];

export interface LoadSettings {
  /** How long each scenario runs, ms (unless `count` is given). */
  duration: number;
  /** Operations per scenario instead of a duration. */
  count?: number;
  /** rpc: the numbers of connections to run with, each a separate result. */
  connections: number[];
  /** pipeline: requests in flight. */
  window: number;
  /** Bytes in each stored value. */
  size: number;
  /** Keys stored before the run, looked up at random. */
  keys: number;
  /** idle: connections to hold open. */
  idle: number;
  /**
   * idle: how long to hold them, ms, before reading the server's memory (and as long again at half of them). Default
   * 1000; V8 shrinks a young generation only some while after the allocation stops, so a longer hold reads less.
   */
  idleHold?: number;
  /** The server's process id, for its CPU time and memory (Linux /proc). */
  serverPid?: number;
  /** Called about once a second while a scenario runs. */
  progress?: (line: string) => void;
}

export interface ScenarioResult {
  name: string;
  ops: number;
  seconds: number;
  opsPerSec: number;
  /** Latencies, microseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** CPU time per operation, microseconds. */
  clientCpuUs: number;
  serverCpuUs?: number;
  /** idle: server memory per connection, bytes: over the empty server, and the marginal cost (second half only). */
  bytesPerConnection?: number;
  marginalBytesPerConnection?: number;
  errors: number;
  /** The latency curve: [percentile, microseconds] at HdrHistogram's reporting steps (for chan bench --report). */
  curve?: [number, number][];
}

const STORE = new Atom('store');
const LOOKUP = new Atom('lookup');

/** CPU time (user + system) of a process so far, microseconds; undefined where /proc cannot tell. */
export function processCpuUs(pid: number): number | undefined {
  try {
    const fields = procStatFields(pid);
    // utime and stime (fields 14 and 15 of the whole line), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return undefined;
  }
}

export function processRssBytes(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Counts one scenario's operations, their latencies and the CPU both processes spent (shared with bench/ceiling.ts). */
export class Meter {
  /** Latencies in microseconds: Node's HdrHistogram, 3 significant figures, 1 us to an hour. */
  readonly hist: RecordableHistogram = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  ops = 0;
  errors = 0;
  private readonly started = performance.now();
  private readonly cpu = process.cpuUsage();
  private readonly serverCpu: number | undefined;
  private readonly ticker: NodeJS.Timeout | null;

  constructor(
    private readonly name: string,
    private readonly s: LoadSettings,
  ) {
    this.serverCpu = s.serverPid ? processCpuUs(s.serverPid) : undefined;
    this.ticker = s.progress
      ? setInterval(() => {
          const secs = (performance.now() - this.started) / 1000;
          s.progress?.(`${name}: ${Math.round(this.ops / secs)} ops/s, ${secs.toFixed(1)} s`);
        }, 1000)
      : null;
  }

  /** The latency of something begun at `t0` (from performance.now()). */
  latency(t0: number): void {
    this.hist.record(Math.max(1, Math.round((performance.now() - t0) * 1000)));
  }

  /** One operation done, begun at `t0`. */
  finished(t0: number): void {
    this.latency(t0);
    this.ops++;
  }

  /** True while the scenario should go on. */
  running(): boolean {
    return this.s.count !== undefined ? this.ops < this.s.count : performance.now() - this.started < this.s.duration;
  }

  done(extra: Partial<ScenarioResult> = {}): ScenarioResult {
    if (this.ticker) clearInterval(this.ticker);
    const seconds = (performance.now() - this.started) / 1000;
    const cpu = process.cpuUsage(this.cpu);
    const serverCpu =
      this.s.serverPid && this.serverCpu !== undefined
        ? (processCpuUs(this.s.serverPid) ?? 0) - this.serverCpu
        : undefined;
    const ops = Math.max(1, this.ops);
    const h = this.hist;
    return {
      name: this.name,
      ops: this.ops,
      seconds,
      opsPerSec: this.ops / seconds,
      p50: h.percentile(50),
      p90: h.percentile(90),
      p99: h.percentile(99),
      p999: h.percentile(99.9),
      max: h.count > 0 ? h.max : 0,
      clientCpuUs: (cpu.user + cpu.system) / ops,
      ...(serverCpu !== undefined ? { serverCpuUs: serverCpu / ops } : {}),
      errors: this.errors,
      ...(h.count > 0 ? { curve: latencyCurve(h) } : {}),
      ...extra,
    };
  }
}

/** The percentile curve of `h`: HdrHistogram's reporting steps (0, 50, 75, 87.5, ...), ending at 100% with the maximum. */
export function latencyCurve(h: RecordableHistogram): [number, number][] {
  const points: [number, number][] = [...h.percentiles].map(([p, v]): [number, number] => [p, v]);
  // The last step is 100%: the maximum itself (the steps report the low end of their buckets).
  if (points.at(-1)?.[0] === 100) points.pop();
  points.push([100, h.max]);
  return points;
}

function open(t: Destination): Promise<Channel> {
  return connect(t.host, t.port, t.service, t.secret, null, { rpcTimeout: 30_000, ...t.options });
}

function key(i: number): Term {
  return new Tuple([new Atom('k'), i]);
}

/** Stores the keys every scenario looks up. */
async function prepare(t: Destination, s: LoadSettings, value: string): Promise<void> {
  const ch = await open(t);
  const batch: Promise<Term>[] = [];
  for (let i = 0; i < s.keys; i++) {
    batch.push(ch.rpc(new Tuple([STORE, key(i), value])));
    if (batch.length === 256) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  await ch.close();
}

function checked(answer: Term, value: string): boolean {
  return isTuple(answer, 'ok', 2) && answer.at(1) === value;
}

/**
 * `c` connections, each with one rpc at a time: lookups of the stored keys (`rpc`), or stores acknowledged by the
 * server once committed (`store`: on 10,000 keys of their own, so that the store stays the same size).
 */
async function rpcScenario(
  t: Destination,
  s: LoadSettings,
  value: string,
  c: number,
  kind: 'rpc' | 'store' = 'rpc',
): Promise<ScenarioResult> {
  const chans = await Promise.all(Array.from({ length: c }, () => open(t)));
  const m = new Meter(`${kind} -c ${c}`, s);
  let n = 0;
  await Promise.all(
    chans.map(async (ch) => {
      while (m.running()) {
        const q =
          kind === 'rpc'
            ? new Tuple([LOOKUP, key((Math.random() * s.keys) | 0)])
            : new Tuple([STORE, new Tuple([new Atom('s'), n++ % 10_000]), value]);
        const t0 = performance.now();
        const answer = await ch.rpc(q);
        m.finished(t0);
        if (kind === 'rpc' ? !checked(answer, value) : answer !== true) m.errors++;
      }
    }),
  );
  const r = m.done();
  await Promise.all(chans.map((ch) => ch.close()));
  return r;
}

async function pipelineScenario(t: Destination, s: LoadSettings, value: string): Promise<ScenarioResult> {
  const ch = await open(t);
  const m = new Meter(`pipeline -w ${s.window}`, s);
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    const next = (): void => {
      inFlight--;
      if (m.running()) send();
      else if (inFlight === 0) resolve();
    };
    const send = (): void => {
      while (inFlight < s.window && m.running()) {
        inFlight++;
        const t0 = performance.now();
        ch.rpc(new Tuple([LOOKUP, key((Math.random() * s.keys) | 0)])).then(
          (answer) => {
            m.finished(t0);
            if (!checked(answer, value)) m.errors++;
            next();
          },
          () => {
            m.errors++;
            next();
          },
        );
      }
    };
    send();
  });
  const r = m.done();
  await ch.close();
  return r;
}

async function castScenario(t: Destination, s: LoadSettings, value: string): Promise<ScenarioResult> {
  const ch = await open(t);
  const m = new Meter('cast', s);
  let last = -1;
  while (m.running()) {
    for (let i = 0; i < 1000; i++) {
      last = (last + 1) % 10_000; // a bounded store: the figure is of messages, not of a growing Map
      ch.cast(new Tuple([STORE, new Tuple([new Atom('c'), last]), value]));
      m.ops++;
    }
    await ch.drain();
  }
  // One lookup proves that the server has applied every store before it (one connection keeps order).
  const t0 = performance.now();
  const answer = await ch.rpc(new Tuple([LOOKUP, new Tuple([new Atom('c'), last])]));
  m.latency(t0);
  if (!checked(answer, value)) m.errors++;
  const r = m.done();
  await ch.close();
  return r;
}

/**
 * `--idle-hold` as given: a whole number of ms from 1 to Node's longest timer (2^31 - 1), or the reason it is not.
 * (chan bench, the ceiling's load generator and npm run bench read it alike.)
 */
export function parseIdleHold(text: string): number | { refused: string } {
  const ms = Number(text);
  return Number.isInteger(ms) && ms >= 1 && ms <= MAX_TIMER_MS
    ? ms
    : { refused: `--idle-hold ${text}: a whole number of milliseconds from 1 to ${MAX_TIMER_MS}` };
}

/** A connection the connect and idle scenarios open and close. */
export interface Closable {
  close(): Promise<void>;
}

/**
 * `c` connections at once, each opened with `open` and closed again, over and over: connect (with whatever handshake
 * `open` makes) + close. Shared with bench/ceiling.ts.
 */
export async function connectScenario<C extends Closable>(
  open: () => Promise<C>,
  s: LoadSettings,
  c: number,
): Promise<ScenarioResult> {
  const m = new Meter(`connect -c ${c}`, s);
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (m.running()) {
        const t0 = performance.now();
        try {
          await (await open()).close();
          m.finished(t0);
        } catch {
          m.errors++;
        }
      }
    }),
  );
  return m.done();
}

/**
 * Opens `s.idle` connections with `open` (in batches of 32) and holds them; the server's memory per connection, over
 * the empty server and marginal (second half only). Shared with bench/ceiling.ts.
 */
export async function idleScenario<C extends Closable>(
  open: () => Promise<C>,
  s: LoadSettings,
): Promise<ScenarioResult> {
  const before = s.serverPid ? processRssBytes(s.serverPid) : undefined;
  const m = new Meter(`idle ${s.idle}`, { ...s, count: s.idle });
  const chans: C[] = [];
  let refused: unknown = null;
  let half: { rss: number; n: number } | undefined;
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, s.idleHold ?? 1000)); // the server frees handshake buffers lazily
  while (chans.length < s.idle && refused === null) {
    if (half === undefined && chans.length >= s.idle / 2 && s.serverPid) {
      await settle();
      const rss = processRssBytes(s.serverPid);
      if (rss !== undefined) half = { rss, n: chans.length };
    }
    const batch = await Promise.all(
      // In batches under the server's default max_unauthenticated (64).
      Array.from({ length: Math.min(32, s.idle - chans.length) }, async () => {
        const t0 = performance.now();
        try {
          const ch = await open();
          m.finished(t0);
          return ch;
        } catch (err) {
          m.errors++;
          refused = err; // the server's limit (max_connections?): stop opening
          return null;
        }
      }),
    );
    for (const ch of batch) if (ch) chans.push(ch);
  }
  if (refused) s.progress?.(`idle: stopped at ${chans.length} connections: ${(refused as Error).message}`);
  await settle();
  const after = s.serverPid ? processRssBytes(s.serverPid) : undefined;
  const r = m.done({
    ...(before !== undefined && after !== undefined && chans.length > 0
      ? { bytesPerConnection: (after - before) / chans.length }
      : {}),
    // Without what the first connections cost once (code compiled, V8's young generation grown by the connect burst).
    ...(half && after !== undefined && chans.length > half.n
      ? { marginalBytesPerConnection: (after - half.rss) / (chans.length - half.n) }
      : {}),
  });
  for (let i = 0; i < chans.length; i += 500) await Promise.all(chans.slice(i, i + 500).map((c) => c.close()));
  return r;
}

/** Runs the scenarios in order; one result per scenario (per connection count, for rpc). */
export async function runLoad(
  t: Destination,
  scenarios: readonly Scenario[],
  s: LoadSettings,
): Promise<ScenarioResult[]> {
  const value = 'x'.repeat(s.size);
  if (scenarios.some((x) => x === 'rpc' || x === 'pipeline')) await prepare(t, s, value);
  const out: ScenarioResult[] = [];
  for (const sc of scenarios) {
    switch (sc) {
      case 'rpc':
      case 'store':
        for (const c of s.connections) out.push(await rpcScenario(t, s, value, c, sc));
        break;
      case 'pipeline':
        out.push(await pipelineScenario(t, s, value));
        break;
      case 'cast':
        out.push(await castScenario(t, s, value));
        break;
      case 'connect':
        for (const c of s.connections) out.push(await connectScenario(() => open(t), s, c));
        break;
      case 'idle':
        out.push(await idleScenario(() => open(t), s));
        break;
    }
  }
  return out;
}

/** The results as a table for people. */
export function formatResults(results: ScenarioResult[]): string {
  const us = (v: number | undefined): string =>
    v === undefined ? '-' : v >= 10_000 ? `${(v / 1000).toFixed(1)}ms` : `${Math.round(v)}us`;
  const rows = results.map((r) => [
    r.name,
    Math.round(r.opsPerSec).toString(),
    us(r.p50),
    us(r.p90),
    us(r.p99),
    us(r.p999),
    us(r.max),
    r.clientCpuUs.toFixed(1),
    r.serverCpuUs === undefined ? '-' : r.serverCpuUs.toFixed(1),
    r.bytesPerConnection === undefined
      ? ''
      : `${Math.round(r.bytesPerConnection)} B/conn${r.marginalBytesPerConnection === undefined ? '' : ` (marginal ${Math.round(r.marginalBytesPerConnection)})`}`,
    r.errors > 0 ? `${r.errors} ERRORS` : '',
  ]);
  const head = ['scenario', 'ops/s', 'p50', 'p90', 'p99', 'p99.9', 'max', 'client us/op', 'server us/op', '', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}
