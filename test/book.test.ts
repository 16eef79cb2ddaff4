import { spawn } from 'node:child_process';
import test from 'ava';
import { connect } from '../src/client.js';
import { loadConfigFile } from '../src/config/load.js';
import { kvsClient } from '../src/kvs.js';
import { startServer, type ChanServer } from '../src/server.js';
import type { ChanError } from '../src/errors.js';
import type { Handler } from '../src/runtime.js';
import { Atom, Float, atom, float, formatTerm, isTuple, parseTerm, tuple } from '../src/term/index.js';
import { service, testServer } from './helpers.js';

async function bookServer(): Promise<ChanServer> {
  // The shipped config, on a free port.
  return startServer(loadConfigFile('conf/lib_chan.conf', { env: { CHAN_PORT: '0' } }));
}

test("the book's lib_chan session works through the client library", async (t) => {
  const server = await bookServer();
  t.teardown(() => server.close());
  const ch = await connect('localhost', server.port, 'nameServer', 'ABXy45', '');
  ch.cast(parseTerm('{store, joe, "writing a book"}'));
  t.is(formatTerm(await ch.rpc(parseTerm('{lookup, joe}'))), '{ok,"writing a book"}');
  t.is(formatTerm(await ch.rpc(parseTerm('{lookup, jim}'))), 'undefined');
  await ch.close();
});

test("the book's kvs session: keys compared by value, a second store replaces the first", async (t) => {
  const server = await bookServer();
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
  const rpc = async (text: string): Promise<string> => formatTerm(await ch.rpc(parseTerm(text)));
  t.is(await rpc('{store, {location, joe}, "Island"}'), 'true');
  ch.cast(parseTerm('{store, weather, raining}'));
  t.is(await rpc('{lookup, weather}'), '{ok,raining}');
  t.is(await rpc('{lookup, {location, joe}}'), '{ok,"Island"}');
  t.is(await rpc('{lookup, {location, mary}}'), 'undefined');
  ch.cast(parseTerm('{store, weather, sunny}'));
  t.is(await rpc('{lookup, weather}'), '{ok,sunny}');
  t.is(await rpc('{lookup, "weather"}'), 'undefined'); // the string is not the atom
  t.is(await rpc('{lokup, weather}'), '{error,{badRequest,{lokup,weather}}}');
  await ch.close();
});

test('the name server keeps floats floats: 1.0 comes back 1.0, and {K, 1} and {K, 1.0} are two keys', async (t) => {
  const server = await bookServer();
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
  const rpc = async (text: string): Promise<string> => formatTerm(await ch.rpc(parseTerm(text)));
  t.is(await rpc('{store, price, 1.0}'), 'true');
  t.is(await rpc('{lookup, price}'), '{ok,1.0}');
  t.is(await rpc('{store, {k, 1}, integer}'), 'true');
  t.is(await rpc('{store, {k, 1.0}, float}'), 'true');
  t.is(await rpc('{lookup, {k, 1}}'), '{ok,integer}');
  t.is(await rpc('{lookup, {k, 1.0}}'), '{ok,float}');
  t.is(await rpc('{lookup, {k, 1.00}}'), '{ok,float}');
  t.is(await rpc('{store, 1, one}'), 'true');
  t.is(await rpc('{lookup, 1.0}'), 'undefined');
  t.is(await rpc('{store, m, #{1 => a, 1.0 => b}}'), 'true');
  t.is(await rpc('{lookup, m}'), '{ok,#{1 => a,1.0 => b}}');
  // The float 2.5 is one key, held as a number or as a Float.
  t.is(await rpc('{store, 2.5, half}'), 'true');
  t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), new Float(2.5)))), '{ok,half}');
  const kvs = kvsClient(ch);
  await kvs.store('three', float(3));
  const three = await kvs.lookup('three');
  t.true(three instanceof Float && three.value === 3);
  t.is(await kvs.lookup(float(1)), undefined);
  await ch.close();
});

test('one store per service, shared by every connection', async (t) => {
  const server = await bookServer();
  t.teardown(() => server.close());
  const a = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
  a.cast(parseTerm('{store, {location, joe}, "Island"}'));
  await a.close();
  const b = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
  t.is(formatTerm(await b.rpc(parseTerm('{lookup, {location, joe}}'))), '{ok,"Island"}');
  await b.close();
});

test('the kvs helper works with plain values', async (t) => {
  const server = await bookServer();
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
  const kvs = kvsClient<string | number[]>(ch);
  await kvs.store('joe', 'writing a book');
  await kvs.store({ k: 1 } as never, [1, 2]);
  t.is(await kvs.lookup('joe'), 'writing a book');
  t.deepEqual(await kvs.lookup({ k: 1 } as never), [1, 2]);
  t.is(await kvs.lookup('jim'), undefined);
  await ch.close();
});

test("the README's library example runs as written", async (t) => {
  const server = await bookServer();
  t.teardown(() => server.close());
  const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = spawn(process.execPath, ['examples/kvs-session.mjs'], {
      env: { ...process.env, CHAN_PORT: String(server.port) },
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.on('close', (code) => resolve({ code, stdout }));
  });
  t.is(out.code, 0);
  t.is(out.stdout, 'writing a book\nundefined\n');
});

test("the kvs helper rejects with the service's word for the name server's own refusals, and badRequest for any other", async (t) => {
  // A service that answers every request {error, {Word, "why"}}, the word being the request's key.
  const refuser: Handler = async (mm) => {
    for await (const m of mm) {
      if (m.type !== 'chan') return;
      const key = isTuple(m.data) ? m.data.at(1) : undefined;
      mm.send(tuple(atom('error'), tuple(key instanceof Atom ? key : atom('nothing'), 'why')));
    }
  };
  const server = await testServer([service('refuser', refuser)]);
  t.teardown(() => server.close());
  const kvs = kvsClient(await connect('127.0.0.1', server.port, 'refuser', null));
  const code = async (word: string): Promise<string | undefined> =>
    (await t.throwsAsync<ChanError>(kvs.lookup(atom(word))))?.code;
  for (const word of ['storeFull', 'tooLarge', 'storeFailed', 'badRequest', 'frameTooLarge', 'badTerm'])
    t.is(await code(word), word);
  // Words a service could use to mislead its caller (its channel closed, its signal fired) are not taken as such.
  for (const word of ['closed', 'aborted', 'disconnected', 'timeout', 'notAWord']) t.is(await code(word), 'badRequest');
});
