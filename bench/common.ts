/** What the benchmark scripts share: where `chan` is, running `chan bench --json` as a process, and medians. */
import { execFile } from 'node:child_process';
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
