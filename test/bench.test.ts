import test from 'ava';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createHistogram } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { latencyCurve, type ScenarioResult } from '../src/bench/load.js';
import { run, runNode, serve } from './cli-helpers.js';
import { tempDir } from './helpers.js';

test('the latency curve: percentiles within 0.1% over six orders of magnitude, rising to the maximum', (t) => {
  const h = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  const values: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    const v = Math.round(10 ** (Math.random() * 6)) || 1;
    values.push(v);
    h.record(v);
  }
  values.sort((a, b) => a - b);
  for (const p of [50, 90, 99, 99.9]) {
    const exact = values[Math.ceil((p / 100) * values.length) - 1] as number;
    const got = h.percentile(p);
    t.true(Math.abs(got - exact) <= Math.max(1, exact * 0.001), `p${p}: ${got} vs ${exact}`);
  }
  const curve = latencyCurve(h);
  t.deepEqual(curve[0]?.[0], 0);
  t.deepEqual(curve.at(-1), [100, h.max]);
  for (let i = 1; i < curve.length; i++) {
    t.true((curve[i]?.[0] as number) > (curve[i - 1]?.[0] as number));
    t.true((curve[i]?.[1] as number) >= (curve[i - 1]?.[1] as number));
  }
  t.true(Math.abs(h.max - (values.at(-1) as number)) <= (values.at(-1) as number) * 0.001);
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
    '--idle-hold',
    '250',
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
  // The memory is read after holding the connections --idle-hold ms (the default, 1000 ms, would hold them at least
  // 2 s in all: at half of them and at the end; one hold of each would be 1.25 s, which this does not tell apart).
  const held = results.at(-1)?.seconds ?? 0;
  t.true(held >= 0.5 && held < 2, `idle took ${held} s`);
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

// Serial: it keeps a CPU busy for a second or two, which the other tests' timings should not share.
test.serial(
  'npm run bench -- --codec runs the codec and frame parser benchmarks beside msgpackr, and nothing else',
  async (t) => {
    const bench = path.resolve('dist/bench/run.js');
    const r = await runNode([bench, '--codec', '--ms', '2']);
    t.is(r.status, 0, r.stderr);
    // A row per value, lib-chan's figures and msgpackr's where it applies (strings, not atoms), then the parser's rows.
    t.regex(r.stdout, /^\| \{lookup, joe\} \| 19 \| [\d.]+ [kM]? ?\| [\d.]+ [kM]? ?\| - \| - \| - \|$/m);
    t.regex(
      r.stdout,
      /^\| \["lookup", "joe"\] \(the same, in strings\) \| 12 \|( [\d.]+ [kM]? ?\|){4} [\d.]+ \/ [\d.]+ \|$/m,
    );
    t.regex(r.stdout, /^\| 1024 KiB \| .* MB\/s \|$/m);
    t.notRegex(r.stderr, /round \d/, 'no end-to-end round was run');
    // --ms: a whole number from 1 to 60000; a word, or a number past either end, is refused.
    for (const ms of ['soon', '0', '60001']) {
      const bad = await runNode([bench, '--codec', '--ms', ms]);
      t.is(bad.status, 2, ms);
      t.is(bad.stderr, `--ms ${ms}: a whole number of milliseconds from 1 to 60000\n`);
      t.is(bad.stdout, '');
    }
    const stray = await runNode([bench, '--ms', '5']);
    t.is(stray.status, 2);
    t.regex(stray.stderr, /use it with --codec/);
    // An end-to-end option beside --codec would be ignored: refused before anything runs.
    const mixed = await runNode([bench, '--codec', '--write', '--only', 'rpc']);
    t.is(mixed.status, 2);
    t.regex(
      mixed.stderr,
      /--codec runs the codec benchmark alone \(its one option is --ms\): --write, --only does not apply/,
    );
    t.is(mixed.stdout, '');
  },
);

// Serial, as the codec's: it keeps a CPU busy.
test.serial(
  'npm run bench -- --inproc feeds each server through an in-memory pair, checks their answers, and prints the ratios',
  async (t) => {
    const bench = path.resolve('dist/bench/run.js');
    const r = await runNode([bench, '--inproc', '--rounds', '1', '--ms', '20']);
    t.is(r.status, 0, r.stderr);
    // A row per scenario: the null server's, the ceiling's and lib-chan's ns per message, the ratio of the two servers'
    // rates, and that ratio without what the null server takes (the feeding end and the streams).
    const figure = String.raw`(\d+) \(\d+-\d+\)`;
    const ratio = String.raw`\*\*([\d.]+)\*\* \([\d.]+-[\d.]+\)`;
    for (const scenario of ['cast', 'pipeline']) {
      const row = new RegExp(
        String.raw`^\| ${scenario} \| ${figure} \| ${figure} \| ${figure} \| ${ratio} \| ${ratio} \|$`,
        'm',
      );
      const m = row.exec(r.stdout);
      t.truthy(m, `${scenario}: ${r.stdout}`);
      const at = (i: number): number => Number(m?.[i]);
      const [none, ceiling, libChan, rate, beyond] = [at(1), at(2), at(3), at(4), at(5)];
      t.true(none >= 0 && ceiling > 0 && libChan > 0, scenario);
      t.true(Math.abs(rate - ceiling / libChan) < 0.01, `${scenario}: rate ${rate}`);
      const without = (ceiling - none) / (libChan - none);
      t.true(Math.abs(beyond - without) < 0.02, `${scenario}: ${beyond} beyond the null server, not ${without}`);
    }
    t.regex(r.stderr, /^cast round 1\/1: null\ncast round 1\/1: ceiling\ncast round 1\/1: lib-chan\n/);
    for (const [flag, value, why] of [
      ['--ms', '5', '--ms 5: a whole number of milliseconds from 10 to 60000'],
      ['--rounds', '0', '--rounds 0: a whole number from 1 to 1000'],
    ] as const) {
      const bad = await runNode([bench, '--inproc', flag, value]);
      t.is(bad.status, 2, flag);
      t.is(bad.stderr, `inproc: ${why}\n`);
      t.is(bad.stdout, '');
    }
    const mixed = await runNode([bench, '--inproc', '--only', 'rpc']);
    t.is(mixed.status, 2);
    t.regex(mixed.stderr, /--inproc runs the in-process benchmark alone .*: --only does not apply/);
    const both = await runNode([bench, '--inproc', '--codec']);
    t.is(both.status, 2);
    t.is(both.stderr, '--codec and --inproc are two benchmarks: run one at a time\n');
  },
);

test('chan bench with a wrong secret fails like any other command', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run(['bench', '-n', '10', '--scenario', 'rpc', 'localhost', String(port), 'nameServer', 'wrong']);
  t.is(r.status, 1);
  t.regex(r.stderr, /^chan: authFail:/);
});

