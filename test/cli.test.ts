import { once } from 'node:events';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import { spawn } from 'node:child_process';
import { CHAN, run, serve } from './cli-helpers.js';
import { isAtom } from '../src/term/index.js';
import { BOOK_SERVICE, service, tempDir, testServer } from './helpers.js';
import { serverTls } from './tls-fixtures.js';

const BOOK = ['nameServer', 'ABXy45'];

test("the book's session through chan cast and chan rpc against chan serve", async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const target = ['localhost', String(port), ...BOOK];
  const cast = await run(['cast', ...target, '{store, joe, "writing a book"}.']);
  t.is(cast.status, 0, cast.stderr);
  t.is(cast.stdout, '');
  const found = await run(['rpc', ...target, '{lookup, joe}.']);
  t.is(found.status, 0, found.stderr);
  t.is(found.stdout, '{ok,"writing a book"}\n');
  const missing = await run(['rpc', ...target, '{lookup, jim}']);
  t.is(missing.stdout, 'undefined\n');
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  t.is(code, 0);
});

test('chan connect reads terms from piped stdin and exits 0 once every rpc is answered', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const input = [
    'cast {store, {location, joe}, "Island"}.',
    'cast {store, weather, raining}.',
    '{lookup, weather}.',
    'rpc {lookup,',
    '     {location, joe}}.',
    '{lookup, {location, mary}}.',
    '{store, weather, sunny}.',
    '{lookup, weather}.',
  ].join('\n');
  const r = await run(['connect', 'localhost', String(port), ...BOOK], { input });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, '{ok,raining}\n{ok,"Island"}\nundefined\ntrue\n{ok,sunny}\n');
});

test('chan connect: help lists the commands; a syntax error is reported and the session goes on', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run(['connect', 'localhost', String(port), ...BOOK], {
    input: 'help\n{lookup, joe\n}}.\n{lookup, jim}.\n',
  });
  t.regex(r.stdout, /cast TERM\./);
  t.regex(r.stdout, /rpc TERM\./);
  t.regex(r.stderr, /^chan: syntax: line 2, column 2: unexpected '}' after the term$/m);
  t.regex(r.stdout, /undefined\n$/);
  t.is(r.status, 1);
});

test('chan connect with piped input: a handler crash is one error line, and a last term needs no "."', async (t) => {
  const server = await testServer([
    service('fragile', async (mm) => {
      for await (const m of mm) {
        if (m.type === 'chan_closed') return;
        if (isAtom(m.data, 'poison')) throw new Error('poison message');
        mm.send(m.data);
      }
    }),
  ]);
  t.teardown(() => server.close());
  const crash = await run(['connect', '127.0.0.1', String(server.port), 'fragile', ''], { input: 'ok.\npoison.\n' });
  t.is(crash.stdout, 'ok\n');
  t.is(crash.stderr, 'chan: handlerError: the server closed the connection: poison message\n');
  t.is(crash.status, 1);
  const last = await run(['connect', '127.0.0.1', String(server.port), 'fragile', ''], {
    input: '{a,\n b}\n.\nfirst. second.\n{last, term}',
  });
  t.is(last.stderr, '');
  t.is(last.stdout, '{a,b}\nfirst\nsecond\n{last,term}\n');
  t.is(last.status, 0);
});

test('a SECRET of - is read from standard input', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run(['rpc', 'localhost', String(port), 'nameServer', '-', '{lookup, jim}'], { input: 'ABXy45\n' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'undefined\n');
});

test('a wrong secret prints chan: authFail and exits 1; an unknown service, badService', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const wrong = await run(['rpc', 'localhost', String(port), 'nameServer', 'wrong', '{lookup, joe}']);
  t.is(wrong.status, 1);
  t.is(wrong.stderr, 'chan: authFail: wrong secret for service nameServer\n');
  const unknown = await run(['cast', 'localhost', String(port), 'nameserver', 'ABXy45', '{lookup, joe}']);
  t.is(unknown.status, 1);
  t.is(unknown.stderr, 'chan: badService: no service named "nameserver"\n');
});

test('nothing listening: chan: econnrefused, exit 1', async (t) => {
  const { child, port } = await serve([]);
  child.kill('SIGKILL');
  await once(child, 'exit');
  const r = await run(['rpc', '127.0.0.1', String(port), ...BOOK, 'x']);
  t.is(r.status, 1);
  t.regex(r.stderr, /^chan: econnrefused: cannot connect to 127\.0\.0\.1:\d+/);
});

