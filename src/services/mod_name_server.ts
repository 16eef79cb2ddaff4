/**
 * The book's name server, built in: `{service, nameServer, ..., mfa, mod_name_server, start_me_up, notUsed}`.
 *
 *   {store, K, V}   stores V under K. As a cast (the book's way) there is no answer, and the store is best effort
 *                   (later lookups see it at once; it reaches the disk or Redis shortly after). As an rpc the answer
 *                   is `true`, as `kvs:store/2` returns, once the store is committed (durable as the `store` option
 *                   makes it), so a caller can know the value is kept. A value that could not be
 *                   read back within the server's limits is refused with {error, {tooLarge, Text}}, and a store past
 *                   store_max_bytes with {error, {storeFull, Text}} (as a push when it came as a cast; in the original
                   protocol of the Erlang port, where every message is a cast, only in the log).
 *   {lookup, K}     answers {ok, V}, or undefined when nothing is stored under K.
 *                   When the store itself fails (a disk, Redis away), the answer is {error, {storeFailed, Text}}
 *                   (the details in the server's log) and the connection carries on.
 *   anything else   answers {error, {badRequest, X}} (as a push when it came as a cast); X is the atom tooLarge when
 *                   the request itself would not fit in the answer.
 */
import { ChanError, LimitError } from '../errors.js';
import { behaviour, errorTerm, unsendableAnswer, type ChanMessage, type MM, type ServiceContext } from '../runtime.js';
import { Atom, isTuple, type Term } from '../term/model.js';
import { formatTerm } from '../term/print.js';
import type { StartContext } from '../modules.js';
import { ALREADY_COMMITTED } from '../store/store.js';
import { KvsStore, sizeWithin, type StoreOutcome } from './kvs-store.js';

const TOO_LARGE = new Atom('tooLarge');

/** The book's `kvs:start()`: the service's store, on its part of the server's store. */
export function start(_argsS: Term, ctx: StartContext): KvsStore {
  return new KvsStore(ctx.store, ctx.limits);
}

/**
 * The handler: a behaviour (runtime.ts), whose mailbox calls it with each request. An idle connection holds no
 * suspended function or promise of its own, which is most of what a held connection costs.
 */
export const start_me_up = behaviour<KvsStore>({
  handle: (m, mm, ctx) => serve(ctx.state, mm, m, ctx),
});

/**
 * Serves one request. The store failing (storeFailed) answers this request so, and the connection carries on; any
 * other error is the handler's crash.
 */
function serve(kvs: KvsStore, mm: MM, m: ChanMessage, ctx: ServiceContext): Promise<void> | undefined {
  try {
    return handle(kvs, mm, m, ctx)?.catch((err: unknown) => storeFailed(err, mm, m, ctx));
  } catch (err) {
    storeFailed(err, mm, m, ctx);
    return undefined;
  }
}

function storeFailed(err: unknown, mm: MM, m: ChanMessage, ctx: ServiceContext): void {
  if (!(err instanceof ChanError) || err.code !== 'storeFailed') throw err;
  // The backend's own words (a path, a Redis address) go to the server's log, not to the client.
  ctx.log.warn({ err: { message: err.message } }, 'the store failed');
  answer(mm, m, errorTerm('storeFailed', 'the store could not be read or written; the server log says why'));
}

function handle(kvs: KvsStore, mm: MM, m: ChanMessage, ctx: ServiceContext): Promise<void> | undefined {
  const x = m.data;
  if (isTuple(x, 'store', 3)) {
    const key = x.at(1) as Term;
    const value = x.at(2) as Term;
    const now = kvs.storeNow(key, value);
    if (now) return stored(kvs, mm, m, now, ctx);
    return kvs.store(key, value).then((outcome) => stored(kvs, mm, m, outcome, ctx));
  }
  if (isTuple(x, 'lookup', 2)) {
    const key = x.at(1) as Term;
    const now = kvs.lookupNow(key);
    if (now) {
      answer(mm, m, now);
      return undefined;
    }
    return kvs.lookup(key).then((found) => answer(mm, m, found));
  }
  // {error, {badRequest, X}} is two levels around X: the request is repeated only if it fits.
  const fits = !(sizeWithin(x, 2, ctx.limits) instanceof LimitError);
  answer(mm, m, errorTerm('badRequest', fits ? x : TOO_LARGE));
  return undefined;
}

/** A store decided: refused, answered once committed (an rpc), or left to commit (a cast: best effort, logged). */
function stored(
  kvs: KvsStore,
  mm: MM,
  m: ChanMessage,
  outcome: StoreOutcome,
  ctx: ServiceContext,
): Promise<void> | undefined {
  if ('refused' in outcome) {
    // In the original protocol a store is a cast that nothing waits on, and a push would be taken as the answer to the
    // client's next rpc: the refusal is logged instead.
    if (mm.protocol === 'erlang') ctx.log.warn({ refused: formatTerm(outcome.refused) }, 'a store was refused');
    else answer(mm, m, outcome.refused);
  } else if (m.requestId !== undefined) {
    if (outcome.committed === ALREADY_COMMITTED) mm.reply(m, true);
    else return outcome.committed.then(() => void mm.reply(m, true));
  } else if (outcome.committed !== ALREADY_COMMITTED && kvs.firstToWatch(outcome.committed)) {
    // Once for the stores that share a commit (a backend's batch): a failed batch is one line, not one a store.
    outcome.committed.catch((err: unknown) => ctx.log.warn({ err }, 'cast stores were not committed'));
  }
  return undefined;
}

/** The answer to an rpc, or a push for a cast; one over the client's limits becomes {error, {Code, Text}}. */
function answer(mm: MM, m: ChanMessage, x: Term): void {
  if (m.requestId !== undefined) {
    mm.reply(m, x);
    return;
  }
  try {
    mm.push(x);
  } catch (err) {
    if (!(err instanceof LimitError)) throw err;
    mm.push(unsendableAnswer(err));
  }
}
