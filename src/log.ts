/**
 * Logging: pino, one JSON object per line, or a short readable line per event when writing to a terminal.
 * Library code never logs secrets, proofs or message contents; it logs at `info` only per connection, never per message.
 */
import { format } from 'node:util';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** Human-readable lines instead of JSON (the default when `stream` is a terminal). */
  pretty?: boolean;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** A logger that writes nothing: the default for library users who pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stdout;
  const pretty = options.pretty ?? stream.isTTY === true;
  const level = options.level ?? 'info';
  if (!pretty && stream === process.stdout) {
    // Synchronous: a line logged just before the process exits is not lost.
    return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 1, sync: true }));
  }
  const destination: DestinationStream = {
    write: (line: string) => {
      stream.write(pretty ? prettyLine(line) : line);
    },
  };
  return pino({ level, base: { pid: process.pid } }, destination);
}

/** pino's name of a level number ('info' for 30), or undefined for a number it does not know. */
export function levelName(n: number): pino.Level | undefined {
  return pino.levels.labels[n] as pino.Level | undefined;
}

const COLOURS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };

/** C0 and C1 control characters, DEL, line and paragraph separators, and Unicode's bidirectional controls. */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');

/**
 * A string with its control characters written as escapes (`\x1b`, `\u202e`): what a peer sent (a service name, a
 * close reason, a certificate's name), printed on an operator's terminal, can neither move its cursor, nor change its
 * colours or title, nor reorder the text around it.
 */
export function escapeControl(s: string): string {
  if (!UNSAFE.test(s)) return s;
  return s.replace(UNSAFE_ALL, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

/** `12:01:02.345 INFO  listening  port=1234 services=["nameServer"]`, coloured by level. */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { level, time, msg, pid: _pid, hostname: _host, err, ...rest } = o;
  const t = new Date(typeof time === 'number' ? time : Date.now()).toISOString().slice(11, 23);
  const lv = typeof level === 'number' ? level : 30;
  // Everything that came from the log call is escaped: some of it came from peers.
  const fields = Object.entries(rest)
    .map(
      ([k, v]) =>
        `${escapeControl(k)}=${escapeControl(typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v))}`,
    )
    .join(' ');
  let line = `${t} \x1b[${COLOURS[lv] ?? '0'}m${(levelName(lv) ?? String(lv)).toUpperCase().padEnd(5)}\x1b[0m ${escapeControl(format('%s', msg ?? ''))}${fields ? `  ${fields}` : ''}\n`;
  if (err && typeof err === 'object' && typeof (err as { stack?: unknown }).stack === 'string') {
    line += `${(err as { stack: string }).stack
      .split('\n')
      .map((l) => `    ${escapeControl(l)}`)
      .join('\n')}\n`;
  }
  return line;
}

/**
 * Logs an event that a flood could repeat (refused connections, failed TLS handshakes) at most once per `interval`
 * ms, with the number of events since the last line.
 */
export class ThrottledLog {
  private count = 0;
  private last = 0;
  constructor(
    private readonly log: Logger,
    private readonly level: 'info' | 'warn',
    private readonly interval = 10_000,
  ) {}

  note(fields: Record<string, unknown>, message: string): void {
    this.count++;
    const now = Date.now();
    if (now - this.last < this.interval) return;
    this.log[this.level]({ ...fields, times: this.count }, message);
    this.count = 0;
    this.last = now;
  }
}
