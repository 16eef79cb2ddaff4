/** `chan bench HOST PORT SERVICE SECRET`: a load generator against a name-server service (see bench/load.ts). */
import { execFileSync } from 'node:child_process';
import {
  DEFAULT_SCENARIOS,
  SCENARIOS,
  formatResults,
  parseIdleHold,
  runLoad,
  type LoadSettings,
  type Scenario,
} from '../bench/load.js';
import type { Destination } from '../client-options.js';
import { writeFileSync } from 'node:fs';
import { renderReport } from '../bench/report.js';
import { ChanError } from '../errors.js';
import { EXIT_FAILURE, EXIT_OK, positive, usageError } from './common.js';

export interface BenchArgs {
  scenario?: string[];
  c?: string;
  w?: string;
  d?: string;
  n?: string;
  size?: string;
  keys?: string;
  idle?: string;
  'idle-hold'?: string;
  'server-pid'?: string;
  pin?: string;
  json?: boolean;
  report?: string;
}

/** A positive whole number given as `name`, or `dflt` when it was not given. */
function orDefault(name: string, v: string | undefined, dflt: number): number {
  return v === undefined ? dflt : positive(name, v);
}

function idleHold(text: string): number {
  const ms = parseIdleHold(text);
  if (typeof ms !== 'number') throw usageError(ms.refused);
  return ms;
}

export async function bench(target: Destination, a: BenchArgs): Promise<number> {
  const scenarios = (a.scenario ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
  for (const s of scenarios)
    if (!(SCENARIOS as readonly string[]).includes(s))
      throw usageError(`unknown scenario '${s}' (${SCENARIOS.join(', ')})`);
  const connections = (a.c ?? '1,16').split(',').map((c) => positive('-c', c));
  if (a.pin !== undefined) {
    // Pinned to one CPU (with the server pinned to the same one), sequential latency stops measuring how long this
    // machine takes to wake an idle CPU.
    try {
      execFileSync('taskset', ['-p', '-c', a.pin, String(process.pid)], { stdio: 'ignore' });
    } catch (err) {
      throw usageError(`--pin ${a.pin}: taskset failed (${(err as Error).message})`);
    }
  }
  const tty = process.stderr.isTTY === true && !a.json;
  const settings: LoadSettings = {
    duration: orDefault('-d', a.d, 5000),
    connections,
    window: orDefault('-w', a.w, 64),
    size: orDefault('--size', a.size, 100),
    keys: orDefault('--keys', a.keys, 1000),
    idle: orDefault('--idle', a.idle, 1000),
    ...(a['idle-hold'] !== undefined ? { idleHold: idleHold(a['idle-hold']) } : {}),
    ...(a.n !== undefined ? { count: positive('-n', a.n) } : {}),
    ...(a['server-pid'] !== undefined ? { serverPid: positive('--server-pid', a['server-pid']) } : {}),
    ...(tty ? { progress: (line: string) => process.stderr.write(`\r\x1b[K  ${line}`) } : {}),
  };
  const chosen = (scenarios.length > 0 ? scenarios : DEFAULT_SCENARIOS) as Scenario[];
  const results = await runLoad(target, chosen, settings);
  if (tty) process.stderr.write('\r\x1b[K');
  process.stdout.write(a.json ? `${JSON.stringify(results)}\n` : `${formatResults(results)}\n`);
  if (a.report !== undefined) {
    const page = renderReport(results, {
      target: `${target.host}:${target.port} ${target.service}`,
      date: new Date(),
      settings: {
        ...(settings.count !== undefined ? { operations: settings.count } : { 'duration ms': settings.duration }),
        connections: settings.connections.join(','),
        window: settings.window,
        'value bytes': settings.size,
        keys: settings.keys,
      },
    });
    try {
      writeFileSync(a.report, page);
    } catch (err) {
      throw new ChanError('usage', `--report ${a.report}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!a.json) process.stdout.write(`report: ${a.report}\n`);
  }
  return results.some((r) => r.errors > 0) ? EXIT_FAILURE : EXIT_OK;
}
