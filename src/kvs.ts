/**
 * A typed client for the book's name server (`mod_name_server`), with plain values:
 *
 *   const kvs = kvsClient(await connect('localhost', 1234, 'nameServer', 'ABXy45'));
 *   await kvs.store('joe', 'writing a book');
 *   await kvs.lookup('joe');   // 'writing a book'
 *   await kvs.lookup('jim');   // undefined
 *
 * Keys and values are terms and go over the wire as they are: the string 'joe' and the atom joe (`atom('joe')`, what
 * `chan rpc ... '{lookup, joe}.'` sends) are different keys.
 */
import type { Channel, RpcOptions } from './client.js';
import { ChanError, isErrorCode, type ErrorCode } from './errors.js';
import { Atom, Tuple, isAtom, isTuple, type Term } from './term/model.js';
import { formatTerm } from './term/print.js';

export interface KvsClient<V extends Term = Term> {
  /** Stores `value` under `key` and resolves once the server has it (an rpc; the book's cast is `ch.cast`). */
  store(key: Term, value: V, options?: RpcOptions): Promise<void>;
  /** The value stored under `key`, or undefined. */
  lookup(key: Term, options?: RpcOptions): Promise<V | undefined>;
}

const STORE = new Atom('store');
const LOOKUP = new Atom('lookup');

export function kvsClient<V extends Term = Term>(ch: Channel): KvsClient<V> {
  return {
    async store(key, value, options) {
      const answer = await ch.rpc(new Tuple([STORE, key, value]), options);
      if (answer !== true) throw unexpected('store', answer);
    },
    async lookup(key, options) {
      const answer = await ch.rpc(new Tuple([LOOKUP, key]), options);
      if (isTuple(answer, 'ok', 2)) return answer.at(1) as V;
      if (isAtom(answer, 'undefined')) return undefined;
      throw unexpected('lookup', answer);
    },
  };
}

/**
 * The words a name server answers `{error, {Code, Text}}` with: its own refusals, a store that failed, and an answer
 * over a limit (docs/PROTOCOL.md). Only these pass as the error's code: a service cannot make a caller believe that
 * its channel closed or its signal fired.
 */
const ANSWER_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'storeFull',
  'tooLarge',
  'storeFailed',
  'badRequest',
  'frameTooLarge',
  'badTerm',
]);

/**
 * The error for an answer that is not the call's: `{error, {Code, _}}` rejects with Code where it is one of
 * {@link ANSWER_CODES}, any other `{error, _}` with `badRequest`, and anything else with `protocolError`.
 */
function unexpected(what: string, answer: Term): ChanError {
  if (isTuple(answer, 'error', 2)) {
    const why = answer.at(1);
    const first = isTuple(why) ? why.at(0) : undefined;
    const word = first instanceof Atom ? first.name : '';
    const code = isErrorCode(word) && ANSWER_CODES.has(word) ? word : 'badRequest';
    return new ChanError(code, `${what} refused: ${formatTerm(answer)}`);
  }
  return new ChanError(
    'protocolError',
    `${what}: unexpected answer ${formatTerm(answer).slice(0, 200)} (is this service a name server?)`,
  );
}
