/**
 * What every `chan` command shares: the failure line `chan: <word>: <what happened>` (exit 1), usage errors (exit 2),
 * reading a secret given as `-`, and connecting with lib_chan's error words.
 */
import { createInterface, type Interface, type ReadLineOptions } from 'node:readline';
import { ChanError, type ErrorCode } from '../errors.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An error that ends the command with `chan: <code>: <message>` and an exit status. */
export class CliExit extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function usageError(message: string): CliExit {
  return new CliExit(EXIT_USAGE, `chan: usage: ${message} (see chan --help)`);
}

/** The one line a failure prints. */
export function failureLine(err: unknown): string {
  // A call that failed because the server ended the connection is named by the server's reason (handlerError, ...).
  if (err instanceof ChanError && err.code === 'closed' && err.reason && err.reason !== 'normal') {
    // Named by the reason once: "channel closed (handlerError): ..." would say it twice.
    const text = err.message.replace(`channel closed (${err.reason}): `, '');
    return `chan: ${err.reason}: the server closed the connection: ${text}`;
  }
  if (err instanceof ChanError) return `chan: ${err.code}: ${err.message}`;
  return `chan: error: ${err instanceof Error ? err.message : String(err)}`;
}

export function failureStatus(code: ErrorCode): number {
  return code === 'usage' || code === 'badConfig' ? EXIT_USAGE : EXIT_FAILURE;
}

/** A positive whole number from the command line, or a usage error that says it must be `what`. */
export function positive(name: string, text: string, what = 'a positive whole number'): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw usageError(`${name} must be ${what}`);
  return Number(text);
}

export function parsePort(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535)
    throw usageError(`PORT must be a number from 0 to 65535, not '${text}'`);
  return Number(text);
}

/**
 * Lines of standard input, shared by everything that reads it (a secret given as `-`, then a session's terms).
 * Created on first use, so commands that never read stdin never hold it open.
 */
let lines: { rl: Interface; iterator: AsyncIterator<string> } | null = null;

/** `extra`: readline options (completer, history) for the first caller that creates the interface. */
export function stdinLines(extra: Partial<ReadLineOptions> = {}): { rl: Interface; iterator: AsyncIterator<string> } {
  if (!lines) {
    const rl = createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: process.stdin.isTTY === true,
      ...extra,
    });
    lines = { rl, iterator: rl[Symbol.asyncIterator]() };
  }
  return lines;
}

/**
 * The secret as given on the command line: `-` reads one line from standard input (without echo on a terminal), so
 * it stays out of shell history; an empty string means a service without a secret.
 */
export async function resolveSecret(arg: string): Promise<string | null> {
  if (arg === '') return null;
  if (arg !== '-') return arg;
  if (process.stdin.isTTY) return readHidden('secret: ');
  const next = await stdinLines().iterator.next();
  if (next.done) throw usageError('SECRET is -, but standard input ended before a line was read');
  return next.value;
}

export function readHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let secret = '';
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(secret);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new CliExit(130, 'chan: interrupted'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') secret = secret.slice(0, -1);
        else secret += ch;
      }
    };
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
