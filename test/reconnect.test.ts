import { Writable } from 'node:stream';
import test from 'ava';
import { backoff, connect, type StateChange } from '../src/client.js';
import { ChanError } from '../src/errors.js';
import { createLogger } from '../src/log.js';
import type { ServerOptions } from '../src/server.js';
import { echo, service, testServer } from './helpers.js';

const FAST = { initialDelay: 20, maxDelay: 200, jitter: 0.5 };

async function restartable(options: Partial<ServerOptions> = {}) {
  let server = await testServer([service('echo', echo, 'pw')], options);
  const port = server.port;
  return {
    port,
    stop: () => server.close(),
    start: async (more: Partial<ServerOptions> = {}) => {
      server = await testServer([service('echo', echo, 'pw')], { ...options, ...more, port });
      return server;
    },
    get server() {
      return server;
    },
  };
}

test('after the server restarts, a channel with reconnect is connected again; calls in between fail fast with disconnected', async (t) => {
  const s = await restartable();
  t.teardown(() => s.server.close());
  const ch = await connect('127.0.0.1', s.port, 'echo', 'pw', null, { reconnect: { retries: 50, ...FAST } });
  const changes: StateChange[] = [];
  ch.on('state', (c: StateChange) => changes.push(c));
  t.is(await ch.rpc(1), 1);
  await s.stop();
  t.is(ch.state, 'reconnecting');
  const err = await t.throwsAsync(ch.rpc(2), { instanceOf: ChanError });
  t.is(err?.code, 'disconnected');
  t.throws(() => ch.cast(3), { instanceOf: ChanError, message: /being re-established/ });
  await s.start();
  while (ch.state !== 'connected') await new Promise((r) => setTimeout(r, 10));
  t.is(await ch.rpc(4), 4);
  t.is(ch.stats().reconnects, 1);
  t.is(changes[0]?.state, 'reconnecting');
  t.is(changes[0]?.reason?.reason, 'shutdown');
  t.is(changes.at(-1)?.state, 'connected');
  t.true(changes.filter((c) => c.state === 'reconnecting').every((c, i) => c.attempt === i + 1));
  await ch.close();
  t.is(ch.state as string, 'closed');
});

test('rpcs waiting when the connection drops reject with disconnected; pushes continue through the same iterator', async (t) => {
  let n = 0;
  const s = await testServer([
    service('p', async (mm) => {
      mm.push(`hello ${++n}`);
      for await (const m of mm) if (m.type === 'chan_closed') return;
    }),
  ]);
  const port = s.port;
  const ch = await connect('127.0.0.1', port, 'p', null, null, { reconnect: { retries: 50, ...FAST } });
  const iter = ch[Symbol.asyncIterator]();
  t.is((await iter.next()).value, 'hello 1');
  const waiting = ch.rpc('never answered', { timeout: 10_000 });
  await s.close();
  const err = await t.throwsAsync(waiting, { instanceOf: ChanError });
  t.is(err?.code, 'disconnected');
  const again = await testServer(
    [
      service('p', async (mm) => {
        mm.push('hello again');
        await mm.receive();
      }),
    ],
    { port },
  );
  t.teardown(() => again.close());
  t.is((await iter.next()).value, 'hello again');
  await ch.close();
});

test('reconnect gives up after its retries and closes with the reason', async (t) => {
  const s = await restartable();
  const ch = await connect('127.0.0.1', s.port, 'echo', 'pw', null, { reconnect: { retries: 3, ...FAST } });
  await s.stop();
  const info = await ch.closed;
  t.is(info.reason, 'shutdown');
  t.regex(info.text, /gave up after 3 reconnect attempts/);
  t.is(ch.state, 'closed');
});

test('reconnect stops at a failure that would repeat (the secret changed): closed with authFail', async (t) => {
  const s = await restartable();
  t.teardown(() => s.server.close());
  const ch = await connect('127.0.0.1', s.port, 'echo', 'pw', null, { reconnect: { retries: 50, ...FAST } });
  await s.stop();
  await testServer([service('echo', echo, 'a new secret')], { port: s.port }).then((srv) =>
    t.teardown(() => srv.close()),
  );
  const info = await ch.closed;
  t.is(info.reason, 'authFail');
});

