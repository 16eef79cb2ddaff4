/**
 * The admin port's timings (rpc times by service; store operations by backend and operation, with their failures),
 * counted in plain fields and read when scraped: the text they give is prom-client's own for the same observations;
 * a store's operations, each reported once, failures included.
 */
import { rmSync } from 'node:fs';
import test from 'ava';
import { Counter, Histogram, Registry } from 'prom-client';
import { RPC_BUCKETS, RpcClock, STORE_BUCKETS, ServerMetrics } from '../src/metrics.js';
import { openStore } from '../src/store/index.js';
import { observedStore } from '../src/store/observed.js';
import { atom } from '../src/term/index.js';
import { tempDir } from './helpers.js';

/** The lines of one metric family (its HELP, TYPE and samples), in the order given. */
function family(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name}_`) || l.includes(` ${name} `));
}

/** Times that fall below, on, between and past the buckets' bounds. */
function timesFor(bounds: readonly number[]): number[] {
  const last = bounds.at(-1) as number;
  return [0, (bounds[0] as number) / 2, ...bounds, ...bounds.map((b) => b * 1.5), last * 3, 1e-9, 0.0042];
}

test("rpc and store timings read as prom-client's histograms and counters would show the same observations", async (t) => {
  const metrics = new ServerMetrics();
  const oracle = new Registry();
  const rpcs = new Histogram({
    name: 'libchan_rpc_duration_seconds',
    help: "Time from an rpc's arrival to its answer being sent, by service.",
    labelNames: ['service'],
    buckets: RPC_BUCKETS,
    registers: [oracle],
  });
  const ops = new Counter({
    name: 'libchan_store_operations_total',
    help: 'Store operations of the services on the main thread, by backend (memory, lmdb, redis) and operation.',
    labelNames: ['backend', 'op'],
    registers: [oracle],
  });
  const errors = new Counter({
    name: 'libchan_store_errors_total',
    help: 'Store operations that failed, by backend and operation.',
    labelNames: ['backend', 'op'],
    registers: [oracle],
  });
  const storeTimes = new Histogram({
    name: 'libchan_store_duration_seconds',
    help: 'How long store operations took, by backend and operation.',
    labelNames: ['backend', 'op'],
    buckets: STORE_BUCKETS,
    registers: [oracle],
  });
  for (const service of ['nameServer', 'math']) {
    for (const s of timesFor(RPC_BUCKETS)) {
      metrics.rpc(service, s);
      rpcs.observe({ service }, s);
    }
  }
  let n = 0;
  // First seen in this order (not grouped by backend): prom-client lists the series in the order they were first seen.
  for (const [backend, op] of [
    ['memory', 'get'],
    ['lmdb', 'get'],
    ['memory', 'put'],
  ] as const) {
    for (const s of timesFor(STORE_BUCKETS)) {
      // Every fifth of them failed, except on lmdb's gets: a backend and op without failures has no error series.
      const failed = backend !== 'lmdb' && n++ % 5 === 0;
      metrics.store(backend, op, s, failed);
      ops.inc({ backend, op });
      storeTimes.observe({ backend, op }, s);
      if (failed) errors.inc({ backend, op });
    }
  }
  const ours = await metrics.registry.metrics();
  const theirs = await oracle.metrics();
  for (const name of [
    'libchan_rpc_duration_seconds',
    'libchan_store_operations_total',
    'libchan_store_errors_total',
    'libchan_store_duration_seconds',
  ]) {
    const lines = family(ours, name);
    t.true(lines.length > 2, name);
    t.deepEqual(lines, family(theirs, name), name);
  }
  t.true(
    ours.includes(`libchan_rpc_duration_seconds_bucket{le="+Inf",service="math"} ${timesFor(RPC_BUCKETS).length}\n`),
  );
  // As the primary reads a process's figures to sum them across processes.
  const ourJson = await metrics.registry.getMetricsAsJSON();
  const theirJson = await oracle.getMetricsAsJSON();
  for (const { name } of theirJson) {
    t.deepEqual(
      ourJson.find((m) => m.name === name),
      theirJson.find((m) => m.name === name),
      name,
    );
  }
  // Reset (a registry's resetMetrics): nothing counted, and counting again from nothing.
  metrics.registry.resetMetrics();
  metrics.rpc('math', 0.003);
  const after = await metrics.registry.metrics();
  t.deepEqual(family(after, 'libchan_store_duration_seconds'), [
    '# HELP libchan_store_duration_seconds How long store operations took, by backend and operation.',
    '# TYPE libchan_store_duration_seconds histogram',
  ]);
  t.true(after.includes('libchan_rpc_duration_seconds_count{service="math"} 1\n'));
  t.false(after.includes('service="nameServer"'));
});

test('an rpc is timed from its first arrival to its answer, once; an answer to an rpc not timed is not counted', async (t) => {
  const metrics = new ServerMetrics();
  const clock = RpcClock.for(metrics, 'nameServer');
  t.truthy(clock);
  // Many at once (kept in a Map, not in the clock's own fields), answered out of order, some twice.
  for (let id = 1; id <= 40; id++) clock?.arrived(id);
  clock?.arrived(3);
  for (let id = 40; id >= 1; id -= 2) clock?.answered(id);
  for (let id = 1; id <= 40; id++) clock?.answered(id);
  clock?.answered(41);
  const text = await metrics.registry.metrics();
  t.true(text.includes('libchan_rpc_duration_seconds_count{service="nameServer"} 40\n'));
  t.is(RpcClock.for(undefined, 'nameServer'), null);
});

test('a time that is not a number is not counted (it would make the sum NaN for good)', async (t) => {
  const metrics = new ServerMetrics();
  metrics.rpc('nameServer', 0.002);
  metrics.rpc('nameServer', Number.NaN);
  metrics.rpc('nameServer', Number.POSITIVE_INFINITY);
  const text = await metrics.registry.metrics();
  t.true(text.includes('libchan_rpc_duration_seconds_count{service="nameServer"} 1\n'));
  t.true(text.includes('libchan_rpc_duration_seconds_sum{service="nameServer"} 0.002\n'));
});

test('every store operation is counted once, with its failures: at once (getNow, putNow) or awaited, on a real LMDB store', async (t) => {
  const metrics = new ServerMetrics();
  const dir = tempDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = observedStore(await openStore(`lmdb:${dir}`), 'lmdb', metrics);
  const ns = await store.namespace('nameServer');
  t.true(ns.putNow?.(atom('joe'), 'writing a book', 20, 1000)?.stored);
  t.is(ns.getNow?.(atom('joe')), 'writing a book');
  t.is(await ns.get(atom('nobody')), undefined);
  t.true(await ns.delete(atom('joe')));
  // Closed under them (as a server that is stopping): each kind of operation fails, and says why.
  await store.close();
  t.throws(() => ns.getNow?.(atom('joe')), { message: /the store is closed/ });
  t.throws(() => ns.putNow?.(atom('joe'), 'again', 5, 1000), { message: /the store is closed/ });
  await t.throwsAsync(ns.get(atom('joe')), { message: /the store is closed/ });
  const text = await metrics.registry.metrics();
  const at = (series: string) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(`${series} `))
        ?.split(' ')[1],
    );
  t.is(at('libchan_store_operations_total{backend="lmdb",op="get"}'), 4);
  t.is(at('libchan_store_operations_total{backend="lmdb",op="put"}'), 2);
  t.is(at('libchan_store_operations_total{backend="lmdb",op="delete"}'), 1);
  t.is(at('libchan_store_errors_total{backend="lmdb",op="get"}'), 2);
  t.is(at('libchan_store_errors_total{backend="lmdb",op="put"}'), 1);
  t.false(text.includes('libchan_store_errors_total{backend="lmdb",op="delete"}'));
  t.is(at('libchan_store_duration_seconds_count{backend="lmdb",op="get"}'), 4);
});
