import path from 'node:path';
import test from 'ava';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { DEFAULTS } from '../src/config/options.js';
import { formatTerm } from '../src/term/index.js';
import { tempDir } from './helpers.js';

const BOOK = `%% conf
{port, 1234}.
{service, nameServer, password, "ABXy45", mfa, mod_name_server, start_me_up, notUsed}.
`;

function problems(text: string, env: Record<string, string> = {}, format: 'terms' | 'json' = 'terms'): string[] {
  try {
    parseConfig(text, { file: 'lib_chan.conf', env, format });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(String);
    throw err;
  }
  return [];
}

test("reads the book's lib_chan.conf as it is", (t) => {
  const c = parseConfig(BOOK, { env: {} });
  t.is(c.port, 1234);
  t.is(c.services.length, 1);
  const [s] = c.services;
  t.is(s?.name, 'nameServer');
  t.is(s?.secret, 'ABXy45');
  t.is(s?.module, 'mod_name_server');
  t.is(s?.function, 'start_me_up');
  t.is(formatTerm(s?.args ?? null), 'notUsed');
  t.is(c.handshakeTimeout, DEFAULTS.handshakeTimeout);
  t.is(c.maxFrameSize, DEFAULTS.maxFrameSize);
  t.is(c.maxFrameSizeUnauth, DEFAULTS.maxFrameSizeUnauth);
  t.is(c.host, DEFAULTS.host);
});

test('the shipped conf/lib_chan.conf is the book file and loads', (t) => {
  const c = loadConfigFile(path.resolve('conf/lib_chan.conf'), { env: {} });
  t.is(c.port, 1234);
  t.is(c.services[0]?.name, 'nameServer');
});

test('password none makes a service without a secret', (t) => {
  const c = parseConfig('{port, 1}.\n{service, open, password, none, mfa, m, f, []}.', { env: {} });
  t.is(c.services[0]?.secret, null);
});

test('CHAN_ variables win over the file', (t) => {
  const c = parseConfig(BOOK, {
    env: { CHAN_PORT: '4321', CHAN_HANDSHAKE_TIMEOUT: '500', CHAN_LOG_LEVEL: 'debug', CHAN_CODE_PATH: '/a:/b' },
  });
  t.is(c.port, 4321);
  t.is(c.handshakeTimeout, 500);
  t.is(c.logLevel, 'debug');
  t.deepEqual(c.codePath, ['/a', '/b']);
});

test('a bad CHAN_ variable is named in the error', (t) => {
  t.deepEqual(problems(BOOK, { CHAN_PORT: '12abc' }), [
    'lib_chan.conf: port: must be an integer from 0 to 65535 (from the environment variable CHAN_PORT)',
  ]);
});

test('lists every problem, each with file:line:column', (t) => {
  const text = `{port, 99999}.
{prot, 1}.
{service, nameServer, pasword, "ABXy45", mfa, mod_name_server, start_me_up, notUsed}.
{handshake_timeout, "soon"}.
{service, a b}.
{service, nameServer, password, "x", mfa, m, f, a}.
{service, nameServer, password, "x", mfa, m, f, a}.
{max_frame_size, 0}.
{log_level, loud}.
{port, 2}.
[no, a, tuple].
`;
  t.deepEqual(problems(text), [
    'lib_chan.conf:1:8: port: must be an integer from 0 to 65535',
    "lib_chan.conf:2:1: unknown option 'prot' (did you mean 'port'?)",
    "lib_chan.conf:3:23: expected the atom 'password' or 'verifier' here: a service is {service, Name, password, Secret | none, mfa, Module, Function, ArgsS}",
    'lib_chan.conf:4:21: handshake_timeout: must be a positive integer',
    "lib_chan.conf:5:13: expected ',' or '}' in a tuple, found 'b'",
    "lib_chan.conf:7:11: service 'nameServer' is defined twice (first at line 6)",
    'lib_chan.conf:8:18: max_frame_size: must be an integer from 256 to 4294967295 (docs/PROTOCOL.md, section 1)',
    'lib_chan.conf:9:13: log_level: must be one of fatal, error, warn, info, debug, trace, silent',
    "lib_chan.conf:10:1: option 'port' is set twice (first set at line 1)",
    'lib_chan.conf:11:1: expected {Option, Value} or {service, ...}, found [no,a,tuple]',
  ]);
});

