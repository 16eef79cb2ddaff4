#!/usr/bin/env node
// Two builds of lib-chan side by side, on pinned CPUs: did a change cost speed? For each build, `chan serve` (pinned
// to the servers' CPU) on a bench config, and `chan bench` (pinned to the load generators') against it, alternating
// builds round by round, the order reversed every other round (an even number of rounds gives each order as often);
// medians per scenario, and the second build's figures as ratios of the first's, from the same run.
//
//   node bench/compare-builds.mjs OLD_APP_DIR NEW_APP_DIR [ROUNDS] [DURATION_MS] [OUT_DIR]
//
// SCENARIOS=pipeline,cast (the environment) runs some of the scenarios only (default: rpc,pipeline,cast).
// NEW_SERVER_FLAGS='--max-semi-space-size=8' (the environment) gives the second build's server those Node flags: the
// same build twice, with and without a flag, measures what the flag costs. NEW_SERVER_ENV='CHAN_ADMIN_PORT=0' likewise
// sets variables for the second build's server only (space-separated NAME=VALUE): what a setting costs.
//
// An app dir holds dist/ and node_modules/ (the project root, or a packed copy). Pinned as every benchmark script is
// (bench/common.ts, PIN): with one CPU it runs unpinned and says so.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
// This checkout's build (built first): the medians every benchmark script shares.
import { PIN, median, spread, taskset } from '../dist/bench/common.js';

const [oldDir, newDir, roundsArg = '3', durationArg = '2000', outDir] = process.argv.slice(2);
if (!oldDir || !newDir) {
  console.error('usage: node bench/compare-builds.mjs OLD_APP_DIR NEW_APP_DIR [ROUNDS] [DURATION_MS] [OUT_DIR]');
  process.exit(2);
}
const rounds = Number(roundsArg);
const duration = Number(durationArg);
const SCENARIOS = process.env.SCENARIOS || 'rpc,pipeline,cast';

const dir = mkdtempSync(path.join(tmpdir(), 'chan-compare-'));
const conf = path.join(dir, 'bench.conf');
writeFileSync(
  conf,
  '{port, 0}.\n{host, "127.0.0.1"}.\n{max_connections, 20000}.\n{service, nameServer, password, "bench", mfa, mod_name_server, start_me_up, notUsed}.\n',
);

const pin = (cpuList, argv) => [...taskset(cpuList), ...argv];

const NEW_SERVER_FLAGS = (process.env.NEW_SERVER_FLAGS ?? '').split(' ').filter((f) => f !== '');
const NEW_SERVER_ENV = (process.env.NEW_SERVER_ENV ?? '').split(' ').filter((f) => f !== '');
for (const v of NEW_SERVER_ENV) {
  if (!/^[A-Z_][A-Z0-9_]*=/.test(v)) {
    console.error(`NEW_SERVER_ENV: ${v} is not NAME=VALUE`);
    process.exit(2);
  }
}

function serve(app, flags = [], extraEnv = []) {
  const [cmd, ...args] = pin(PIN?.server, [
    process.execPath,
    ...flags,
    path.join(app, 'dist/src/cli.js'),
    'serve',
    conf,
  ]);
  // memory: for both (a build that knows no store option ignores it): the same work on each side.
  const env = { ...process.env, CHAN_STORE: 'memory:' };
  for (const v of extraEnv) {
    const i = v.indexOf('=');
    env[v.slice(0, i)] = v.slice(i + 1);
  }
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c) => {
      buf += String(c);
      const m = /"port":(\d+)/.exec(buf);
      if (m) resolve({ app, child, port: Number(m[1]) });
    });
    child.once('exit', (code) => reject(new Error(`${app}: chan serve exited (${code}) before listening`)));
  });
}

function bench(s) {
  const argv = pin(PIN?.load, [
    process.execPath,
    path.join(s.app, 'dist/src/cli.js'),
    'bench',
    '--json',
    '-d',
    String(duration),
    '--server-pid',
    String(s.child.pid),
    '--scenario',
    SCENARIOS,
    '127.0.0.1',
    String(s.port),
    'nameServer',
    'bench',
  ]);
  return new Promise((resolve, reject) =>
    execFile(argv[0], argv.slice(1), { encoding: 'utf8', maxBuffer: 1 << 22 }, (err, out, errOut) =>
      err ? reject(new Error(errOut || err.message)) : resolve(JSON.parse(out)),
    ),
  );
}

const servers = [await serve(oldDir), await serve(newDir, NEW_SERVER_FLAGS, NEW_SERVER_ENV)];
// taskset execs node: each child's pid is its chan serve's, which `--server-pid` reads the CPU time of.
const results = servers.map(() => new Map());
try {
  for (let round = 1; round <= rounds; round++) {
    // The order reversed every other round: the build that runs second follows the other's last scenario, that server
    // still at work on the same CPU (its casts' garbage, by default; with SCENARIOS=rpc, 16 connections closing),
    // which would otherwise always be the new one.
    const order = round % 2 === 1 ? [0, 1] : [1, 0];
    for (const i of order) {
      const s = servers[i];
      process.stderr.write(`round ${round}/${rounds}: ${i === 0 ? 'old' : 'new'}\n`);
      for (const r of await bench(s)) results[i].set(r.name, [...(results[i].get(r.name) ?? []), r]);
    }
  }
} finally {
  for (const s of servers) s.child.kill();
}

const rows = [];
for (const name of results[0].keys()) {
  const [a, b] = results.map((m) => m.get(name) ?? []);
  const ops = [median(a.map((r) => r.opsPerSec)), median(b.map((r) => r.opsPerSec))];
  const cpu = [median(a.map((r) => r.serverCpuUs ?? Number.NaN)), median(b.map((r) => r.serverCpuUs ?? Number.NaN))];
  const p50 = [median(a.map((r) => r.p50)), median(b.map((r) => r.p50))];
  const range = (rs) => spread(rs.map((r) => r.opsPerSec));
  rows.push(
    `| ${name} | ${Math.round(ops[0])} (${range(a)}) | ${Math.round(ops[1])} (${range(b)}) | ${(ops[1] / ops[0]).toFixed(2)} | ${cpu[0].toFixed(1)} / ${cpu[1].toFixed(1)} | ${p50[0]} / ${p50[1]} |`,
  );
}
const table = [
  `${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}; ${PIN ? `server on CPU ${PIN.server}, load generator on ${PIN.load}` : 'unpinned'}; ${rounds} rounds of ${duration} ms, medians (range)${NEW_SERVER_FLAGS.length > 0 ? `; the new server run with ${NEW_SERVER_FLAGS.join(' ')}` : ''}${NEW_SERVER_ENV.length > 0 ? `; the new server's environment: ${NEW_SERVER_ENV.join(' ')}` : ''}`,
  '',
  '| scenario | old ops/s | new ops/s | new / old | server us/op (old / new) | p50 us (old / new) |',
  '| --- | --- | --- | --- | --- | --- |',
  ...rows,
].join('\n');
if (outDir) writeFileSync(path.join(outDir, 'compare.md'), `${table}\n`);
console.log(table);
