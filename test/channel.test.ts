/**
 * The client's Channel over the in-memory transport: the book session, its states, and reconnecting, with no port.
 */
import test from 'ava';
import { connect, type StateChange } from '../src/client.js';
import { ChanError } from '../src/errors.js';
import { memoryTransport } from '../src/memory-transport.js';
import type { Handler } from '../src/runtime.js';
import { startServer } from '../src/server.js';
import { atom, tuple } from '../src/term/model.js';
import { echo, service, testServer } from './helpers.js';

/** Echoes; `crash` ends the handler with an error (handlerError: the client may reconnect). */
const crashy: Handler = async (mm) => {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    if (m.data === 'crash') throw new Error('asked to crash');
    mm.send(m.data);
  }
};

async function memoryServer(handler: Handler = echo, secret: string | null = 'ABXy45') {
  const transport = memoryTransport();
  const server = await startServer({ port: 0, services: [service('s', handler, secret)], transport });
  return { transport, server, port: server.port };
}

test('the session runs over an in-memory transport: rpc, cast, pushes, close', async (t) => {
  const { transport, server, port } = await memoryServer();
  t.teardown(() => server.close());
  const ch = await connect('memory', port, 's', 'ABXy45', null, { transport });
  t.is(ch.state, 'connected');
  t.deepEqual(await ch.rpc(tuple(atom('lookup'), 1)), tuple(atom('lookup'), 1));
  ch.cast('x');
  await ch.flush();
  await ch.close();
  t.is(ch.state, 'closed');
  t.is((await ch.closed).reason, 'normal');
  const err = t.throws(() => ch.cast(1), { instanceOf: ChanError });
  t.is(err?.code, 'closed');
});

test('nothing listening is econnrefused; a wrong secret is authFail', async (t) => {
  const { transport, server, port } = await memoryServer();
  t.teardown(() => server.close());
  const refused = await t.throwsAsync(connect('memory', port + 1, 's', 'ABXy45', null, { transport }));
  t.is((refused as ChanError).code, 'econnrefused');
  const wrong = await t.throwsAsync(connect('memory', port, 's', 'nope', null, { transport }));
  t.is((wrong as ChanError).code, 'authFail');
});

test('a lost connection is re-established: waiting rpcs fail with disconnected, then rpcs work again', async (t) => {
  const { transport, server, port } = await memoryServer(crashy);
  t.teardown(() => server.close());
  const ch = await connect('memory', port, 's', 'ABXy45', null, {
    transport,
    reconnect: { retries: 5, initialDelay: 1, maxDelay: 2, jitter: 0 },
  });
  const changes: StateChange[] = [];
  ch.on('state', (c: StateChange) => changes.push(c));
  const back = new Promise<void>((resolve) => ch.on('state', (c: StateChange) => c.state === 'connected' && resolve()));
  const lost = await t.throwsAsync(ch.rpc('crash'));
  t.is((lost as ChanError).code, 'disconnected');
  await back;
  t.is(await ch.rpc('again'), 'again');
  t.deepEqual(
    changes.map((c) => [c.state, c.reason?.reason]),
    [
      ['reconnecting', 'handlerError'],
      ['connected', undefined],
    ],
  );
  t.is(ch.stats().reconnects, 1);
  await ch.close();
});

test('while reconnecting, cast and rpc fail at once with disconnected; when the server is gone the retries run out', async (t) => {
  const { transport, server, port } = await memoryServer(crashy);
  const ch = await connect('memory', port, 's', 'ABXy45', null, {
    transport,
    reconnect: { retries: 3, initialDelay: 1, maxDelay: 1, jitter: 0 },
  });
  const reconnecting = new Promise<void>((resolve) =>
    ch.on('state', (c: StateChange) => c.state === 'reconnecting' && resolve()),
  );
  await server.close();
  await reconnecting;
  if (ch.state === 'reconnecting') {
    t.is(t.throws(() => ch.cast(1), { instanceOf: ChanError })?.code, 'disconnected');
    t.is(((await t.throwsAsync(ch.rpc(1))) as ChanError).code, 'disconnected');
  }
  const info = await ch.closed;
  t.regex(info.text, /gave up after 3 reconnect attempts/);
  t.is(ch.state, 'closed');
});

test('a permanent refusal on a reconnect (the secret changed) closes the channel instead of retrying', async (t) => {
  const transport = memoryTransport();
  const first = await startServer({ port: 7, services: [service('s', crashy, 'ABXy45')], transport });
  const ch = await connect('memory', 7, 's', 'ABXy45', null, {
    transport,
    reconnect: { retries: 50, initialDelay: 1, maxDelay: 1, jitter: 0 },
  });
  await first.close();
  const second = await startServer({ port: 7, services: [service('s', crashy, 'other')], transport });
  t.teardown(() => second.close());
  t.is((await ch.closed).reason, 'authFail');
});

test('an rpc with an infinite timeout waits instead of failing at once', async (t) => {
  const server = await testServer([
    service('slow', async (mm) => {
      const m = await mm.receive();
      await new Promise((r) => setTimeout(r, 50));
      if (m.type === 'chan') mm.send('late but there');
      await mm.receive();
    }),
  ]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'slow', null);
  t.is(await ch.rpc('x', { timeout: Number.POSITIVE_INFINITY }), 'late but there');
  await ch.close();
});

test('rpc deadlines: a short timeout started after a long one fails first, on time; the others are answered', async (t) => {
  // Answers 'hold' only once 'release' has come; everything else at once.
  const held: { mm: import('../src/runtime.js').MM; m: import('../src/runtime.js').ChanMessage }[] = [];
  const holding: Handler = async (mm) => {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      if (m.data === 'hold') held.push({ mm, m });
      else {
        for (const h of m.data === 'release' ? held.splice(0) : []) h.mm.reply(h.m, 'released');
        mm.reply(m, m.data);
      }
    }
  };
  const { transport, server, port } = await memoryServer(holding);
  t.teardown(() => server.close());
  const ch = await connect('memory', port, 's', 'ABXy45', null, { transport });
  const long = ch.rpc('hold', { timeout: 5000 });
  const started = performance.now();
  const short = ch.rpc('hold', { timeout: 100 });
  const err = await t.throwsAsync(short);
  const waited = performance.now() - started;
  t.is((err as ChanError).code, 'timeout');
  t.is((err as ChanError).message, 'no answer within 100 ms');
  t.true(waited >= 98 && waited < 2000, `the 100 ms rpc failed after ${Math.round(waited)} ms`);
  // The long one still waits; the connection carries on; the late answer to the short one is dropped.
  t.is(await ch.rpc('ping', { timeout: 1000 }), 'ping');
  t.is(await ch.rpc('release'), 'release');
  t.is(await long, 'released');
  await ch.close();
});