test('a password SASLprep refuses is a problem at its file:line:column, naming the service and not the secret', (t) => {
  const text = `{port, 1}.
{service, alarm, password, "bell\\x07", mfa, m, f, a}.
{service, emoji, password, "key\\x{1f511}", mfa, m, f, a}.
{service, fine, password, "I\\x{ad}X", mfa, m, f, a}.
`;
  t.deepEqual(problems(text), [
    "lib_chan.conf:2:28: the password of service 'alarm' holds a character that SASLprep (RFC 4013) prohibits: a control character (tab and newline included), a private-use or non-character code point, a lone surrogate, or another of its section 2.3",
    "lib_chan.conf:3:28: the password of service 'emoji' holds a character that Unicode 3.2 did not assign, which SASLprep (RFC 4013) refuses in a password (emoji are among them)",
  ]);
  const json = JSON.stringify({ port: 1, services: [{ name: 'alarm', password: 'bell\u0007', mfa: ['m', 'f', 'a'] }] });
  t.deepEqual(
    problems(json, {}, 'json').map((p) => p.replace(/prohibits.*/, 'prohibits')),
    ["lib_chan.conf:1:50: the password of service 'alarm' holds a character that SASLprep (RFC 4013) prohibits"],
  );
});

test('a missing port or service is reported', (t) => {
  t.deepEqual(problems('{service, s, password, none, mfa, m, f, a}.'), [
    'lib_chan.conf: no port: add {port, N}. to the file, or set CHAN_PORT',
  ]);
  t.deepEqual(problems('{port, 1}.'), [
    'lib_chan.conf: no services: add at least one {service, Name, password, Secret | none, mfa, Module, Function, ArgsS}.',
  ]);
  t.deepEqual(problems('{service, s, password, none, mfa, m}.'), [
    'lib_chan.conf:1:1: a service is {service, Name, password, Secret | none, mfa, Module, Function, ArgsS}: 8 elements, found 6',
  ]);
});

test('a missing file is reported, not thrown as a crash', (t) => {
  const err = t.throws(() => loadConfigFile('/nonexistent/lib_chan.conf', { env: {} }), { instanceOf: ConfigError });
  t.is(err?.code, 'badConfig');
  t.is(err?.problems[0]?.toString(), '/nonexistent/lib_chan.conf: no such file');
});

test('loads JSON configs of the same shape', (t) => {
  const dir = tempDir({
    'lib_chan.json': JSON.stringify({
      port: 1234,
      code_path: ['services'],
      services: [{ name: 'nameServer', password: 'ABXy45', mfa: ['mod_name_server', 'start_me_up', 'notUsed'] }],
    }),
  });
  const file = path.join(dir, 'lib_chan.json');
  const c = loadConfigFile(file, { env: {} });
  t.is(c.port, 1234);
  t.deepEqual(c.codePath, [path.join(dir, 'services')]);
  t.is(c.services[0]?.function, 'start_me_up');
});

test('a TLS option written at the top level is told where it goes, in term files and JSON alike', (t) => {
  t.deepEqual(problems('{port, 1}.\n{verify_client, required}.\n'), [
    `lib_chan.conf:2:1: 'verify_client' is a TLS option: it goes in the tls list ({tls, [{verify_client, ...}]} in a term file, "tls": {"verify_client": ...} in JSON)`,
  ]);
  t.deepEqual(problems('{\n  "port": 1,\n  "ca": "ca.pem"\n}', {}, 'json'), [
    `lib_chan.conf:3:3: 'ca' is a TLS option: it goes in the tls list ({tls, [{ca, ...}]} in a term file, "tls": {"ca": ...} in JSON)`,
  ]);
});

