/**
 * `chan connect HOST PORT SERVICE SECRET`: a session the way the book's Erlang shell reads. Type a term ending in `.`:
 *
 *   cast {store, joe, "writing a book"}.    sends it, waits for nothing
 *   rpc {lookup, joe}.                      waits for the answer and prints it: {ok,"writing a book"}
 *   {lookup, joe}.                          the same as rpc
 *   help                                    lists the commands
 *   quit                                    ends the session (so does end of input)
 *
 * A term may span lines. Pushes from the server are printed as they arrive. With piped input it reads to the end,
 * waits for every answer, and exits 0 (1 if any command failed or the server closed the connection).
 */
import type { Channel } from '../client.js';
import { ChanError } from '../errors.js';
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

export async function session(ch: Channel, service: string, timeout: number | undefined): Promise<number> {
  const { rl, iterator } = stdinLines();
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const prompt = `${service}> `;
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

  void (async () => {
    for await (const x of ch) print(formatTerm(x));
  })().catch(() => {});
  void ch.closed.then((info) => {
    if (quitting) return;
    failed = true;
    print(`chan: ${info.reason === 'normal' ? 'closed' : info.reason}: the server closed the connection: ${info.text}`, process.stderr);
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
    buffer += (buffer ? '\n' : '') + next.value;
    const cmd = readCommand(buffer);
    let done = true;
    try {
      switch (cmd.kind) {
        case 'empty':
          break;
        case 'help':
          print(SESSION_HELP);
          break;
        case 'quit':
          quitting = true;
          break;
        case 'cast':
          ch.cast(parseTerm(cmd.text));
          break;
        case 'rpc': {
          const term = parseTerm(cmd.text);
          print(formatTerm(await ch.rpc(term, timeout === undefined ? {} : { timeout })));
          break;
        }
      }
    } catch (err) {
      if (err instanceof TermSyntaxError && err.incomplete) {
        done = false;
      } else if (err instanceof TermSyntaxError) {
        failed = true;
        print(`chan: syntax: ${err.message}`, process.stderr);
      } else if (err instanceof ChanError) {
        failed = true;
        print(failureLine(err), process.stderr);
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
  if (buffer.trim() !== '') {
    failed = true;
    print(`chan: syntax: input ended inside a term: ${buffer.trim().slice(0, 60)}`, process.stderr);
  }
  rl.close();
  await ch.close();
  return failed ? EXIT_FAILURE : EXIT_OK;
}
