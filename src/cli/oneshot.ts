/** `chan rpc ... TERM...` and `chan cast ... TERM...`: messages over one fresh connection, for scripts. */
import { connect } from '../client.js';
import { formatTerm } from '../term/print.js';
import { parseTerm, parseTerms, TermSyntaxError } from '../term/parse.js';
import { JsonTermError, formatJsonTerm, parseJsonTerm } from '../term/json.js';
import type { Term } from '../term/model.js';
import { EXIT_OK, stdinLines, usageError } from './common.js';

import type { Destination } from '../client-options.js';

export interface Format {
  json: boolean;
  timeout?: number | undefined;
}

/** Reads one TERM argument (Erlang text, or JSON with --json); a syntax error is a usage error. */
export function parseTermArg(text: string, json = false): Term {
  try {
    return json ? parseJsonTerm(text) : parseTerm(text);
  } catch (err) {
    if (err instanceof TermSyntaxError || err instanceof JsonTermError) throw usageError(`TERM: ${err.message}`);
    throw err;
  }
}

/** The terms of the command line; `-` stands for all the terms on standard input. */
async function readTerms(args: string[], json: boolean): Promise<Term[]> {
  const out: Term[] = [];
  for (const a of args) {
    if (a !== '-') {
      out.push(parseTermArg(a, json));
      continue;
    }
    const lines: string[] = [];
    const { iterator } = stdinLines();
    for (let n = await iterator.next(); !n.done; n = await iterator.next()) lines.push(n.value);
    if (json) {
      for (const l of lines) if (l.trim() !== '') out.push(parseTermArg(l, true));
    } else {
      try {
        out.push(...parseTerms(lines.join('\n')));
      } catch (err) {
        if (err instanceof TermSyntaxError) throw usageError(`standard input: ${err.message}`);
        throw err;
      }
    }
  }
  return out;
}

/**
 * The ArgsC a command connects with: none (`null`) in lib-chan's protocol; `[]` in the original, as the book's
 * sessions give `""` (the same term in Erlang).
 */
export function argsFor(target: Destination): Term {
  return target.options.protocol === 'erlang' ? [] : null;
}

export async function oneShot(kind: 'rpc' | 'cast', target: Destination, args: string[], f: Format): Promise<number> {
  const terms = await readTerms(args, f.json);
  const ch = await connect(target.host, target.port, target.service, target.secret, argsFor(target), target.options);
  try {
    if (kind === 'rpc') {
      // All at once (pipelined): each answer is matched to its request, so they print in the order asked.
      const answers = await Promise.all(
        terms.map((t) => ch.rpc(t, f.timeout === undefined ? {} : { timeout: f.timeout })),
      );
      process.stdout.write(answers.map((a) => `${f.json ? formatJsonTerm(a) : formatTerm(a)}\n`).join(''));
    } else {
      for (const t of terms) ch.cast(t);
      // Exit 0 only once the server has confirmed reading them: a ping after the casts, and its pong. The original
      // protocol has no pings: there, once they have been handed to the network.
      if (target.options.protocol === 'erlang') await ch.drain();
      else await ch.flush(f.timeout === undefined ? {} : { timeout: f.timeout });
    }
  } finally {
    await ch.close();
  }
  return EXIT_OK;
}
