/**
 * `npm run bench`: lib-chan against the ceiling (bench/ceiling.ts: the fastest plain Node server and client we know how
 * to write for the same workloads), plain and TLS, in one run; then bench/scale.ts (the store backends, and several
 * processes against one).
 *
 * Starts, as separate processes, `chan serve` on a bench config (plain and TLS) and the ceiling server (plain and
 * TLS); runs the load generators (`chan bench` against lib-chan, the ceiling's own against the ceiling: each a process
 * of its own) for several rounds, alternating the servers and reversing their order every other round. Where the
 * machine has two CPUs or more, every server is pinned to one CPU and every load generator to others (`taskset`), and
 * the table says which. Prints every lib-chan figure as a ratio of the ceiling's measured in the same run (ratio of the
 * medians, with the range of the rounds' own ratios). `--write` puts the tables into docs/BENCHMARKS.md with the
 * machine, the Node version and the date.
 *
 *   npm run bench [-- --rounds 3] [-- --duration 3000] [-- --idle 10000] [-- --idle-hold 1000]
 *   [-- --only rpc,pipeline] [-- --write] [-- --no-scale]
 *   npm run bench -- --codec [--ms 300]    (bench/codec.ts alone: the codec and the frame parser, beside msgpackr)
 *   npm run bench -- --inproc [--rounds 5] [--ms 1000]   (bench/inproc.ts alone: each server's own work per message,
 *                                                         without sockets, beside the ceiling's)
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseIdleHold, type ScenarioResult } from '../src/bench/load.js';
import { writeCerts } from '../src/certs.js';
import { replaceBetween } from '../scripts/markers.js';
import { CHAN, PIN, ROOT, chanBench, median, taskset } from './common.js';

const { values, tokens } = parseArgs({
  tokens: true,
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3000' },
    idle: { type: 'string', default: '10000' },
    'idle-hold': { type: 'string', default: '1000' },
    only: { type: 'string', default: 'rpc,pipeline,cast,connect' },
    write: { type: 'boolean', default: false },
    'no-scale': { type: 'boolean', default: false },
    codec: { type: 'boolean', default: false },
    inproc: { type: 'boolean', default: false },
    ms: { type: 'string' },
  },
});
if (values.codec && values.inproc) {
  process.stderr.write('--codec and --inproc are two benchmarks: run one at a time\n');
  process.exit(2);
}
if (values.inproc) {
  const args = tokens.some((t) => t.kind === 'option' && t.name === 'rounds') ? ['--rounds', values.rounds] : [];
  if (values.ms !== undefined) args.push('--ms', values.ms);
  // Unpinned: it pins each of its figures' processes itself.
  runAlone(
    'inproc',
    'the in-process benchmark',
    ['rounds', 'ms'],
    'its options are --rounds and --ms',
    'inproc.js',
    args,
  );
}
if (values.codec) {
  const args = values.ms === undefined ? [] : ['--ms', values.ms];
  runAlone('codec', 'the codec benchmark', ['ms'], 'its one option is --ms', 'codec.js', args, taskset(PIN?.server));
} else if (values.ms !== undefined) {
  process.stderr.write(
    '--ms (time per figure) belongs to the codec and in-process benchmarks: use it with --codec or --inproc\n',
  );
  process.exit(2);
}
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const idle = Number(values.idle);
/** How long the idle connections are held before the server's memory is read (at half of them, and at the end). */
const idleHold = parseIdleHold(values['idle-hold']);
if (typeof idleHold !== 'number') {
  process.stderr.write(`${idleHold.refused}\n`);
  process.exit(2);
}
const CEILING = path.join(ROOT, 'dist/bench/ceiling.js');
/** No load generator runs longer than this: every scenario's duration, with room for setup and the idle connections. */
const LOAD_TIMEOUT_MS = 20 * duration + 2 * idleHold + 300_000;

type Kind = 'lib-chan' | 'ceiling';

interface Server {
  name: string;
  kind: Kind;
  tls: boolean;
  child: ChildProcess;
  port: number;
  /** The load generator's arguments that say how to reach this server (TLS, secret). */
  client: string[];
}

