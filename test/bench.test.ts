import test from 'ava';
import { Histogram } from '../src/bench/histogram.js';
import type { ScenarioResult } from '../src/bench/load.js';
import { run, serve } from './cli-helpers.js';

test('the histogram keeps percentiles within 0.1% over six orders of magnitude', (t) => {
  const h = new Histogram();
  const values: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    const v = Math.round(10 ** (Math.random() * 6));
    values.push(v);
    h.record(v);
  }
  values.sort((a, b) => a - b);
  for (const p of [50, 90, 99, 99.9]) {
    const exact = values[Math.ceil((p / 100) * values.length) - 1] as number;
    const got = h.percentile(p);
    t.true(Math.abs(got - exact) <= Math.max(1, exact * 0.001), `p${p}: ${got} vs ${exact}`);
  }
  t.is(h.max, values.at(-1) as number);
  t.is(h.count, 100_000);
});

test('chan bench runs every scenario against chan serve, checks every answer, and reports them', async (t) => {
  const { child, port } = await serve([], {
    CHAN_MAX_UNAUTHENTICATED: '200',
    CHAN_MAX_UNAUTHENTICATED_PER_ADDRESS: '200',
  });
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run([
    'bench',
    '--json',
    '-n',
    '300',
    '-c',
    '1,4',
    '--idle',
    '40',
    '--keys',
    '50',
    '--server-pid',
    String(child.pid),
    'localhost',
    String(port),
    'nameServer',
    'ABXy45',
  ]);
  t.is(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout) as ScenarioResult[];
  t.deepEqual(
    results.map((x) => x.name),
    ['rpc -c 1', 'rpc -c 4', 'pipeline -w 64', 'cast', 'connect -c 1', 'connect -c 4', 'idle 40'],
  );
  for (const x of results) {
    t.is(x.errors, 0, x.name);
    t.true(x.opsPerSec > 0, x.name);
    t.true(x.p50 <= x.p99 && x.p99 <= x.max, x.name);
    t.true(typeof x.serverCpuUs === 'number', x.name);
  }
  t.true(typeof results.at(-1)?.bytesPerConnection === 'number');
  const table = await run([
    'bench',
    '-n',
    '50',
    '--scenario',
    'rpc',
    '-c',
    '1',
    'localhost',
    String(port),
    'nameServer',
    'ABXy45',
  ]);
  t.regex(table.stdout, /^scenario +ops\/s +p50 +p90 +p99 +p99\.9 +max +client us\/op +server us\/op\nrpc -c 1 +\d+/);
});

test('chan bench with a wrong secret fails like any other command', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run(['bench', '-n', '10', '--scenario', 'rpc', 'localhost', String(port), 'nameServer', 'wrong']);
  t.is(r.status, 1);
  t.regex(r.stderr, /^chan: authFail:/);
});
