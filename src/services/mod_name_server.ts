/**
 * The book's name server, built in: `{service, nameServer, ..., mfa, mod_name_server, start_me_up, notUsed}`.
 *
 *   {store, K, V}   stores V under K. As a cast (the book's way) there is no answer; as an rpc the answer is `true`,
 *                   as `kvs:store/2` returns, so a caller can know the value is stored.
 *   {lookup, K}     answers {ok, V}, or undefined when nothing is stored under K.
 *   anything else   answers {error, {badRequest, X}} (as a push when it came as a cast).
 */
import type { ChanMessage, MM, ServiceContext } from '../runtime.js';
import { Atom, Tuple, isTuple, type Term } from '../term/model.js';
import { KvsStore } from './kvs-store.js';

/** The book's `kvs:start()`: one store for the service, made when the server starts. */
export function start(): KvsStore {
  return new KvsStore();
}

export async function start_me_up(mm: MM, _argsC: Term, _argsS: Term, ctx: ServiceContext<KvsStore>): Promise<void> {
  const kvs = ctx.state;
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    handle(kvs, mm, m);
  }
}

function handle(kvs: KvsStore, mm: MM, m: ChanMessage): void {
  const x = m.data;
  if (isTuple(x, 'store', 3)) {
    kvs.store(x.at(1) as Term, x.at(2) as Term);
    if (m.requestId !== undefined) mm.reply(m, true);
  } else if (isTuple(x, 'lookup', 2)) {
    mm.send(kvs.lookup(x.at(1) as Term));
  } else {
    const error = new Tuple([new Atom('error'), new Tuple([new Atom('badRequest'), x])]);
    if (m.requestId !== undefined) mm.reply(m, error);
    else mm.push(error);
  }
}