function start(
  name: string,
  kind: Kind,
  tlsOn: boolean,
  args: string[],
  env: Record<string, string>,
  client: string[],
): Promise<Server> {
  const argv = [...taskset(PIN?.server), process.execPath, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += String(c);
      const m = /"port":(\d+)/.exec(buf);
      if (m) {
        child.stdout?.off('data', onData);
        child.stdout?.resume(); // keep draining its log
        resolve({ name, kind, tls: tlsOn, child, port: Number(m[1]), client });
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening`)));
  });
}

/** Runs the ceiling's load generator as its own process. */
function ceilingLoad(args: string[]): Promise<ScenarioResult[]> {
  const argv = [...taskset(PIN?.load), process.execPath, CEILING, 'load', ...args];
  return new Promise((resolve, reject) =>
    execFile(
      argv[0] as string,
      argv.slice(1),
      { encoding: 'utf8', maxBuffer: 1 << 22, timeout: LOAD_TIMEOUT_MS },
      (err, out, errOut) =>
        err ? reject(new Error(errOut || err.message)) : resolve(JSON.parse(out) as ScenarioResult[]),
    ),
  );
}

/** Runs the load generator that speaks `s`'s protocol against it, as its own process. */
function bench(s: Server, scenarios: string, extra: string[] = []): Promise<ScenarioResult[]> {
  const common = [
    '-d',
    String(duration),
    '--keys',
    '10000',
    '--server-pid',
    String(s.child.pid),
    '--scenario',
    scenarios,
    ...extra,
  ];
  const run =
    s.kind === 'ceiling'
      ? ceilingLoad([...common, '--port', String(s.port), ...s.client])
      : chanBench(
          [...common, ...s.client, '127.0.0.1', String(s.port), 'nameServer', 'bench'],
          taskset(PIN?.load),
          LOAD_TIMEOUT_MS,
        );
  return run.catch((err: Error) => {
    throw new Error(`the load against ${s.name} failed: ${err.message}`);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'chan-bench-'));
  writeCerts({ out: dir, hosts: ['localhost', '127.0.0.1'], days: 1, clients: [], force: true });
  const base = `{port, 0}.\n{host, "127.0.0.1"}.\n{max_connections, 20000}.\n{max_unauthenticated, 1024}.\n{service, nameServer, password, "bench", mfa, mod_name_server, start_me_up, notUsed}.\n`;
  writeFileSync(path.join(dir, 'plain.conf'), base);
  writeFileSync(path.join(dir, 'tls.conf'), `${base}{tls, [{cert, "server.pem"}, {key, "server-key.pem"}]}.\n`);
  const ca = path.join(dir, 'ca.pem');
  const servers: Server[] = [];
  try {
    // memory:, as the ceiling keeps its names in a Map: the same work on both sides of each ratio.
    const memory = { CHAN_STORE: 'memory:' };
    servers.push(await start('ceiling', 'ceiling', false, [CEILING, 'serve'], {}, []));
    servers.push(await start('lib-chan', 'lib-chan', false, [CHAN, 'serve', path.join(dir, 'plain.conf')], memory, []));
    servers.push(await start('ceiling TLS', 'ceiling', true, [CEILING, 'serve', '--tls', dir], {}, ['--ca', ca]));
    servers.push(
      await start('lib-chan TLS', 'lib-chan', true, [CHAN, 'serve', path.join(dir, 'tls.conf')], memory, [
        '--tls',
        '--ca',
        ca,
      ]),
    );
  } catch (err) {
    for (const s of servers) s.child.kill(); // the ones already started must not outlive the run
    throw err;
  }
  const results = new Map<string, Map<string, ScenarioResult[]>>(servers.map((s) => [s.name, new Map()]));
  const keep = (s: Server, rs: ScenarioResult[]): void => {
    const byName = results.get(s.name) as Map<string, ScenarioResult[]>;
    for (const r of rs) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  };
  try {
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      for (const s of order) {
        process.stderr.write(`round ${round}/${rounds}: ${s.name}\n`);
        keep(s, await bench(s, values.only));
      }
    }
    // Idle connections on fresh servers of their own (plain TCP), started for it and stopped after: what a connection
    // holds, neither what earlier scenarios left for the collector nor a heap grown by 10,000 connections for the
    // scenarios after.
    if (idle > 0)
      for (const [name, kind, args, env] of [
        ['ceiling', 'ceiling', [CEILING, 'serve'], {}],
        ['lib-chan', 'lib-chan', [CHAN, 'serve', path.join(dir, 'plain.conf')], { CHAN_STORE: 'memory:' }],
      ] as const) {
        const fresh = await start(name, kind, false, [...args], env, []);
        try {
          process.stderr.write(`idle: ${idle} connections to a fresh ${name}\n`);
          keep(fresh, await bench(fresh, 'idle', ['--idle', String(idle), '--idle-hold', String(idleHold)]));
        } finally {
          fresh.child.kill();
        }
      }
  } finally {
    for (const s of servers) s.child.kill();
  }

  const all = (server: string, scenario: string): ScenarioResult[] => results.get(server)?.get(scenario) ?? [];
  const med = (server: string, scenario: string, f: (r: ScenarioResult) => number | undefined): number | undefined => {
    const xs = all(server, scenario)
      .map(f)
      .filter((x): x is number => x !== undefined);
    return xs.length > 0 ? median(xs) : undefined;
  };
  const fmt = (v: number | undefined, digits = 0): string => (v === undefined ? '-' : v.toFixed(digits));
  /** The ratio of the medians, and the range of the rounds' own ratios. */
  const ratio = (lc: string, ceil: string, sc: string): string => {
    const a = med(lc, sc, (r) => r.opsPerSec);
    const b = med(ceil, sc, (r) => r.opsPerSec);
    if (a === undefined || b === undefined) return '-';
    const per = all(lc, sc).map((r, i) => r.opsPerSec / (all(ceil, sc)[i]?.opsPerSec ?? Number.NaN));
    const ok = per.filter((x) => Number.isFinite(x));
    return ok.length > 1
      ? `**${(a / b).toFixed(2)}** (${Math.min(...ok).toFixed(2)}-${Math.max(...ok).toFixed(2)})`
      : `**${(a / b).toFixed(2)}**`;
  };
  const table = (lc: string, ceil: string): string => {
    const scenarios = [...(results.get(lc)?.keys() ?? [])].filter((sc) => !sc.startsWith('idle'));
    const head = [
      'scenario',
      `${ceil} ops/s`,
      `${lc} ops/s`,
      'ratio (rounds)',
      'p50 us (lc / ceiling)',
      'p99 us (lc / ceiling)',
      'server us/op (lc / ceiling)',
      'client us/op (lc / ceiling)',
    ];
    const pair = (sc: string, f: (r: ScenarioResult) => number | undefined, d = 0): string =>
      `${fmt(med(lc, sc, f), d)} / ${fmt(med(ceil, sc, f), d)}`;
    const rows = scenarios.map((sc) => [
      sc,
      fmt(med(ceil, sc, (r) => r.opsPerSec)),
      fmt(med(lc, sc, (r) => r.opsPerSec)),
      ratio(lc, ceil, sc),
      pair(sc, (r) => r.p50),
      pair(sc, (r) => r.p99),
      pair(sc, (r) => r.serverCpuUs, 1),
      pair(sc, (r) => r.clientCpuUs, 1),
    ]);
    return [
      `| ${head.join(' | ')} |`,
      `| ${head.map(() => '---').join(' | ')} |`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n');
  };
  const idleLine = (): string[] => {
    const sc = `idle ${idle}`;
    const lc = med('lib-chan', sc, (r) => r.bytesPerConnection);
    const cl = med('ceiling', sc, (r) => r.bytesPerConnection);
    if (lc === undefined || cl === undefined) return [];
    const lm = med('lib-chan', sc, (r) => r.marginalBytesPerConnection);
    const cm = med('ceiling', sc, (r) => r.marginalBytesPerConnection);
    return [
      '',
      `Idle: ${idle} connections held open (lib-chan's authenticated), each on a fresh server of its own; server RSS per connection over the empty server, read ${idleHold} ms after the last connection: lib-chan ${fmt(lc)} B, ceiling ${fmt(cl)} B, ratio **${(lc / cl).toFixed(2)}**; marginal (the second half only, without what the first connections cost once) ${fmt(lm)} B and ${fmt(cm)} B, ratio **${lm !== undefined && cm !== undefined ? (lm / cm).toFixed(2) : '-'}**.`,
    ];
  };
  const pinned = PIN ? `servers pinned to CPU ${PIN.server}, load generators to CPU ${PIN.load}` : 'unpinned (one CPU)';
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? '?'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; ${pinned}; ${rounds} rounds of ${duration} ms per scenario, alternating, medians; kvs lookups of 100-byte values on 10,000 keys`;
  const out = [
    machine,
    '',
    'Plain TCP:',
    '',
    table('lib-chan', 'ceiling'),
    '',
    'TLS 1.3:',
    '',
    table('lib-chan TLS', 'ceiling TLS'),
    ...idleLine(),
  ];
  process.stdout.write(`\n${out.join('\n')}\n`);
  if (values.write) {
    replaceBetween(path.join(ROOT, 'docs/BENCHMARKS.md'), 'bench', out);
    process.stderr.write('written to docs/BENCHMARKS.md\n');
  }
  if (values['no-scale']) return;
  // Then the store backends and the processes (bench/scale.ts), with the same rounds and duration.
  await new Promise<void>((resolve, reject) =>
    spawn(
      process.execPath,
      [path.join(ROOT, 'dist/bench/scale.js'), '--rounds', String(rounds), '--duration', String(duration)],
      {
        stdio: 'inherit',
      },
    ).once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bench/scale.js exited ${code}`)))),
  );
}

