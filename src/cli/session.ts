/**
 * `chan connect HOST PORT SERVICE SECRET`: a session the way the book's Erlang shell reads. Type a term ending in `.`:
 *
 *   cast {store, joe, "writing a book"}.    sends it, waits for nothing
 *   rpc {lookup, joe}.                      waits for the answer and prints it: {ok,"writing a book"}
 *   {lookup, joe}.                          the same as rpc
 *   help                                    lists the commands
 *   quit                                    ends the session (so does end of input)
 *
 * A term may span lines. Pushes from the server are printed as they arrive, above the line being typed. With `--json`
 * each line is one JSON value instead. On a terminal: line editing, Tab completion of the commands, a history kept in
 * ~/.chan_history, colours. With piped input it reads to the end, waits for every answer, and exits 0 (1 if any
 * command failed or the server closed the connection).
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Channel } from '../client.js';
import { ChanError } from '../errors.js';
import { JsonTermError, formatJsonTerm, parseJsonTerm } from '../term/json.js';
import type { Term } from '../term/model.js';
import { formatTerm } from '../term/print.js';
import { parseTerm, TermSyntaxError } from '../term/parse.js';
import { EXIT_FAILURE, EXIT_OK, failureLine, stdinLines } from './common.js';

export const SESSION_HELP = `commands (a term ends with '.'):
  cast TERM.   send TERM, wait for nothing        cast {store, joe, "writing a book"}.
  rpc TERM.    send TERM and print the answer     rpc {lookup, joe}.
  TERM.        the same as rpc                    {lookup, joe}.
  help         this list
  quit         end the session (so does Ctrl-D)
answers and pushes print as Erlang terms; atoms are bare (joe), strings quoted ("joe")`;

export const SESSION_HELP_JSON = `commands (one JSON value per line):
  cast JSON    send it, wait for nothing          cast {"$tuple": [{"$atom": "store"}, {"$atom": "joe"}, "writing a book"]}
  rpc JSON     send it and print the answer       rpc {"$tuple": [{"$atom": "lookup"}, {"$atom": "joe"}]}
  JSON         the same as rpc
  help, quit
atoms are {"$atom": "name"}, tuples {"$tuple": [...]}, binaries {"$binary": "base64"}
JSON's 1 and 1.0 are both the integer 1: the float 1.0 is {"$float": 1}`;

const COMMANDS = ['cast ', 'rpc ', 'help', 'quit'];
/** Lines of history kept in the history file. */
export const HISTORY_LINES = 1000;

type Command = { kind: 'cast' | 'rpc'; text: string } | { kind: 'help' | 'quit' } | { kind: 'empty' };

