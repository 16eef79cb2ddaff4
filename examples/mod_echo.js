// A service module found on code_path: {service, echo, password, none, mfa, mod_echo, start_me_up, []}.
// It answers every message X with #{echo => X}; the atom count is answered with the number of messages that all
// its connections have sent so far (state shared by the service).
import { isAtom } from 'lib-chan';

/** Runs once when the server starts; what it returns is every handler's ctx.state. */
export function start() {
  return { messages: 0 };
}

/** One "process" per connection: lib_chan's start_me_up(MM, ArgsC, ArgsS). */
export async function start_me_up(mm, _argsC, _argsS, ctx) {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    ctx.state.messages++;
    mm.send(isAtom(m.data, 'count') ? ctx.state.messages : { echo: m.data });
  }
}