test('frame limits are from 256, the smallest a peer may state, to 4294967295, what a frame header can say', (t) => {
  const limit = (key: string, value: number): string[] =>
    problems(`{port, 1}.\n{service, s, password, none, mfa, m, f, []}.\n{${key}, ${value}}.\n`);
  for (const key of ['max_frame_size', 'max_frame_size_unauth']) {
    t.deepEqual(limit(key, 256), []);
    t.deepEqual(limit(key, 4294967295), []);
    for (const bad of [255, 4294967296])
      t.deepEqual(limit(key, bad), [
        `lib_chan.conf:3:${key.length + 4}: ${key}: must be an integer from 256 to 4294967295 (docs/PROTOCOL.md, section 1)`,
      ]);
  }
});

test('JSON problems carry line:column too', (t) => {
  const text =
    '{\n  "port": "x",\n  "hots": "a",\n  "services": [{"name": "s", "password": 5, "mfa": ["m", "f", null]}]\n}';
  t.deepEqual(problems(text, {}, 'json'), [
    'lib_chan.conf:2:11: port: must be an integer from 0 to 65535',
    "lib_chan.conf:3:3: unknown option 'hots' (did you mean 'host'?)",
    'lib_chan.conf:4:42: a password must be a non-empty string, or the atom none for a service without one',
  ]);
  t.deepEqual(problems('{"port": 1,,}', {}, 'json').length, 1);
});

test('relative code_path entries resolve against the config file folder', (t) => {
  const c = parseConfig('{port, 1}.\n{code_path, ["../examples"]}.\n{service, s, password, none, mfa, m, f, a}.', {
    file: '/srv/chan/conf/lib_chan.conf',
    env: {},
  });
  t.deepEqual(c.codePath, ['/srv/chan/examples']);
});

test('an integer option written as a float (1048576.0) is refused, as a float is not an integer', (t) => {
  t.deepEqual(problems(`{port, 1234.0}.\n{service, s, password, none, mfa, m, f, []}.`), [
    'lib_chan.conf:1:8: port: must be an integer from 0 to 65535',
  ]);
  t.deepEqual(problems(`${BOOK}{max_frame_size, 1048576.0}.\n`), [
    'lib_chan.conf:4:18: max_frame_size: must be an integer from 256 to 4294967295 (docs/PROTOCOL.md, section 1)',
  ]);
  t.deepEqual(
    problems(`{port, 1}.\n{service, s, password, none, mfa, m, f, [], {isolation, worker}, {workers, 2.0}}.`),
    ['lib_chan.conf:2:76: workers must be a whole number from 1 to 64'],
  );
  // ArgsS is the service's own: a float in it is kept a float.
  const c = parseConfig('{port, 1}.\n{service, s, password, none, mfa, m, f, [{rate, 1.0}]}.', { env: {} });
  t.is(formatTerm(c.services[0]?.args ?? null), '[{rate,1.0}]');
});

test('processes is a whole number from 1 to 1024, or auto; store is memory:, lmdb:DIR or redis://', (t) => {
  for (const ok of ['1', '1024', 'auto']) t.deepEqual(problems(BOOK, { CHAN_PROCESSES: ok }), [], ok);
  t.is(parseConfig(BOOK, { env: { CHAN_PROCESSES: 'auto' } }).processes, 'auto');
  t.is(parseConfig(BOOK, { env: { CHAN_PROCESSES: '8' } }).processes, 8);
  for (const bad of ['0', '1025', 'many', '2.5'])
    t.regex(
      problems(BOOK, { CHAN_PROCESSES: bad }).join('\n'),
      /processes: must be a whole number from 1 to 1024, or auto/,
      bad,
    );
  t.is(parseConfig(BOOK, { env: {} }).store, null, 'unset: each of chan serve and startServer picks its own');
  t.deepEqual(problems(BOOK, { CHAN_STORE: 'lmdb:/tmp/x' }), []);
  t.regex(
    problems(BOOK, { CHAN_STORE: 'sqlite:x' }).join('\n'),
    /store: .*is not a store: use memory:, lmdb:<dir> or redis:\/\/host:port\/db/,
  );
  t.regex(problems(BOOK, { CHAN_STORE: 'lmdb:' }).join('\n'), /lmdb: needs a directory/);
});