const CHROMIUM = '/usr/bin/chromium';
if (existsSync(CHROMIUM)) {
  test('chan bench --report writes a page with each scenario in a table and its percentile curve, shown by a browser', async (t) => {
    const { child, port } = await serve([]);
    t.teardown(() => child.kill('SIGKILL'));
    const file = path.join(tempDir(), 'report.html');
    const r = await run([
      'bench',
      '-n',
      '300',
      '--scenario',
      'rpc,pipeline',
      '-c',
      '1',
      '--report',
      file,
      'localhost',
      String(port),
      'nameServer',
      'ABXy45',
    ]);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`report: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n$`));
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('requestfailed', (req) => errors.push(`request ${req.url()}`));
    await page.goto(pathToFileURL(file).href);
    t.regex((await page.title()) ?? '', /^chan bench: localhost:\d+ nameServer$/);
    t.deepEqual(await page.locator('tbody tr td:first-child').allTextContents(), ['rpc -c 1', 'pipeline -w 64']);
    t.is(await page.locator('section.scenario svg').count(), 2);
    const curves: string[] = await page
      .locator('polyline.curve')
      .evaluateAll((els) => els.map((e) => e.getAttribute('points') ?? ''));
    for (const points of curves) {
      const xy = points.split(' ').map((p) => p.split(',').map(Number));
      t.true(xy.length >= 5, 'a curve of several percentiles');
      t.true(xy.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
    }
    // Drawn: the curves have a size on the page.
    const box = await page.locator('polyline.curve').first().boundingBox();
    t.true((box?.width ?? 0) > 100);
    t.deepEqual(errors, [], 'self-contained: no script errors, nothing fetched');
  });
} else {
  console.log(`bench report browser test skipped: ${CHROMIUM} is not installed (Debian's chromium)`);
  test.skip('chan bench --report in a real browser (chromium not installed)', () => {});
}
