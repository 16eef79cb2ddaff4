/**
 * SASLprep (RFC 4013) of secrets, end to end: the client and the server prepare a secret the same way, so two
 * spellings that SASLprep makes equal authenticate against each other; a secret it refuses never reaches the wire.
 */
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import { connect } from '../src/client.js';
import { parseConfig } from '../src/config/load.js';
import { startServer } from '../src/server.js';
import { run } from './cli-helpers.js';
import { echo, refusal, service, tempDir, testServer } from './helpers.js';

const SOFT_HYPHENATED = 'I\u00ADX';
const PREPARED = 'IX';
const BELL = 'bell\u0007';

for (const [held, given] of [
  [SOFT_HYPHENATED, PREPARED],
  [PREPARED, SOFT_HYPHENATED],
]) {
  test(`a server holding ${JSON.stringify(held)} accepts a client giving ${JSON.stringify(given)}`, async (t) => {
    const server = await testServer([service('s', echo, held)]);
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.port, 's', given);
    t.is(await ch.rpc('hello'), 'hello');
    await ch.close();
  });
}

test('a config file password with a soft hyphen accepts the prepared form', async (t) => {
  const config = parseConfig(
    '{port, 0}.\n{host, "127.0.0.1"}.\n{service, s, password, "I\\x{ad}X", mfa, mod_name_server, start_me_up, x}.\n',
    { env: {} },
  );
  const server = await startServer(config);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', PREPARED);
  await ch.close();
  t.pass();
});

test('the client refuses a secret SASLprep prohibits with usage, before opening a connection', async (t) => {
  let connections = 0;
  const listener = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => listener.close());
  const port = (listener.address() as net.AddressInfo).port;
  const err = await refusal(connect('127.0.0.1', port, 's', BELL));
  t.is(err.code, 'usage');
  t.regex(err.message, /^the secret holds a character that SASLprep \(RFC 4013\) prohibits/);
  t.false(err.message.includes(BELL));
  t.is(connections, 0);
});

test('a server given a secret SASLprep prohibits in code refuses to start, naming the service', async (t) => {
  const err = await refusal(testServer([service('alarm', echo, BELL)]));
  t.is(err.code, 'badConfig');
  t.regex(err.message, /^ {2}service alarm: its secret holds a character that SASLprep/m);
  t.false(err.message.includes(BELL));
});

test('chan serve refuses a config whose password SASLprep prohibits: one line with file:line:column', async (t) => {
  const dir = tempDir({
    'lib_chan.conf': '{port, 0}.\n{service, alarm, password, "bell\\x07", mfa, mod_name_server, start_me_up, x}.\n',
  });
  const file = path.join(dir, 'lib_chan.conf');
  const r = await run(['serve', file]);
  t.is(r.status, 2);
  t.regex(
    r.stderr,
    new RegExp(
      `^  ${file.replaceAll('/', '\\/')}:2:28: the password of service 'alarm' holds a character that SASLprep \\(RFC 4013\\) prohibits`,
      'm',
    ),
  );
  t.false(r.stderr.includes('bell'));
});

test('chan passwd prepares the secret, and refuses one SASLprep prohibits', async (t) => {
  const made = await run(['passwd'], { input: `${SOFT_HYPHENATED}\n` });
  t.is(made.status, 0, made.stderr);
  const server = await startServer(
    parseConfig(
      `{port, 0}.\n{host, "127.0.0.1"}.\n{service, s, verifier, "${made.stdout.trim()}", mfa, mod_name_server, start_me_up, x}.`,
      { env: {} },
    ),
  );
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', PREPARED);
  await ch.close();

  const refused = await run(['passwd'], { input: `${BELL}\n` });
  t.is(refused.status, 2);
  t.regex(refused.stderr, /^chan: usage: the secret holds a character that SASLprep \(RFC 4013\) prohibits/);
  t.false(refused.stderr.includes('bell'));
});
