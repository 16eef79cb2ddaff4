/** Running the real `chan` binary as a subprocess. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const CHAN = path.resolve('dist/src/cli.js');

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return runNode([CHAN, ...args], options);
}

/** Runs `node ARGS` (a script and its arguments) as {@link run} runs chan. */
export function runNode(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    // As for serve() below: memory: unless a test names a store.
    const env = { ...process.env, CHAN_STORE: 'memory:', ...options.env };
    const child = spawn(process.execPath, args, { env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/**
 * `chan serve` on a free port; resolves once its "listening" line names the port. Its store is `memory:` unless the
 * test names one (CHAN_STORE in `env`, or --store): tests must not share, or leave behind, the data/ of the checkout.
 */
/**
 * Every `chan serve` a test started and that has not exited: killed when this test process exits, so that a test that
 * timed out (its teardown never run) leaves no server behind holding a port and the runner's output pipe.
 */
const servers = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of servers) child.kill('SIGKILL');
});

export async function serve(
  args: string[],
  env: Record<string, string> = {},
): Promise<{
  child: ChildProcess;
  port: number;
  lines: string[];
  line: (re: RegExp, from?: number) => Promise<string>;
}> {
  const child = spawn(process.execPath, [CHAN, 'serve', ...args], {
    env: { ...process.env, CHAN_PORT: '0', CHAN_STORE: 'memory:', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.add(child);
  child.once('exit', () => servers.delete(child));
  const lines: string[] = [];
  const waiting = new Set<() => void>();
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      for (const w of [...waiting]) w();
      const m = /"msg":"listening"/.test(line) ? /"port":(\d+)/.exec(line) : null;
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`chan serve exited with ${code}: ${stderr}`)));
  });
  /** The first line from `from` on that matches `re`, once it has been printed. */
  const line = (re: RegExp, from = 0): Promise<string> =>
    new Promise((resolve) => {
      const look = (): void => {
        const found = lines.slice(from).find((l) => re.test(l));
        if (found === undefined) return;
        waiting.delete(look);
        resolve(found);
      };
      waiting.add(look);
      look();
    });
  return { child, port, lines, line };
}
