import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { connect } from '../src/client.js';
import { loadConfigFile } from '../src/config/load.js';
import { ChanError } from '../src/errors.js';
import { startServer, type ChanServer } from '../src/server.js';
import { formatTerm, parseTerm } from '../src/term/index.js';
import { run } from './cli-helpers.js';

async function examplesServer(): Promise<ChanServer> {
  return startServer(loadConfigFile(path.resolve('examples/lib_chan.conf'), { env: { CHAN_PORT: '0' } }));
}

/** A chat client as its own process; `lines` fills with what it prints. */
function chat(
  nick: string,
  port: number,
): { child: ChildProcessWithoutNullStreams; lines: string[]; saw: (pattern: RegExp) => Promise<void> } {
  const child = spawn(process.execPath, ['examples/irc/chat.mjs', nick, 'lobby', String(port)]);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  child.stdout.on('data', (c: Buffer) => {
    lines.push(
      ...String(c)
        .split('\n')
        .filter((l) => l !== ''),
    );
    for (const w of waiters.splice(0)) w();
  });
  const saw = async (pattern: RegExp): Promise<void> => {
    while (!lines.some((l) => pattern.test(l))) await new Promise<void>((r) => waiters.push(r));
  };
  return { child, lines, saw };
}

test('IRC lite: three chat clients; messages reach every member; one killed, the others see it leave', async (t) => {
  const server = await examplesServer();
  t.teardown(() => server.close());
  const ann = chat('ann', server.port);
  await ann.saw(/joined lobby as ann/);
  const bob = chat('bob', server.port);
  await bob.saw(/joined lobby as bob; members: \["ann","bob"\]/);
  const cat = chat('cat', server.port);
  await cat.saw(/members: \["ann","bob","cat"\]/);
  await ann.saw(/\[lobby\] cat joined/);
  bob.child.stdin.write('hello from bob\n');
  await Promise.all([ann, bob, cat].map((c) => c.saw(/\[lobby\] bob: hello from bob/)));
  cat.child.kill('SIGKILL');
  await Promise.all([ann.saw(/\[lobby\] cat left/), bob.saw(/\[lobby\] cat left/)]);
  const ch = await connect('127.0.0.1', server.port, 'irc', null);
  t.is(formatTerm(await ch.rpc(parseTerm('{members, lobby}'))), '{ok,["ann","bob"]}');
  t.is(formatTerm(await ch.rpc(parseTerm('{join, lobby, "ann"}'))), '{error,nickTaken}');
  t.is(formatTerm(await ch.rpc(parseTerm('{say, lobby, "x"}'))), '{error,notMember}');
  await ch.close();
  ann.child.stdin.end();
  bob.child.kill();
  await new Promise((r) => ann.child.once('exit', r));
  t.pass();
});

test('remote apply: only functions on the allow-list run; the rest are refused with a clear error', async (t) => {
  const server = await examplesServer();
  t.teardown(() => server.close());
  const r = await run([
    'rpc',
    'localhost',
    String(server.port),
    'math',
    'm4th',
    '{apply, math, sqrt, [2.0]}.',
    '{apply, math, sqrt, [4.0]}.',
    '{apply, math, sqrt, [4]}.',
    '{apply, lists, sum, [[1,2,3]]}.',
    '{apply, lists, sum, [[1,2.0]]}.',
    '{apply, os, cmd, ["rm -rf /"]}.',
    '{apply, math, pow, [2, 10]}.',
    '{apply, math, sqrt, [nine]}.',
    '{apply, lists, reverse, [[1,2]]}.',
    'allowed',
  ]);
  t.is(r.status, 0, r.stderr);
  t.is(
    r.stdout,
    [
      '{ok,1.4142135623730951}',
      '{ok,2.0}', // a float, as math:sqrt answers in Erlang
      '{ok,2.0}',
      '{ok,6}',
      '{ok,3.0}',
      '{error,{notAllowed,{os,cmd,1}}}',
      '{ok,1024.0}',
      '{error,{badarg,"nine is not a number"}}',
      '{error,{notAllowed,{lists,reverse,1}}}', // implemented, but not on this config's list
      '[{math,sqrt,1},{math,pow,2},{lists,sum,1},{erlang,node,0}]',
      '',
    ].join('\n'),
  );
});