test('too few or too many arguments: the usage line of that command, exit 2', async (t) => {
  for (const [args, usage] of [
    [['serve', 'a.conf', 'b.conf'], 'chan serve [CONF] [--store URL] [--processes N|auto]'],
    [['ping', 'localhost'], 'chan ping [options] HOST PORT'],
    [['rpc', 'localhost', '1234', 'nameServer', 'ABXy45'], 'chan rpc [options] HOST PORT SERVICE SECRET TERM...'],
    [
      ['connect', 'localhost', '1234', 'nameServer', 'ABXy45', 'extra'],
      'chan connect [options] HOST PORT SERVICE SECRET',
    ],
  ] as const) {
    const r = await run([...args]);
    t.is(r.status, 2, args.join(' '));
    t.is(r.stderr, `chan: usage: ${usage} (see chan --help)\n`);
  }
});

test('a malformed config refuses to start with exit 2 and names every line', async (t) => {
  const file = path.join(
    tempDir({
      'bad.conf':
        '{port, 1234}.\n{service, nameServer, password, "x", mfa, mod_name_server, start_me_up}.\n{prot, 1}.\n',
    }),
    'bad.conf',
  );
  const r = await run(['serve', file]);
  t.is(r.status, 2);
  t.is(
    r.stderr,
    'chan: badConfig: the configuration has 2 problem(s); nothing was started\n' +
      `  ${file}:2:1: a service is {service, Name, password, Secret | none, mfa, Module, Function, ArgsS}: 8 elements, found 7\n` +
      `  ${file}:3:1: unknown option 'prot' (did you mean 'port'?)\n`,
  );
});

test('a service module that cannot be found refuses to start with exit 2', async (t) => {
  const file = path.join(
    tempDir({ 'x.conf': '{port, 0}.\n{service, s, password, none, mfa, mod_missing, start_me_up, []}.\n' }),
    'x.conf',
  );
  const r = await run(['serve', file]);
  t.is(r.status, 2);
  t.regex(
    r.stderr,
    /^chan: badConfig: cannot start:\n {2}service s: module 'mod_missing' is not built in and there is no mod_missing\.js in code_path/,
  );
});

test('services are loaded from code_path (the examples folder)', async (t) => {
  const { child, port } = await serve(['examples/lib_chan.conf']);
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run(['rpc', 'localhost', String(port), 'echo', '', '"hello"']);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, '#{"echo" => "hello"}\n');
  t.is((await run(['rpc', 'localhost', String(port), 'echo', '', 'count'])).stdout, '2\n');
});

test('usage errors exit 2', async (t) => {
  for (const args of [
    ['rpc', 'localhost', '1234'],
    ['rpc', 'localhost', 'port', 's', 'x', 'y'],
    ['bogus'],
    ['rpc', 'h', '1', 's', 'x', '{a,'],
    ['--nope'],
    ['bench', '--idle-hold', '0', 'localhost', '1', 's', 'x'],
    ['bench', '--idle-hold', '3000000000', 'localhost', '1', 's', 'x'],
  ]) {
    const r = await run(args);
    t.is(r.status, 2, args.join(' '));
    t.regex(r.stderr, /^chan: usage: /, args.join(' '));
  }
  const help = await run(['--help']);
  t.is(help.status, 0);
  for (const c of ['serve', 'check', 'connect', 'rpc', 'cast', 'ping', 'certs', 'passwd']) {
    t.regex(help.stdout, new RegExp(`chan ${c} `));
    const one = await run([c, '--help']);
    t.is(one.status, 0, c);
    t.regex(one.stdout, new RegExp(`^usage: chan ${c}`), c);
    t.is((await run(['help', c])).stdout, one.stdout);
  }
  t.regex((await run(['help', 'connect'])).stdout, /usage: chan connect \[options\] HOST PORT SERVICE SECRET/);
  t.regex((await run(['--version'])).stdout, /^\d+\.\d+\.\d+\n$/);
});

test('chan connect says so and exits 1 when the server goes away', async (t) => {
  const { child: server, port } = await serve([]);
  t.teardown(() => server.kill('SIGKILL'));
  const session = spawn(process.execPath, [CHAN, 'connect', 'localhost', String(port), ...BOOK], { stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  session.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const answered = new Promise<void>((resolve) =>
    session.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (stdout.includes('undefined')) resolve();
    }),
  );
  session.stdin.write('{lookup, jim}.\n'); // stdin stays open: the session is waiting for the next line
  await answered;
  server.kill('SIGTERM');
  // 'close', not 'exit': the child's output may still be on its way when it has exited.
  const [code] = await once(session, 'close');
  t.is(code, 1);
  t.is(stderr, 'chan: shutdown: the server closed the connection: the server is shutting down\n');
});

