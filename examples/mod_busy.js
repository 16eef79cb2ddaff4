// A service with a handler that can get stuck: the atom spin makes it loop forever without yielding. Run it with
// {isolation, worker}: the loop stops only its own worker thread; after handler_block_timeout the watchdog terminates
// the worker, the connections on it are closed with handlerTimeout, and the supervisor starts a fresh worker.
// Everything else it answers with itself. See examples/busy/README.md.
import { isAtom } from 'lib-chan';

export async function start_me_up(mm) {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    if (isAtom(m.data, 'spin')) for (;;); // a bug: a loop that never yields
    mm.send(m.data);
  }
}
