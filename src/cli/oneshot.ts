/** `chan rpc ... TERM` and `chan cast ... TERM`: one message over a fresh connection, for scripts. */
import { connect, type ConnectOptions } from '../client.js';
import { formatTerm } from '../term/print.js';
import { parseTerm, TermSyntaxError } from '../term/parse.js';
import type { Term } from '../term/model.js';
import { EXIT_OK, usageError } from './common.js';

export interface Target {
  host: string;
  port: number;
  service: string;
  secret: string | null;
  options: ConnectOptions;
}

export function parseTermArg(text: string): Term {
  try {
    return parseTerm(text);
  } catch (err) {
    if (err instanceof TermSyntaxError) throw usageError(`TERM: ${err.message}`);
    throw err;
  }
}

export async function oneShot(kind: 'rpc' | 'cast', target: Target, termText: string, timeout: number | undefined): Promise<number> {
  const term = parseTermArg(termText);
  const ch = await connect(target.host, target.port, target.service, target.secret, null, target.options);
  try {
    if (kind === 'rpc') {
      const answer = await ch.rpc(term, timeout === undefined ? {} : { timeout });
      process.stdout.write(`${formatTerm(answer)}\n`);
    } else {
      ch.cast(term);
    }
  } finally {
    // For a cast this is the flush: the server has read everything before our close frame when the socket closes.
    await ch.close();
  }
  return EXIT_OK;
}
