// A name server with a bug: the message {poison} makes its handler throw. Only that client's connection ends
// (reason handlerError, with the error's message); the server logs the stack once; every other connection, of this
// service and of others, carries on. See examples/poison/README.md.
import { atom, isTuple, termKey, tuple } from 'lib-chan';

export function start() {
  return new Map();
}

export async function start_me_up(mm, _argsC, _argsS, ctx) {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    const x = m.data;
    if (isTuple(x, 'poison', 1)) throw new Error('poisoned: this handler does not survive {poison}');
    if (isTuple(x, 'store', 3)) {
      ctx.state.set(termKey(x.at(1)), x.at(2));
      if (m.requestId !== undefined) mm.reply(m, true);
    } else if (isTuple(x, 'lookup', 2)) {
      const key = termKey(x.at(1));
      mm.send(ctx.state.has(key) ? tuple(atom('ok'), ctx.state.get(key)) : atom('undefined'));
    } else {
      mm.send(tuple(atom('error'), atom('badRequest')));
    }
  }
}
