/**
 * `chan connect HOST PORT SERVICE SECRET`: a session the way the book's Erlang shell reads. Type a term ending in `.`:
 *
 *   cast {store, joe, "writing a book"}.    sends it, waits for nothing
 *   rpc {lookup, joe}.                      waits for the answer and prints it: {ok,"writing a book"}
 *   {lookup, joe}.                          the same as rpc
 *   help                                    lists the commands
 *   quit                                    ends the session (so does end of input)
 *
 * As in erl, a term ends with `.`: Enter without one continues it on the next line (`..>`), and a line may hold
 * several (`{lookup, joe}. {lookup, jim}.` sends both, in order). Pushes from the server are printed as they arrive,
 * above the line being typed. With `--json` each line is one JSON value instead. On a terminal: line editing, Tab
 * completion of the commands and of the atoms the session has seen, a history kept in ~/.chan_history (a term typed
 * over several lines is one entry), colours; Ctrl-C clears the line being typed (or the term being continued), or
 * abandons the rpc being waited for, and returns to the prompt; Ctrl-D on an empty line (or `quit`) leaves. With piped
 * input it reads to the end, waits for every answer, and exits 0 (1 if any command failed or the server closed the
 * connection).
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Channel } from '../client.js';
import { ChanError } from '../errors.js';
import { JsonTermError, formatJsonTerm, parseJsonTerm } from '../term/json.js';
import { Atom, Tuple, type Term } from '../term/model.js';
import { formatTerm } from '../term/print.js';
import { parseTerm, TermSyntaxError } from '../term/parse.js';
import { EXIT_FAILURE, EXIT_OK, failureLine, stdinLines } from './common.js';

export const SESSION_HELP = `commands (a term ends with '.'; Enter without one continues it; Ctrl-C clears or abandons):
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
/** Atoms remembered for Tab completion, at most. */
const MAX_SEEN_ATOMS = 1000;
/** Lines of history kept in the history file. */
export const HISTORY_LINES = 1000;

type Command = { kind: 'cast' | 'rpc'; text: string } | { kind: 'help' | 'quit' } | { kind: 'empty' };

/**
 * Splits what was typed into sentences, each ending with a `.` that is followed by white space or the end (not in a
 * string, a quoted atom or a comment). `rest` is what follows the last one: a sentence not finished yet.
 */
export function sentences(input: string): { done: string[]; rest: string } {
  const done: string[] = [];
  let start = 0;
  scan(input, (i, c) => {
    // An end: a '.' before white space, a comment, or the end of the input.
    const next = input[i + 1];
    if (c === '.' && (next === undefined || next === '%' || /\s/.test(next))) {
      done.push(input.slice(start, i + 1));
      start = i + 1;
    }
  });
  return { done, rest: input.slice(start) };
}

/**
 * Walks `text` as Erlang's scanner would for what matters here, calling `visit` for each character outside strings,
 * quoted atoms, character literals ($x, $\\x) and comments; returns the text without its comments.
 */
function scan(text: string, visit: (i: number, c: string) => void): string {
  let kept = '';
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote !== null) {
      kept += c;
      if (c === '\\') kept += text[++i] ?? '';
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      kept += c;
      quote = c;
    } else if (c === '%') {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (c === '$') {
      // A character literal: $. is the character, $\\" an escaped quote; neither ends nor opens anything.
      const escaped = text[i + 1] === '\\';
      kept += text.slice(i, i + (escaped ? 3 : 2));
      i += escaped ? 2 : 1;
    } else {
      kept += c;
      visit(i, c);
    }
  }
  return kept;
}

/** A term as one line of history: its lines joined, its comments dropped (a comment would swallow what follows). */
export function historyEntry(text: string): string {
  return scan(text, () => {})
    .replace(/\s*\n\s*/g, ' ')
    .trim();
}