test('chan rpc sends several terms over one connection and prints the answers in order; - reads them from stdin', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const target = ['localhost', String(port), ...BOOK];
  t.is((await run(['cast', ...target, '{store, a, 1}.', '{store, b, 2}.'])).status, 0);
  const r = await run(['rpc', ...target, '{lookup, b}.', '{lookup, a}', '{lookup, c}.']);
  t.is(r.stdout, '{ok,2}\n{ok,1}\nundefined\n');
  const piped = await run(['rpc', ...target, '-'], { input: '{lookup, a}.\n{lookup,\n b}.\n' });
  t.is(piped.stdout, '{ok,1}\n{ok,2}\n', piped.stderr);
  const bad = await run(['rpc', ...target, '-'], { input: '{lookup, a}.\n{lookup b}.\n' });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /^chan: usage: standard input: line 2, column 9/);
});

test('--json: terms typed and printed as JSON, for rpc, cast and a session', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const target = ['localhost', String(port), ...BOOK];
  const store = '{"$tuple": [{"$atom": "store"}, {"$atom": "joe"}, {"k": [1, "two"]}]}';
  t.is((await run(['cast', '--json', ...target, store])).status, 0);
  const r = await run(['rpc', '--json', ...target, '{"$tuple": [{"$atom": "lookup"}, {"$atom": "joe"}]}']);
  t.is(r.stdout, '{"$tuple":[{"$atom":"ok"},{"k":[1,"two"]}]}\n', r.stderr);
  const s = await run(['connect', '--json', ...target], {
    input: 'rpc {"$tuple": [{"$atom": "lookup"}, {"$atom": "jim"}]}\nnot json\n',
  });
  t.is(s.stdout, '{"$atom":"undefined"}\n');
  t.regex(s.stderr, /^chan: syntax: not valid JSON/);
  t.is(s.status, 1);
});

test('chan ping tells a lib-chan server from something else, without a secret', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const r = await run(['ping', 'localhost', String(port)]);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`^localhost:${port}: lib-chan \\d+\\.\\d+\\.\\d+, protocol version 1, [\\d.]+ ms\\n$`));
  const { createServer } = await import('node:net');
  const other = createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    other.close();
  });
  const notUs = await run(['ping', '127.0.0.1', String((other.address() as { port: number }).port)]);
  t.is(notUs.status, 1);
  t.regex(notUs.stderr, /is not a lib-chan server/);
});

test('chan check prints every setting, its value and where it came from; secrets masked', async (t) => {
  const r = await run(['check', 'conf/lib_chan.conf'], { env: { CHAN_HANDSHAKE_TIMEOUT: '2500' } });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^conf\/lib_chan\.conf: valid/);
  t.regex(r.stdout, /^port +1234 +conf\/lib_chan\.conf:2$/m);
  t.regex(r.stdout, /^handshake_timeout +2500 +CHAN_HANDSHAKE_TIMEOUT$/m);
  t.regex(r.stdout, /^max_frame_size +1048576 +default$/m);
  t.regex(r.stdout, /nameServer: password \*{8}; mfa mod_name_server:start_me_up\(notUsed\)/);
  t.false(r.stdout.includes('ABXy45'));
  const bad = await run(['check', 'conf/lib_chan.conf'], { env: { CHAN_PORT: 'x' } });
  t.is(bad.status, 2);
  t.regex(bad.stderr, /port: must be an integer from 0 to 65535 \(from the environment variable CHAN_PORT\)/);
});

test('chan serve on a port in use, or on a host that does not resolve: one line with its word, exit 1', async (t) => {
  const busy = net.createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const inUse = await run(['serve', 'conf/lib_chan.conf'], { env: { CHAN_PORT: String(port) } });
  t.is(inUse.status, 1);
  t.is(
    inUse.stderr,
    `chan: socketError: cannot listen on 127.0.0.1:${port}: the address is in use (another server on that port?)\n`,
  );
  const nowhere = await run(['serve', 'conf/lib_chan.conf'], {
    env: { CHAN_PORT: '0', CHAN_HOST: 'no-such-host.invalid' },
  });
  t.is(nowhere.status, 1);
  t.regex(
    nowhere.stderr,
    /^chan: nxdomain: cannot listen on no-such-host\.invalid:0: the host name does not resolve\n$/,
  );
});

