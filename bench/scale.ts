/**
 * `npm run bench:scale` (and the end of `npm run bench`): what the store and the processes cost and buy.
 *
 * 1. Stores: `chan serve` on memory:, lmdb: (a temporary directory) and redis:// (a redis-server this script starts,
 *    when one is installed), each loaded by `chan bench` with lookups (`rpc -c C`) and acknowledged stores
 *    (`store -c C`), and one-way stores on one connection (`cast`); rounds alternate the backends; each figure is
 *    given as a ratio of memory:'s, from the same run.
 * 2. Processes: `chan serve --processes N` against `--processes 1` (both on lmdb:), loaded by G `chan bench` processes
 *    at once (`rpc -c C` each); the ratio of N processes' total to one process's, and per added process.
 *
 * Where the machine has CPUs to spare (16 or more), the server processes are pinned to CPUs 0..7 and the load
 * generators to 8..15 (and it says so); on a small machine the figures mostly show the machine, which the table says.
 *
 *   node dist/bench/scale.js [--rounds 3] [--duration 3000] [--processes 1,2,4,8] [--generators 8] [-c 16] [--out F]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hasRedis, startRedis, type RedisProcess } from '../scripts/redis-server.js';
import type { ScenarioResult } from '../src/bench/load.js';
import { CHAN, chanBench, median, spread } from './common.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3000' },
    processes: { type: 'string' },
    generators: { type: 'string' },
    c: { type: 'string', default: '16' },
    out: { type: 'string' },
    only: { type: 'string' },
    'per-process': { type: 'string' },
  },
});
/** With --per-process P: the load grows with the processes (P connections for each), instead of a fixed -c per generator. */
const perProcess = values['per-process'] === undefined ? null : Number(values['per-process']);
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const conns = Number(values.c);
const big = cpus().length >= 16;
const SERVER_CPUS = '0-7';
const CLIENT_CPUS = '8-15';
const processCounts = (values.processes ?? (big ? '1,2,4,8' : '1,2')).split(',').map(Number);
const generators = Number(values.generators ?? (big ? '8' : '2'));
const pin = (list: string, argv: string[]): string[] => (big ? ['taskset', '-c', list, ...argv] : argv);

const dir = mkdtempSync(path.join(tmpdir(), 'chan-scale-'));
const conf = path.join(dir, 'bench.conf');
writeFileSync(
  conf,
  '{port, 0}.\n{host, "127.0.0.1"}.\n{max_connections, 20000}.\n{max_unauthenticated, 4096}.\n{max_unauthenticated_per_address, 4096}.\n{log_level, warn}.\n{service, nameServer, password, "bench", mfa, mod_name_server, start_me_up, notUsed}.\n',
);

interface Server {
  child: ChildProcess;
  port: number;
}

/** chan serve with `env`; resolves once every process listens (its port from the first listening line). */
function serve(env: Record<string, string>, processes: number): Promise<Server> {
  const argv = pin(SERVER_CPUS, [process.execPath, CHAN, 'serve', conf]);
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, CHAN_PROCESSES: String(processes), CHAN_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    let port = 0;
    child.stdout?.on('data', (c: Buffer) => {
      buf += String(c);
      const listening = buf.split('\n').find((l) => l.includes('"msg":"listening"'));
      port ||= Number(/"port":(\d+)/.exec(listening ?? '')?.[1] ?? 0);
      const ready = processes === 1 ? port > 0 : /every process is listening/.test(buf);
      if (ready && port > 0) {
        child.stdout?.removeAllListeners('data');
        child.stdout?.resume();
        resolve({ child, port });
      }
    });
    child.once('exit', (code) => reject(new Error(`chan serve exited (${code}) before listening`)));
  });
}

function bench(port: number, scenario: string, c: number): Promise<ScenarioResult[]> {
  const args = [
    '-d',
    String(duration),
    '--scenario',
    scenario,
    '-c',
    String(c),
    '127.0.0.1',
    String(port),
    'nameServer',
  ];
  return chanBench([...args, 'bench'], pin(CLIENT_CPUS, []));
}

async function stop(s: Server): Promise<void> {
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGTERM');
  await exited;
}