test('without reconnect (the default) a lost connection closes the channel', async (t) => {
  const s = await restartable();
  const ch = await connect('127.0.0.1', s.port, 'echo', 'pw');
  await s.stop();
  t.is((await ch.closed).reason, 'shutdown');
  t.is((await t.throwsAsync(ch.rpc(1), { instanceOf: ChanError }))?.code, 'closed');
});

test('close() while reconnecting ends it at once; a close by the server on purpose (normal) is not retried', async (t) => {
  const s = await restartable();
  const ch = await connect('127.0.0.1', s.port, 'echo', 'pw', null, {
    reconnect: { retries: 50, initialDelay: 60_000 },
  });
  await s.stop();
  t.is(ch.state, 'reconnecting');
  await ch.close();
  t.is((await ch.closed).reason, 'normal');

  const quitter = await testServer([service('q', async (mm) => void (await mm.receive()))]);
  t.teardown(() => quitter.close());
  const q = await connect('127.0.0.1', quitter.port, 'q', null, null, { reconnect: true });
  q.cast('bye');
  t.is((await q.closed).reason, 'normal');
});

test('back-off doubles up to maxDelay, and jitter spreads the attempts', (t) => {
  const o = { retries: 10, initialDelay: 100, maxDelay: 1000, jitter: 0 };
  t.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoff(a, o)),
    [100, 200, 400, 800, 1000, 1000],
  );
  const draws = Array.from({ length: 1000 }, () => backoff(1, { ...o, jitter: 0.5 }));
  t.true(Math.min(...draws) >= 50 && Math.max(...draws) <= 100);
  t.true(new Set(draws).size > 40, 'the delays are spread, not one value');
});

test('200 clients that lose a restarting server come back spread out, not all at once', async (t) => {
  const s = await restartable();
  const chs = await Promise.all(
    Array.from({ length: 200 }, () =>
      connect('127.0.0.1', s.port, 'echo', 'pw', null, {
        reconnect: { retries: 50, initialDelay: 200, maxDelay: 1000, jitter: 1 },
      }),
    ),
  );
  await s.stop();
  const opened: number[] = [];
  const logger = createLogger({
    pretty: false,
    stream: new Writable({
      write(chunk, _e, cb) {
        const l = JSON.parse(String(chunk)) as { msg: string; time: number };
        if (l.msg === 'connection opened') opened.push(l.time);
        cb();
      },
    }),
  });
  const restarted = await s.start({ logger });
  t.teardown(() => restarted.close());
  await Promise.all(
    chs.map(async (ch) => {
      while (ch.state !== 'connected') await new Promise((r) => setTimeout(r, 20));
    }),
  );
  opened.sort((a, b) => a - b);
  const spread = (opened.at(-1) ?? 0) - (opened[0] ?? 0);
  const perMs = new Map<number, number>();
  for (const o of opened) perMs.set(o, (perMs.get(o) ?? 0) + 1);
  t.log(`200 reconnects spread over ${spread} ms; at most ${Math.max(...perMs.values())} in one millisecond`);
  t.true(spread >= 100, `spread ${spread} ms`);
  t.true(Math.max(...perMs.values()) < 40);
  await Promise.all(chs.map((c) => c.close()));
});

test('close() from a state listener stops the reconnect it was told about', async (t) => {
  const server = await testServer([service('echo', echo)]);
  const port = server.port;
  const ch = await connect('127.0.0.1', port, 'echo', null, null, {
    reconnect: { retries: 10, initialDelay: 50, maxDelay: 50, jitter: 0 },
  });
  ch.on('state', (c: { state: string }) => {
    if (c.state === 'reconnecting') void ch.close();
  });
  await server.close();
  const again = await testServer([service('echo', echo)], { port });
  t.teardown(() => again.close());
  await new Promise((r) => setTimeout(r, 300)); // longer than the back-off: a dial, if any, would have happened
  t.is(again.stats().connections, 0);
  t.is(ch.state, 'closed');
});

test('a connection that dies at once counts as a failed attempt: the retries run out', async (t) => {
  const server = await testServer([service('crashy', async () => Promise.reject(new Error('no')))]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'crashy', null, null, {
    reconnect: { retries: 3, initialDelay: 10, maxDelay: 1000, jitter: 0 },
  });
  const info = await ch.closed;
  t.is(info.reason, 'handlerError');
  t.regex(info.text, /gave up after 3 reconnect attempts/);
  t.is(ch.stats().reconnects, 3);
});