test('chan ping keeps to --timeout, and says when the port speaks TLS', async (t) => {
  const silent = net.createServer();
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.teardown(() => silent.close());
  const started = Date.now();
  const quiet = await run([
    'ping',
    '--timeout',
    '300',
    '127.0.0.1',
    String((silent.address() as net.AddressInfo).port),
  ]);
  t.is(quiet.status, 1);
  t.regex(quiet.stderr, /^chan: timeout: .* did not answer hello within 300 ms of the ping's start\n$/);
  // Under the 10 s default by a margin that a loaded machine's process start (seconds, in a full run) leaves.
  t.true(Date.now() - started < 9500, 'it did not wait the default 10 s');
  const server = await testServer([BOOK_SERVICE], { tls: serverTls() });
  t.teardown(() => server.close());
  const tls = await run(['ping', '127.0.0.1', String(server.port)]);
  t.is(tls.status, 1);
  t.regex(tls.stderr, /closed the connection without answering hello: a TLS port \(ping it with --tls/);
});

test('chan check runs what chan serve checks before it listens, and lists every problem at once', async (t) => {
  const dir = tempDir({
    'mod_bad.js': 'export async function start_me_up(mm) {\n  mm.send(1;\n}\n',
    'lib_chan.conf': [
      '{port, 0}.',
      '{code_path, [".", "missing"]}.',
      '{service, a, password, none, mfa, mod_missing, start_me_up, x}.',
      '{service, b, password, none, mfa, mod_name_server, nope, x}.',
      '{service, c, password, none, mfa, mod_bad, start_me_up, x}.',
      '',
    ].join('\n'),
  });
  const r = await run(['check', path.join(dir, 'lib_chan.conf')]);
  t.is(r.status, 2);
  const lines = r.stderr.trim().split('\n');
  t.regex(lines[0] ?? '', /reads well, but chan serve would refuse to start it: 4 problem\(s\)$/);
  t.regex(lines[1] ?? '', /^ {2}code_path: .*missing is not a folder$/);
  t.regex(lines[2] ?? '', /^ {2}service a: module 'mod_missing' is not built in/);
  t.regex(lines[3] ?? '', /^ {2}service b: module 'mod_name_server' \(built in\) exports no function 'nope'$/);
  t.regex(
    lines[4] ?? '',
    /^ {2}service c: module 'mod_bad' does not parse \(.*mod_bad\.js:2\): missing \) after argument list$/,
  );
});

test('chan profile saves where a service is (never its secret); @NAME stands for HOST PORT SERVICE', async (t) => {
  const { child, port } = await serve([]);
  t.teardown(() => child.kill('SIGKILL'));
  const file = path.join(tempDir(), 'profiles.json');
  const env = { CHAN_PROFILES: file };
  const saved = await run(['profile', 'save', 'kvs', '127.0.0.1', String(port), 'nameServer'], { env });
  t.is(saved.status, 0, saved.stderr);
  t.regex(saved.stdout, /^saved @kvs: 127\.0\.0\.1 \d+ nameServer \(no secret is saved\)/);
  t.is(statSync(file).mode & 0o777, 0o600);
  t.false(readFileSync(file, 'utf8').includes('ABXy45'));
  t.is((await run(['cast', '@kvs', 'ABXy45', '{store, ann, "a profile"}'], { env })).status, 0);
  const rpc = await run(['rpc', '@kvs', '-', '{lookup, ann}'], { env, input: 'ABXy45\n' });
  t.is(rpc.stdout, '{ok,"a profile"}\n', rpc.stderr);
  const session = await run(['connect', '@kvs', 'ABXy45'], { env, input: '{lookup, ann}.\n' });
  t.is(session.stdout, '{ok,"a profile"}\n');
  t.regex((await run(['profile', 'list'], { env })).stdout, /^@kvs {2}127\.0\.0\.1 \d+ nameServer\n$/);
  const missing = await run(['rpc', '@nope', 'x', 'a'], { env });
  t.is(missing.status, 2);
  t.regex(missing.stderr, /no profile 'nope' in .*profiles\.json/);
  // A file edited by hand into something else is refused, saying which profile.
  writeFileSync(file, JSON.stringify({ broken: { host: 'h', port: 'nope', service: 's' } }));
  const broken = await run(['rpc', '@broken', 'x', 'a'], { env });
  t.is(broken.status, 2);
  t.regex(broken.stderr, /profile 'broken' in .* is not host, port and service/);
  writeFileSync(file, JSON.stringify({ kvs: { host: '127.0.0.1', port: 1, service: 's' } }));
  t.is((await run(['profile', 'delete', 'kvs'], { env })).status, 0);
  t.regex((await run(['profile', 'list'], { env })).stdout, /^no profiles in /);
});