async function stores(): Promise<string[]> {
  let redis: RedisProcess | null = null;
  if (hasRedis) redis = await startRedis();
  const backends: [string, string][] = [
    ['memory:', 'memory:'],
    ['lmdb:', `lmdb:${path.join(dir, 'lmdb')}`],
    ...(redis ? ([['redis://', redis.url]] as [string, string][]) : []),
  ];
  const results = new Map<string, number[]>();
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const [name, url] of backends) {
        process.stderr.write(`stores, round ${round}/${rounds}: ${name}\n`);
        const s = await serve({ CHAN_STORE: url }, 1);
        try {
          for (const r of await bench(s.port, 'rpc,store,cast', conns)) {
            const k = `${r.name}|${name}`;
            results.set(k, [...(results.get(k) ?? []), r.opsPerSec]);
          }
        } finally {
          await stop(s);
        }
      }
    }
  } finally {
    await redis?.stop();
  }
  const lines = [
    `| scenario | ${backends.map(([n]) => `${n} ops/s`).join(' | ')} | ${backends
      .slice(1)
      .map(([n]) => `${n} / memory:`)
      .join(' | ')} |`,
    `| --- | ${backends.map(() => '---').join(' | ')} | ${backends
      .slice(1)
      .map(() => '---')
      .join(' | ')} |`,
  ];
  for (const scenario of [`rpc -c ${conns}`, `store -c ${conns}`, 'cast']) {
    const base = median(results.get(`${scenario}|memory:`) ?? [Number.NaN]);
    const cells = backends.map(([n]) => {
      const xs = results.get(`${scenario}|${n}`) ?? [Number.NaN];
      return `${Math.round(median(xs))} (${spread(xs)})`;
    });
    const ratios = backends.slice(1).map(([n]) => (median(results.get(`${scenario}|${n}`) ?? [0]) / base).toFixed(2));
    lines.push(`| ${scenario} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`);
  }
  return lines;
}

async function scaling(): Promise<string[]> {
  const totals = new Map<number, number[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const n of processCounts) {
      process.stderr.write(`processes, round ${round}/${rounds}: ${n}\n`);
      rmSync(path.join(dir, `lmdb-p`), { recursive: true, force: true });
      const s = await serve({ CHAN_STORE: `lmdb:${path.join(dir, 'lmdb-p')}` }, n);
      try {
        const c = perProcess === null ? conns : Math.max(1, Math.round((perProcess * n) / generators));
        const all = await Promise.all(Array.from({ length: generators }, () => bench(s.port, 'rpc', c)));
        const total = all.flat().reduce((sum, r) => sum + r.opsPerSec, 0);
        totals.set(n, [...(totals.get(n) ?? []), total]);
      } finally {
        await stop(s);
      }
    }
  }
  const one = median(totals.get(1) ?? [Number.NaN]);
  const lines = [
    '| processes | lookups/s (all generators) | / 1 process | per added process |',
    '| --- | --- | --- | --- |',
  ];
  for (const n of processCounts) {
    const xs = totals.get(n) ?? [Number.NaN];
    const ratio = median(xs) / one;
    lines.push(
      `| ${n} | ${Math.round(median(xs))} (${spread(xs)}) | ${ratio.toFixed(2)} | ${n === 1 ? '-' : ((ratio - 1) / (n - 1)).toFixed(2)} |`,
    );
  }
  return lines;
}

const head = `${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}; ${big ? `servers on CPUs ${SERVER_CPUS}, load generators on ${CLIENT_CPUS}` : 'unpinned: server, load generators and Redis share the CPUs'}; ${rounds} rounds of ${duration} ms, medians (range)`;
const only = values.only;
const sections: string[] = [head, ''];
try {
  if (only !== 'processes') sections.push(...(await stores()), '');
  if (only !== 'stores')
    sections.push(
      perProcess === null
        ? `${generators} load generators of ${conns} connections each, one lookup at a time per connection:`
        : `${generators} load generators, ${perProcess} connections in all for each server process, one lookup at a time per connection:`,
      '',
      ...(await scaling()),
    );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const table = sections.join('\n');
if (values.out) writeFileSync(values.out, `${table}\n`);
console.log(table);