export function readCommand(input: string): Command {
  const text = input.trim();
  if (text === '') return { kind: 'empty' };
  const bare = text.replace(/\.$/, '').trim();
  if (bare === 'help' || bare === 'h' || bare === '?') return { kind: 'help' };
  if (bare === 'quit' || bare === 'exit' || bare === 'q()' || bare === 'q') return { kind: 'quit' };
  const m = /^(cast|rpc)(?=[\s{[("'<#$\d-])\s*([\s\S]*)$/.exec(text);
  if (m) return { kind: m[1] as 'cast' | 'rpc', text: m[2] as string };
  return { kind: 'rpc', text };
}

/** Tab completion: the commands that start with what was typed, at the start of a line. */
export function complete(line: string): [string[], string] {
  const hits = COMMANDS.filter((c) => c.startsWith(line));
  return [hits.length > 0 ? hits : line === '' ? COMMANDS : [], line];
}

function historyFile(): string | null {
  const env = process.env['CHAN_HISTORY'];
  if (env === '') return null;
  return env ?? path.join(homedir(), '.chan_history');
}

export function loadHistory(file: string | null): string[] {
  if (!file) return [];
  try {
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    if (lines.length > HISTORY_LINES)
      writeFileSync(file, `${lines.slice(-HISTORY_LINES).join('\n')}\n`, { mode: 0o600 });
    return lines.slice(-HISTORY_LINES).reverse(); // readline wants the newest first
  } catch {
    return [];
  }
}

export interface SessionOptions {
  timeout?: number | undefined;
  json?: boolean;
}

export async function session(ch: Channel, service: string, o: SessionOptions = {}): Promise<number> {
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const colour = tty && !process.env['NO_COLOR'];
  const paint = (code: string, s: string): string => (colour ? `\x1b[${code}m${s}\x1b[0m` : s);
  const history = tty ? historyFile() : null;
  const { rl, iterator } = stdinLines(
    tty ? { completer: complete, history: loadHistory(history), historySize: HISTORY_LINES } : {},
  );
  const json = o.json === true;
  const show = (t: Term): string => (json ? formatJsonTerm(t) : formatTerm(t));
  const read = (text: string): Term => (json ? parseJsonTerm(text.trim()) : parseTerm(text));
  const prompt = paint('1', `${service}> `);
  const more = `${' '.repeat(Math.max(0, service.length - 3))}..> `;
  let failed = false;
  let quitting = false;

  const print = (line: string, stream: NodeJS.WriteStream = process.stdout): void => {
    if (tty) {
      // Print above the line being typed, then restore it.
      process.stdout.write('\r\x1b[K');
      stream.write(`${line}\n`);
      rl.prompt(true);
    } else {
      stream.write(`${line}\n`);
    }
  };
  const fail = (line: string): void => {
    failed = true;
    print(paint('31', line), process.stderr);
  };

  void (async () => {
    for await (const x of ch) print(tty ? `${paint('36', 'push')} ${show(x)}` : show(x));
  })().catch(() => {});
  void ch.closed.then((info) => {
    if (quitting) return;
    fail(`chan: ${info.reason === 'normal' ? 'closed' : info.reason}: the server closed the connection: ${info.text}`);
    rl.close();
  });

  if (tty) {
    process.stdout.write(`connected to ${service}; type help for the commands\n`);
    rl.setPrompt(prompt);
    rl.prompt();
  }
  let buffer = '';
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    if (history && next.value.trim() !== '') {
      try {
        appendFileSync(history, `${next.value}\n`, { mode: 0o600 });
      } catch {
        // a history that cannot be written is not worth failing a session for
      }
    }
    buffer += (buffer ? '\n' : '') + next.value;
    const cmd = json ? readJsonCommand(buffer) : readCommand(buffer);
    let done = true;
    try {
      switch (cmd.kind) {
        case 'empty':
          break;
        case 'help':
          print(json ? SESSION_HELP_JSON : SESSION_HELP);
          break;
        case 'quit':
          quitting = true;
          break;
        case 'cast':
          ch.cast(read(cmd.text));
          break;
        case 'rpc': {
          const term = read(cmd.text);
          print(show(await ch.rpc(term, o.timeout === undefined ? {} : { timeout: o.timeout })));
          break;
        }
      }
    } catch (err) {
      if (err instanceof TermSyntaxError && err.incomplete) {
        done = false;
      } else if (err instanceof TermSyntaxError || err instanceof JsonTermError) {
        fail(`chan: syntax: ${err.message}`);
      } else if (err instanceof ChanError) {
        fail(failureLine(err));
        if (ch.isClosed) break;
      } else {
        throw err;
      }
    }
    if (done) buffer = '';
    if (quitting) break;
    if (tty) {
      rl.setPrompt(done ? prompt : more);
      rl.prompt();
    }
  }
  quitting = true;
  if (buffer.trim() !== '') fail(`chan: syntax: input ended inside a term: ${buffer.trim().slice(0, 60)}`);
  rl.close();
  await ch.close();
  return failed ? EXIT_FAILURE : EXIT_OK;
}

/** In --json mode a command is one line: `cast JSON`, `rpc JSON`, `JSON`, `help`, `quit`. */
function readJsonCommand(input: string): Command {
  const text = input.trim();
  if (text === '') return { kind: 'empty' };
  if (text === 'help' || text === '?') return { kind: 'help' };
  if (text === 'quit' || text === 'exit') return { kind: 'quit' };
  const m = /^(cast|rpc)\s+([\s\S]*)$/.exec(text);
  if (m) return { kind: m[1] as 'cast' | 'rpc', text: m[2] as string };
  return { kind: 'rpc', text };
}
