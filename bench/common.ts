/** What the benchmark scripts share: where `chan` is, running `chan bench --json` as a process, and medians. */
import { execFile } from 'node:child_process';
import { cpus } from 'node:os';
import path from 'node:path';
import type { ScenarioResult } from '../src/bench/load.js';

/** The checkout (or packed app) root: this file is dist/bench/common.js there. */
export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const CHAN = path.join(ROOT, 'dist/src/cli.js');

/**
 * Runs `chan bench --json ARGS` as its own process (asynchronously: the caller may have servers' logs to drain), the
 * command line `prefix`ed (taskset, say); resolves with its results, or rejects with what it printed.
 */
export function chanBench(args: string[], prefix: string[] = []): Promise<ScenarioResult[]> {
  const argv = [...prefix, process.execPath, CHAN, 'bench', '--json', ...args];
  return new Promise((resolve, reject) =>
    execFile(argv[0] as string, argv.slice(1), { encoding: 'utf8', maxBuffer: 1 << 22 }, (err, out, errOut) =>
      err ? reject(new Error(errOut || err.message)) : resolve(JSON.parse(out) as ScenarioResult[]),
    ),
  );
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The range of `xs`, rounded: "lowest-highest". */
export function spread(xs: readonly number[]): string {
  return `${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))}`;
}

/**
 * Where the benchmarks run servers and load generators, the same CPUs for every server and every load generator so that
 * each ratio compares like with like: with 8 CPUs or more, servers on CPU 2 and load generators on 4-7; with 2 to 7,
 * servers on CPU 0 and load generators on CPU 1; with one, unpinned (null).
 */
export const PIN: { server: string; load: string } | null = ((n: number) => {
  if (n >= 8) return { server: '2', load: '4-7' };
  if (n >= 2) return { server: '0', load: '1' };
  return null;
})(cpus().length);

/** A command line's prefix that runs it on `cpuList` (nothing when it is undefined). */
export function taskset(cpuList: string | undefined): string[] {
  return cpuList === undefined ? [] : ['taskset', '-c', cpuList];
}