test('remote apply answers with the kinds Erlang answers with: floats from math, integers kept integers', async (t) => {
  const all = parseTerm(
    '[{math, sqrt, 1}, {math, pow, 2}, {math, abs, 1}, {math, pi, 0}, {lists, sum, 1}, {lists, max, 1}, {lists, seq, 2}]',
  );
  const server = await startServer({
    port: 0,
    codePath: [path.resolve('examples')],
    services: [{ name: 'm', secret: null, module: 'mod_math', function: 'start_me_up', args: all }],
  });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'm', null);
  const apply = async (text: string): Promise<string> => formatTerm(await ch.rpc(parseTerm(`{apply, ${text}}`)));
  t.is(await apply('math, sqrt, [4.0]'), '{ok,2.0}');
  t.is(await apply('math, pow, [2.0, 3]'), '{ok,8.0}');
  t.is(await apply('math, abs, [-2.0]'), '{ok,2.0}');
  t.is(await apply('math, abs, [-2]'), '{ok,2}');
  t.is(await apply('math, pi, []'), '{ok,3.141592653589793}');
  t.is(await apply('lists, sum, [[]]'), '{ok,0}');
  t.is(await apply('lists, sum, [[1.0, 2.0]]'), '{ok,3.0}');
  t.is(await apply('lists, max, [[1, 2.0, 2]]'), '{ok,2.0}'); // the first of the greatest, as lists:max picks
  t.is(await apply('lists, max, [[3, 2.0]]'), '{ok,3}');
  t.is(await apply('lists, max, [[]]'), '{error,{badarg,"[] has no maximum"}}');
  t.is(await apply('lists, seq, [1, 3]'), '{ok,[1,2,3]}');
  t.is(await apply('lists, seq, [1, 3.0]'), '{error,{badarg,"3.0 is not an integer"}}');
  await ch.close();
});

test('remote apply: a config that allows what the module does not implement refuses to start', async (t) => {
  const err = await t.throwsAsync(
    startServer({
      port: 0,
      codePath: [path.resolve('examples')],
      services: [
        { name: 'm', secret: null, module: 'mod_math', function: 'start_me_up', args: parseTerm('[{os, cmd, 1}]') },
      ],
    }),
    { instanceOf: ChanError },
  );
  t.regex(err?.message ?? '', /service m: mod_math: os:cmd\/1 is not a function this service implements/);
});

test('the kvs session example runs against the examples config too', async (t) => {
  const server = await examplesServer();
  t.teardown(() => server.close());
  const out = await new Promise<string>((resolve) => {
    const child = spawn(process.execPath, ['examples/kvs-session.mjs'], {
      env: { ...process.env, CHAN_PORT: String(server.port) },
    });
    let s = '';
    child.stdout.on('data', (c: Buffer) => (s += String(c)));
    child.on('close', () => resolve(s));
  });
  t.is(out, 'writing a book\nundefined\n');
});

test('IRC lite: one connection is in 64 groups at most; the 65th join is refused, and leaving one makes room', async (t) => {
  const server = await examplesServer();
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'irc', null);
  for (let i = 0; i < 64; i++) t.is(formatTerm(await ch.rpc(parseTerm(`{join, {room, ${i}}, "ann"}`))), 'ok');
  t.is(formatTerm(await ch.rpc(parseTerm('{join, {room, 64}, "ann"}'))), '{error,tooManyGroups}');
  t.is(formatTerm(await ch.rpc(parseTerm('{join, {room, 0}, "ann"}'))), 'ok', 'a group it is in already');
  t.is(formatTerm(await ch.rpc(parseTerm('{leave, {room, 1}}'))), 'ok');
  t.is(formatTerm(await ch.rpc(parseTerm('{join, {room, 64}, "ann"}'))), 'ok');
  await ch.close();
});