/** A sentence (or, for help and quit, a bare word) as a command. */
export function readCommand(input: string): Command {
  const text = input.trim();
  if (text === '' || text === '.') return { kind: 'empty' };
  const bare = text.replace(/\.$/, '').trim();
  if (bare === 'help' || bare === 'h' || bare === '?') return { kind: 'help' };
  if (bare === 'quit' || bare === 'exit' || bare === 'q()' || bare === 'q') return { kind: 'quit' };
  const m = /^(cast|rpc)(?=[\s{[("'<#$\d-])\s*([\s\S]*)$/.exec(text);
  if (m) return { kind: m[1] as 'cast' | 'rpc', text: m[2] as string };
  return { kind: 'rpc', text };
}

/**
 * Tab completion: at the start of a line the commands (and atoms), after it the atoms the session has seen, that start
 * with the word being typed.
 */
export function complete(line: string, atoms: ReadonlySet<string> = new Set()): [string[], string] {
  const word = /[a-z][A-Za-z0-9_@]*$/.exec(line)?.[0] ?? '';
  const atStart = line.trim() === word;
  if (atStart && word === '') return [COMMANDS, line];
  const pool = atStart ? [...COMMANDS, ...atoms] : [...atoms];
  return [pool.filter((c) => c.startsWith(word) && c !== word).sort(), word];
}

/** Remembers the atoms in `t` (for completion), up to MAX_SEEN_ATOMS in all. */
function noteAtoms(t: Term, seen: Set<string>, depth = 0): void {
  if (seen.size >= MAX_SEEN_ATOMS || depth > 32) return;
  if (t instanceof Atom) {
    if (/^[a-z][A-Za-z0-9_@]*$/.test(t.name)) seen.add(t.name);
  } else if (t instanceof Tuple || Array.isArray(t)) {
    for (const x of t instanceof Tuple ? t.elements : (t as readonly Term[])) noteAtoms(x, seen, depth + 1);
  } else if (t instanceof Map) {
    for (const [k, v] of t) {
      noteAtoms(k, seen, depth + 1);
      noteAtoms(v, seen, depth + 1);
    }
  }
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
  /** Atoms sent and received, for Tab. */
  const seen = new Set<string>();
  const { rl, iterator } = stdinLines(
    tty
      ? { completer: (line: string) => complete(line, seen), history: loadHistory(history), historySize: HISTORY_LINES }
      : {},
  );
  const json = o.json === true;
  const show = (t: Term): string => {
    noteAtoms(t, seen);
    return json ? formatJsonTerm(t) : formatTerm(t);
  };
  const read = (text: string): Term => {
    const t = json ? parseJsonTerm(text.trim()) : parseTerm(text);
    noteAtoms(t, seen);
    return t;
  };
  const prompt = paint('1', `${service}> `);
  const more = `${' '.repeat(Math.max(0, service.length - 3))}..> `;
  let failed = false;
  let quitting = false;
  /** The rpc being waited for, which Ctrl-C abandons. */
  let waiting: AbortController | null = null;
  /** A term begun on earlier lines. */
  let buffer = '';
  /** Lines readline added to its history for the term being typed (it skips blank and repeated lines). */
  let fragments = 0;

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
  /** The end of the connection is said once, by whichever learns of it first: a waiting rpc, or the channel. */
  let closeSaid = false;
  const sayClosed = (line: string): void => {
    if (closeSaid) return;
    closeSaid = true;
    fail(line);
  };

  void (async () => {
    for await (const x of ch) print(tty ? `${paint('36', 'push')} ${show(x)}` : show(x));
  })().catch(() => {});
  void ch.closed.then((info) => {
    if (quitting) return;
    sayClosed(
      `chan: ${info.reason === 'normal' ? 'closed' : info.reason}: the server closed the connection: ${info.text}`,
    );
    rl.close();
  });

  if (tty) {
    rl.on('SIGINT', () => {
      if (waiting) {
        waiting.abort(); // the loop says so, and prompts again
        return;
      }
      if (buffer === '' && rl.line === '') {
        print(paint('2', '(to leave: Ctrl-D on an empty line, or quit)'));
        return;
      }
      // Clears the line being typed, and the term being continued: as erl and redis-cli do.
      buffer = '';
      fragments = 0;
      rl.write(null, { ctrl: true, name: 'e' });
      rl.write(null, { ctrl: true, name: 'u' });
      process.stdout.write('^C\n');
      rl.setPrompt(prompt);
      rl.prompt();
    });
    process.stdout.write(`connected to ${service}; type help for the commands\n`);
    rl.setPrompt(prompt);
    rl.prompt();
  }

  /** Runs one command; false when the session must end (the channel closed). */
  const run = async (item: string): Promise<boolean> => {
    const cmd = json ? readJsonCommand(item) : readCommand(item);
    try {
      switch (cmd.kind) {
        case 'empty':
          return true;
        case 'help':
          print(json ? SESSION_HELP_JSON : SESSION_HELP);
          return true;
        case 'quit':
          quitting = true;
          return true;
        case 'cast':
          ch.cast(read(cmd.text));
          return true;
        case 'rpc': {
          const term = read(cmd.text);
          waiting = new AbortController();
          const options = o.timeout === undefined ? {} : { timeout: o.timeout };
          print(show(await ch.rpc(term, { ...options, signal: waiting.signal })));
          return true;
        }
      }
    } catch (err) {
      if (err instanceof ChanError && err.code === 'aborted') {
        print(paint('2', '^C: the rpc was abandoned (its answer, if it comes, is dropped)'));
        return true;
      }
      if (err instanceof TermSyntaxError || err instanceof JsonTermError) {
        fail(`chan: syntax: ${err.message}`);
        return true;
      }
      if (!(err instanceof ChanError)) throw err;
      if (ch.isClosed) {
        sayClosed(failureLine(err));
        return false;
      }
      fail(failureLine(err));
      return true;
    } finally {
      waiting = null;
    }
  };

  const noteFragment = (line: string): void => {
    const kept = Reflect.get(rl, 'history');
    if (tty && Array.isArray(kept) && line.trim() !== '' && kept[0] === line) fragments++;
  };
  /** A command typed over several lines is one entry of the history (in memory and in the file). */
  const remember = (entry: string): void => {
    const added = fragments;
    fragments = 0;
    if (!tty || entry.trim() === '') return;
    const kept = Reflect.get(rl, 'history');
    if (Array.isArray(kept) && added > 1) kept.splice(0, Math.min(added, kept.length), entry);
    if (!history) return;
    try {
      appendFileSync(history, `${entry}\n`, { mode: 0o600 });
    } catch {
      // a history that cannot be written is not worth failing a session for
    }
  };

  lines: for (;;) {
    const next = await iterator.next();
    if (next.done) {
      // The end of the input: a last term without its '.' (piped input often has none) is run if it is whole.
      if (buffer.trim() !== '' && !quitting) await run(buffer);
      buffer = '';
      break;
    }
    let items: string[];
    noteFragment(next.value);
    if (json) {
      items = [next.value];
      remember(next.value);
    } else {
      buffer += (buffer ? '\n' : '') + next.value;
      const word = readCommand(buffer).kind;
      if (word === 'help' || word === 'quit') {
        // The session's own words need no '.'.
        items = [buffer];
        buffer = '';
      } else {
        const found = sentences(buffer);
        items = found.done;
        buffer = found.rest.trim() === '' ? '' : found.rest;
      }
      if (items.length > 0) remember(historyEntry(items.join(' ')));
    }
    for (const item of items) if (!(await run(item)) || quitting) break lines;
    if (tty) {
      rl.setPrompt(buffer === '' ? prompt : more);
      rl.prompt();
    }
  }
  quitting = true;
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