/**
 * A benchmark that runs alone instead of the end-to-end run (`--codec`: bench/codec.ts, pinned where the servers would
 * be; `--inproc`: bench/inproc.ts): an end-to-end option beside it would be ignored, so one is refused; else
 * dist/bench/`script` runs as a process of its own with `args` (after `prefix`: taskset), and this exits with its
 * status.
 */
function runAlone(
  flag: string,
  what: string,
  allowed: string[],
  allowedText: string,
  script: string,
  args: string[],
  prefix: string[] = [],
): never {
  const others = tokens.flatMap((t) =>
    t.kind === 'option' && t.name !== flag && !allowed.includes(t.name) ? [`--${t.name}`] : [],
  );
  if (others.length > 0) {
    process.stderr.write(`--${flag} runs ${what} alone (${allowedText}): ${others.join(', ')} does not apply\n`);
    process.exit(2);
  }
  const argv = [...prefix, process.execPath, path.join(ROOT, 'dist/bench', script), ...args];
  const r = spawnSync(argv[0] as string, argv.slice(1), { stdio: 'inherit' });
  if (r.error) process.stderr.write(`bench: could not run ${argv.join(' ')}: ${r.error.message}\n`);
  else if (r.signal) process.stderr.write(`bench: ${what} was stopped by ${r.signal}\n`);
  process.exit(r.status ?? 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
