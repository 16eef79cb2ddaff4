/** `chan bench HOST PORT SERVICE SECRET`: a load generator against a name-server service (see bench/load.ts). */
import { execFileSync } from 'node:child_process';
import { SCENARIOS, formatResults, runLoad, type LoadSettings, type Scenario } from '../bench/load.js';
import type { ConnectOptions } from '../client.js';
import { EXIT_FAILURE, EXIT_OK, usageError } from './common.js';

export interface BenchArgs {
  scenario?: string[];
  c?: string;
  w?: string;
  d?: string;
  n?: string;
  size?: string;
  keys?: string;
  idle?: string;
  'server-pid'?: string;
  pin?: string;
  json?: boolean;
}

function positive(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw usageError(`${name} must be a positive whole number`);
  return Number(v);
}

export async function bench(host: string, port: number, service: string, secret: string | null, options: ConnectOptions, a: BenchArgs): Promise<number> {
  const scenarios = (a.scenario ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
  for (const s of scenarios) if (!(SCENARIOS as readonly string[]).includes(s)) throw usageError(`unknown scenario '${s}' (${SCENARIOS.join(', ')})`);
  const connections = (a.c ?? '1,16').split(',').map((c) => positive('-c', c, 1));
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
    duration: positive('-d', a.d, 5000),
    connections,
    window: positive('-w', a.w, 64),
    size: positive('--size', a.size, 100),
    keys: positive('--keys', a.keys, 1000),
    idle: positive('--idle', a.idle, 1000),
    ...(a.n !== undefined ? { count: positive('-n', a.n, 1) } : {}),
    ...(a['server-pid'] !== undefined ? { serverPid: positive('--server-pid', a['server-pid'], 1) } : {}),
    ...(tty ? { progress: (line: string) => process.stderr.write(`\r\x1b[K  ${line}`) } : {}),
  };
  const chosen = (scenarios.length > 0 ? scenarios : SCENARIOS) as Scenario[];
  const results = await runLoad({ host, port, service, secret, options }, chosen, settings);
  if (tty) process.stderr.write('\r\x1b[K');
  process.stdout.write(a.json ? `${JSON.stringify(results)}\n` : `${formatResults(results)}\n`);
  return results.some((r) => r.errors > 0) ? EXIT_FAILURE : EXIT_OK;
}
