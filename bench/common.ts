/** What the benchmark scripts share: where `chan` is, running `chan bench --json` as a process, and medians. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import type { ScenarioResult } from '../src/bench/load.js';

/** The checkout (or packed app) root: this file is dist/bench/common.js there. */
export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const CHAN = path.join(ROOT, 'dist/src/cli.js');

/**
 * Runs `chan bench --json ARGS` as its own process (asynchronously: the caller may have servers' logs to drain), the
 * command line `prefix`ed (taskset, say); resolves with its results, or rejects with what it printed (or when it runs past
 * `timeout` ms; 0: no limit).
 */
export function chanBench(args: string[], prefix: string[] = [], timeout = 0): Promise<ScenarioResult[]> {
  const argv = [...prefix, process.execPath, CHAN, 'bench', '--json', ...args];
  return new Promise((resolve, reject) =>
    execFile(argv[0] as string, argv.slice(1), { encoding: 'utf8', maxBuffer: 1 << 22, timeout }, (err, out, errOut) =>
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

/** The CPUs this process may run on (its cpuset: /proc/self/status), else 0 to N-1. */
function allowedCpus(): number[] {
  try {
    const list = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
    const ids = list.split(',').flatMap((part) => {
      const [a, b] = part.split('-').map(Number);
      return b === undefined
        ? [a as number]
        : Array.from({ length: b - (a as number) + 1 }, (_, i) => (a as number) + i);
    });
    if (ids.length > 0 && ids.every(Number.isInteger)) return ids;
  } catch {
    // not Linux: fall back to the count
  }
  return cpus().map((_, i) => i);
}

/**
 * Where the benchmarks run servers and load generators, the same CPUs for every server and every load generator so that
 * each ratio compares like with like, among the CPUs this process may use: with 8 or more, servers on the third and
 * load generators on the fifth to eighth (CPU 2 and 4-7 on a whole machine); with 2 to 7, the first and the second;
 * with one, unpinned (null).
 */
export const PIN: { server: string; load: string } | null = ((ids: number[]) => {
  if (ids.length >= 8) return { server: String(ids[2]), load: ids.slice(4, 8).join(',') };
  if (ids.length >= 2) return { server: String(ids[0]), load: String(ids[1]) };
  return null;
})(allowedCpus());

/** A command line's prefix that runs it on `cpuList` (nothing when it is undefined). */
export function taskset(cpuList: string | undefined): string[] {
  return cpuList === undefined ? [] : ['taskset', '-c', cpuList];
}
