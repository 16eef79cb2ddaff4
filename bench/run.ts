/**
 * `npm run bench`: lib-chan against the plain-`net` baseline (bench/baseline.ts), and TLS against plain, in one run;
 * then bench/scale.ts (the store backends, and several processes against one).
 *
 * Starts, as separate processes, `chan serve` on a bench config (plain and TLS) and the baseline; runs `chan bench` (a
 * third process) against each, alternating, for several rounds; prints each lib-chan figure as a ratio of the
 * baseline's measured in the same run (medians of the rounds), and TLS as a ratio of plain. `--write` puts the table
 * into docs/BENCHMARKS.md with the machine, the Node version and the date.
 *
 *   npm run bench [-- --rounds 3] [-- --duration 3000] [-- --idle 10000] [-- --write]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ScenarioResult } from '../src/bench/load.js';
import { writeCerts } from '../src/certs.js';
import { replaceBetween } from '../scripts/markers.js';
import { CHAN, ROOT, chanBench, median } from './common.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3000' },
    idle: { type: 'string', default: '10000' },
    write: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const idle = Number(values.idle);

interface Server {
  name: string;
  child: ChildProcess;
  port: number;
  secret: string;
  client: string[];
}

function start(
  name: string,
  args: string[],
  env: Record<string, string>,
  secret: string,
  client: string[],
): Promise<Server> {
  const child = spawn(process.execPath, args, {
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
        resolve({ name, child, port: Number(m[1]), secret, client });
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening`)));
  });
}

/** Runs `chan bench` against `s`, as its own process: this process must keep draining the servers' logs. */
function bench(s: Server, scenarios: string, extra: string[] = []): Promise<ScenarioResult[]> {
  const args = ['-d', String(duration), '--server-pid', String(s.child.pid), '--scenario', scenarios, ...s.client];
  return chanBench([...args, ...extra, '127.0.0.1', String(s.port), 'nameServer', s.secret]).catch((err: Error) => {
    throw new Error(`chan bench against ${s.name} failed: ${err.message}`);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'chan-bench-'));
  writeCerts({ out: dir, hosts: ['localhost', '127.0.0.1'], days: 1, clients: [], force: true });
  const base = `{port, 0}.\n{host, "127.0.0.1"}.\n{max_connections, 20000}.\n{max_unauthenticated, 1024}.\n{service, nameServer, password, "bench", mfa, mod_name_server, start_me_up, notUsed}.\n`;
  writeFileSync(path.join(dir, 'plain.conf'), base);
  writeFileSync(path.join(dir, 'tls.conf'), `${base}{tls, [{cert, "server.pem"}, {key, "server-key.pem"}]}.\n`);
  const servers: Server[] = [];
  try {
    // memory:, as the baseline keeps its names: the same work on both sides of each ratio.
    const memory = { CHAN_STORE: 'memory:' };
    servers.push(await start('lib-chan', [CHAN, 'serve', path.join(dir, 'plain.conf')], memory, 'bench', []));
    servers.push(await start('baseline', [path.join(ROOT, 'dist/bench/baseline.js')], {}, '', []));
    servers.push(
      await start('lib-chan TLS', [CHAN, 'serve', path.join(dir, 'tls.conf')], memory, 'bench', [
        '--tls',
        '--ca',
        path.join(dir, 'ca.pem'),
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
      for (const s of servers) {
        process.stderr.write(`round ${round}/${rounds}: ${s.name}\n`);
        keep(s, await bench(s, 'rpc,pipeline,cast,connect'));
      }
    }
    // Sequential latency with client and server on one CPU: unpinned, it measures how long the VM takes to wake a CPU.
    for (const s of servers.slice(0, 2)) {
      execFileSync('taskset', ['-a', '-p', '-c', '0', String(s.child.pid)], { stdio: 'ignore' });
      for (let round = 1; round <= rounds; round++) {
        const [r] = await bench(s, 'rpc', ['-c', '1', '--pin', '0']);
        if (r) keep(s, [{ ...r, name: 'rpc -c 1 pinned' }]);
      }
      execFileSync('taskset', ['-a', '-p', '-c', `0-${cpus().length - 1}`, String(s.child.pid)], { stdio: 'ignore' });
    }
    for (const s of servers.slice(0, 2)) {
      process.stderr.write(`idle: ${idle} connections to ${s.name}\n`);
      keep(s, await bench(s, 'idle', ['--idle', String(idle)]));
    }
  } finally {
    for (const s of servers) s.child.kill();
  }

  const med = (server: string, scenario: string, f: (r: ScenarioResult) => number | undefined): number | undefined => {
    const rs = results.get(server)?.get(scenario) ?? [];
    const xs = rs.map(f).filter((x): x is number => x !== undefined);
    return xs.length > 0 ? median(xs) : undefined;
  };
  const scenarios = [...(results.get('lib-chan')?.keys() ?? [])];
  const fmt = (v: number | undefined, digits = 0): string => (v === undefined ? '-' : v.toFixed(digits));
  const rows = scenarios.map((sc) => {
    const lc = med('lib-chan', sc, (r) => r.opsPerSec);
    const bl = med('baseline', sc, (r) => r.opsPerSec);
    const tls = med('lib-chan TLS', sc, (r) => r.opsPerSec);
    const isIdle = sc.startsWith('idle');
    return [
      sc,
      isIdle
        ? `${fmt(med('lib-chan', sc, (r) => r.bytesPerConnection))} B/conn (marginal ${fmt(med('lib-chan', sc, (r) => r.marginalBytesPerConnection))})`
        : fmt(lc),
      isIdle
        ? `${fmt(med('baseline', sc, (r) => r.bytesPerConnection))} B/conn (marginal ${fmt(med('baseline', sc, (r) => r.marginalBytesPerConnection))})`
        : fmt(bl),
      lc !== undefined && bl !== undefined && !isIdle ? (lc / bl).toFixed(2) : '-',
      `${fmt(med('lib-chan', sc, (r) => r.p50))} / ${fmt(med('baseline', sc, (r) => r.p50))}`,
      `${fmt(med('lib-chan', sc, (r) => r.p99))} / ${fmt(med('baseline', sc, (r) => r.p99))}`,
      `${fmt(
        med('lib-chan', sc, (r) => r.serverCpuUs),
        1,
      )} / ${fmt(
        med('baseline', sc, (r) => r.serverCpuUs),
        1,
      )}`,
      tls !== undefined && lc !== undefined && !isIdle ? (tls / lc).toFixed(2) : '-',
    ];
  });
  const head = [
    'scenario',
    'lib-chan ops/s',
    'baseline ops/s',
    'ratio',
    'p50 us (lc / base)',
    'p99 us (lc / base)',
    'server us/op (lc / base)',
    'TLS / plain',
  ];
  const table = [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  const machine = `${cpus().length} x ${cpus()[0]?.model ?? '?'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; ${rounds} rounds of ${duration} ms per scenario, medians; idle: ${idle} connections`;
  process.stdout.write(`\n${machine}\n\n${table}\n`);
  if (values.write) {
    replaceBetween(path.join(ROOT, 'docs/BENCHMARKS.md'), 'bench', [machine, '', table]);
    process.stderr.write('written to docs/BENCHMARKS.md\n');
  }
  // Then the store backends and the processes (bench/scale.ts), with the same rounds and duration.
  execFileSync(
    process.execPath,
    [path.join(ROOT, 'dist/bench/scale.js'), '--rounds', String(rounds), '--duration', String(duration)],
    { stdio: 'inherit' },
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
