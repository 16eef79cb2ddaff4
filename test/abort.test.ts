/**
 * AbortSignal, as Node's own APIs take it: `connect(..., { signal })`, `rpc(x, { signal })`, `receive({ signal })`.
 * An aborted call rejects with `aborted` at once, takes nothing, and leaves the channel as it was.
 */
import { once } from 'node:events';
import net from 'node:net';
import test from 'ava';
import { connect } from '../src/client.js';
import type { Handler } from '../src/runtime.js';
import { atom, formatTerm, type Term } from '../src/term/index.js';
import { refusal, service, testServer } from './helpers.js';

/** Holds every request until `release` comes, then answers them all, oldest first, and `release` last. */
const gate: Handler = async (mm) => {
  const held: Parameters<typeof mm.reply>[0][] = [];
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    if (m.data === 'push') {
      mm.push(atom('pushed'));
      continue;
    }
    if (m.data !== 'release') {
      held.push(m);
      continue;
    }
    for (const h of held.splice(0)) mm.reply(h, h.data as Term);
    mm.send('released');
  }
};

test('connect gives up when its signal is aborted: before, or while the server says nothing', async (t) => {
  const err = await refusal(connect('127.0.0.1', 1, 'x', null, null, { signal: AbortSignal.abort() }));
  t.is(err.code, 'aborted');
  // A server that accepts and never answers the handshake.
  const silent = net.createServer();
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => silent.close());
  const accepted = once(silent, 'connection') as Promise<[net.Socket]>;
  const controller = new AbortController();
  const pending = connect('127.0.0.1', (silent.address() as net.AddressInfo).port, 's', null, null, {
    signal: controller.signal,
  });
  const [socket] = await accepted;
  controller.abort();
  t.is((await refusal(pending)).code, 'aborted');
  await once(socket.resume(), 'end'); // the client closed its side
});

test('an aborted rpc rejects at once; its late answer is dropped, and the channel carries on', async (t) => {
  const server = await testServer([service('gate', gate)]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'gate', null);
  t.teardown(() => ch.close());
  const controller = new AbortController();
  const first = ch.rpc('first', { signal: controller.signal });
  controller.abort(new Error('the user went away'));
  const err = await refusal(first);
  t.is(err.code, 'aborted');
  t.is((err.cause as Error).message, 'the user went away');
  // The handler answers `first` now; the channel drops it and gives `release` its own answer.
  t.is(await ch.rpc('release'), 'released');
  t.is((await refusal(ch.rpc('late', { signal: AbortSignal.abort() }))).code, 'aborted');
  t.is(await ch.rpc('release'), 'released');
});

test('an aborted receive takes nothing: the next push goes to the next receive', async (t) => {
  const server = await testServer([service('gate', gate)]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'gate', null);
  t.teardown(() => ch.close());
  const controller = new AbortController();
  const waiting = ch.receive({ signal: controller.signal });
  controller.abort();
  t.is((await refusal(waiting)).code, 'aborted');
  ch.cast('push');
  t.is(formatTerm(await ch.receive({ signal: new AbortController().signal, timeout: 5000 })), 'pushed');
});
