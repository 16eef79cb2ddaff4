/** Regressions for defects found in review: each test fails on the code before its fix. */
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import * as scram from '../src/auth/scram.js';
import { connect } from '../src/client.js';
import { parseConfig } from '../src/config/load.js';
import { ChanError } from '../src/errors.js';
import { startServer } from '../src/server.js';
import { RawClient, echo, service, testServer, tempDir } from './helpers.js';
import { fixtures, serverTls } from './tls-fixtures.js';
import { makeCertificate } from '../src/certs.js';
import { createLogger } from '../src/log.js';
import { Writable } from 'node:stream';

test('throttling holds for guesses made on handshakes opened before the lockout', async (t) => {
  const server = await testServer([service('s', echo, 'right')], { authMaxFailures: 3 });
  t.teardown(() => server.close());
  const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.open(server.port)));
  const challenges = await Promise.all(
    clients.map(async (c, i) => {
      const nonce = `nonce${i}abcdef`;
      c.send({ kind: 'startService', version: 1, service: 's', args: null, scram: `n,,n=s,r=${nonce}` });
      const ch = await c.next(0);
      if (ch.kind !== 'challenge') throw new Error('no challenge');
      return { bare: `n=s,r=${nonce}`, first: ch.scram };
    }),
  );
  const answer = async (i: number, secret: string): Promise<string | undefined> => {
    const c = clients[i] as RawClient;
    const { bare, first } = challenges[i] as { bare: string; first: string };
    const sf = scram.parseServerFirst(first) as NonNullable<ReturnType<typeof scram.parseServerFirst>>;
    const salted = await scram.saltedPassword(secret, sf.salt, sf.iterations);
    const wp = scram.clientFinalWithoutProof(sf.nonce);
    c.send({
      kind: 'response',
      scram: `${wp},p=${scram.clientProof(salted, scram.authMessage(bare, first, wp)).toString('base64')}`,
    });
    const m = await c.next(1).catch(() => undefined);
    return m?.kind === 'ack' ? 'ack' : m?.kind === 'close' ? m.reason : (await c.closeMessage())?.reason;
  };
  for (let i = 0; i < 3; i++) t.is(await answer(i, `wrong${i}`), 'authFail');
  t.is(await answer(3, 'right'), 'authThrottled');
  t.is(await answer(4, 'wrong again'), 'authThrottled');
});

test('a reload that turns on verify_client required applies to new connections', async (t) => {
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    services: [service('open', echo)],
    tls: serverTls('none'),
  });
  t.teardown(() => server.close());
  const ca = fixtures().ca.certPem;
  const before = await connect('localhost', server.port, 'open', null, null, { tls: { ca } });
  await before.close();
  const next = {
    ...parseConfig('{port, 0}.\n{service, open, password, none, mfa, m, f, a}.', { env: {} }),
    tls: serverTls('required'),
  };
  t.deepEqual(await server.reload(next), ['service open: restart to change its mfa']);
  const err = await t.throwsAsync(connect('localhost', server.port, 'open', null, null, { tls: { ca } }), {
    instanceOf: ChanError,
  });
  t.is(err?.code, 'tlsRejected');
});

test('a reload with a certificate that does not match its key changes nothing', async (t) => {
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    services: [service('s', echo, 'old')],
    tls: serverTls('none'),
  });
  t.teardown(() => server.close());
  const p = fixtures();
  const bad = { ...serverTls('none'), key: p.ops.keyPem };
  const next = { ...parseConfig('{port, 0}.\n{service, s, password, "new", mfa, m, f, a}.', { env: {} }), tls: bad };
  await t.throwsAsync(server.reload(next));
  const ch = await connect('localhost', server.port, 's', 'old', null, { tls: { ca: p.ca.certPem } });
  await ch.close();
  t.pass();
});

test('a certificate that has expired, or is not valid yet, is refused at start and at a reload like a broken one', async (t) => {
  const p = fixtures();
  const notYet = makeCertificate({
    commonName: 'localhost',
    kind: 'server',
    hosts: ['localhost'],
    issuer: p.ca,
    notBefore: new Date(Date.now() + 86_400_000),
  });
  for (const [what, cert, message] of [
    ['expired', p.expiredServer, /tls\.cert: the certificate expired on /],
    ['not yet valid', notYet, /tls\.cert: the certificate is not valid until /],
  ] as const) {
    const dir = tempDir({ 'c.pem': cert.certPem, 'k.pem': cert.keyPem });
    const err = t.throws(() =>
      parseConfig(
        '{port, 1}.\n{tls, [{cert, "c.pem"}, {key, "k.pem"}]}.\n{service, s, password, none, mfa, m, f, a}.',
        { file: path.join(dir, 'x.conf'), env: {} },
      ),
    );
    t.regex(err?.message ?? '', new RegExp(`x\\.conf:2:15: ${message.source}`), what);
    const startErr = await t.throwsAsync(
      startServer({ port: 0, host: '127.0.0.1', services: [service('s', echo)], tls: serverTls('none', cert) }),
      { instanceOf: ChanError },
    );
    t.is(startErr?.code, 'badConfig', what);
  }
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    services: [service('s', echo)],
    tls: serverTls('none'),
  });
  t.teardown(() => server.close());
  const next = {
    ...parseConfig('{port, 0}.\n{service, s, password, none, mfa, m, f, a}.', { env: {} }),
    tls: serverTls('none', p.expiredServer),
  };
  t.regex((await t.throwsAsync(server.reload(next)))?.message ?? '', /the certificate expired on/);
  const ch = await connect('localhost', server.port, 's', null, null, { tls: { ca: p.ca.certPem } }); // the old one serves on
  await ch.close();
});

test('a certificate with fewer than 30 days left is served, with a warning', async (t) => {
  const p = fixtures();
  const soon = makeCertificate({
    commonName: 'localhost',
    kind: 'server',
    hosts: ['localhost'],
    issuer: p.ca,
    days: 10,
  });
  const lines: string[] = [];
  const logger = createLogger({
    pretty: false,
    stream: new Writable({
      write: (c, _e, cb) => {
        lines.push(String(c));
        cb();
      },
    }),
  });
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    services: [service('s', echo)],
    tls: serverTls('none', soon),
    logger,
  });
  t.teardown(() => server.close());
  t.true(
    lines.some((l) => /the TLS certificate expires in 9 days/.test(l)),
    lines.join(''),
  );
});

test('a config whose certificate does not match its key refuses to start, naming the line', (t) => {
  const p = fixtures();
  const dir = tempDir({ 'c.pem': p.server.certPem, 'k.pem': p.ops.keyPem });
  const err = t.throws(() =>
    parseConfig('{port, 1}.\n{tls, [{cert, "c.pem"}, {key, "k.pem"}]}.\n{service, s, password, none, mfa, m, f, a}.', {
      file: path.join(dir, 'x.conf'),
      env: {},
    }),
  );
  t.regex(err?.message ?? '', /x\.conf:2:15: tls: the certificate, key and ca do not work together/);
});

test('a worker whose start fails on restart does not leave the service up with no worker: it goes down', async (t) => {
  const dir = tempDir();
  const mark = path.join(dir, 'mark');
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    codePath: [path.resolve('test/fixtures')],
    handlerBlockTimeout: 100,
    restartIntensity: 2,
    services: [
      { name: 'w', secret: null, module: 'mod_fragile', function: 'start_me_up', isolation: 'worker', args: mark },
    ],
  });
  t.teardown(() => server.close());
  writeFileSync(mark, '');
  const ch = await connect('127.0.0.1', server.port, 'w', null);
  ch.cast('spin');
  t.is((await ch.closed).reason, 'handlerTimeout');
  while (server.stats().services['w']?.status !== 'down') await new Promise((r) => setTimeout(r, 20));
  const err = await t.throwsAsync(connect('127.0.0.1', server.port, 'w', null), { instanceOf: ChanError });
  t.is(err?.code, 'serviceDown');
});

test('in a worker, a promise nobody awaits is logged and the worker carries on', async (t) => {
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    codePath: [path.resolve('test/fixtures')],
    services: [{ name: 'w', secret: null, module: 'mod_fragile', function: 'start_me_up', isolation: 'worker' }],
  });
  t.teardown(() => server.close());
  const bystander = await connect('127.0.0.1', server.port, 'w', null);
  const culprit = await connect('127.0.0.1', server.port, 'w', null);
  t.is(await culprit.rpc('reject'), 'reject');
  t.is(await bystander.rpc('still here'), 'still here');
  t.is(await culprit.rpc('me too'), 'me too');
  t.deepEqual(server.stats().services['w'], { status: 'up', crashes: 0, restarts: 0 });
  await Promise.all([bystander.close(), culprit.close()]);
});

test('shutdown keeps to shutdown_timeout even when a peer never closes its side', async (t) => {
  const server = await testServer([service('s', echo)], { shutdownTimeout: 300 });
  const c = await RawClient.started(server.port, 's');
  c.socket.pause(); // it reads nothing more, so it never sees the close nor closes its side
  const started = Date.now();
  await server.close();
  const took = Date.now() - started;
  t.true(took < 1000, `server.close() took ${took} ms`);
  c.destroy();
});

test('TLS handshakes in progress count against max_unauthenticated; a TLS client refused a place is told tooManyConnections', async (t) => {
  const server = await testServer([service('s', echo)], {
    tls: serverTls(),
    maxUnauthenticated: 5,
    tlsHandshakeTimeout: 5000,
  });
  t.teardown(() => server.close());
  const squatters = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const s = net.connect({ host: '127.0.0.1', port: server.port });
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      return s;
    }),
  );
  while (server.stats().unauthenticated < 5) await new Promise((r) => setTimeout(r, 5));
  // The places are full, all from this address: a newcomer from it is refused, and told so over TLS (not a reset).
  const err = await t.throwsAsync(
    connect('127.0.0.1', server.port, 's', null, null, { tls: { ca: fixtures().ca.certPem } }),
    { instanceOf: ChanError },
  );
  t.is(err?.code, 'tooManyConnections');
  t.regex(err?.message ?? '', /max_unauthenticated \(5\)/);
  for (const s of squatters) s.destroy();
  while (server.stats().unauthenticated > 0) await new Promise((r) => setTimeout(r, 5));
  const ch = await connect('127.0.0.1', server.port, 's', null, null, { tls: { ca: fixtures().ca.certPem } });
  t.is(await ch.rpc('back'), 'back');
  await ch.close();
});

test('a reload from a stored verifier to password none is applied', async (t) => {
  const v = scram.formatVerifier(await scram.makeVerifier('old'));
  const server = await startServer(
    parseConfig(
      `{port, 0}.\n{host, "127.0.0.1"}.\n{service, s, verifier, "${v}", mfa, mod_name_server, start_me_up, x}.`,
      { env: {} },
    ),
  );
  t.teardown(() => server.close());
  await server.reload(
    parseConfig('{port, 0}.\n{service, s, password, none, mfa, mod_name_server, start_me_up, x}.', { env: {} }),
  );
  const ch = await connect('127.0.0.1', server.port, 's', null);
  await ch.close();
  t.is(
    (await t.throwsAsync(connect('127.0.0.1', server.port, 's', 'old'), { instanceOf: ChanError }))?.code,
    'badServer',
  );
});

test('a verifier over the iteration count clients accept is refused at start-up', (t) => {
  t.regex(
    String(scram.parseVerifier(`SCRAM-SHA-256$2000000:${'A'.repeat(24)}$${'A'.repeat(43)}=:${'A'.repeat(43)}=`)),
    /over 1000000, which clients refuse/,
  );
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

test('termKey and termEquals agree whatever else is in the term', async (t) => {
  const { atom, tuple, termEquals } = await import('../src/term/index.js');
  for (const name of ['null', 'undefined', 'NaN', 'Infinity', '-Infinity']) {
    const js = { null: null, undefined, NaN, Infinity, '-Infinity': -Infinity }[name] as never;
    t.is(termEquals(tuple(js, 1), tuple(atom(name), 1)), termEquals(tuple(js, 0.5), tuple(atom(name), 0.5)), name);
  }
  t.true(termEquals(atom('true'), true));
  t.false(termEquals(atom('joe'), 'joe'));
});

test('ping reports a server that never answers as timeout', async (t) => {
  const { ping } = await import('../src/ping.js');
  const mute = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    mute.close();
  });
  const err = await t.throwsAsync(ping('127.0.0.1', (mute.address() as net.AddressInfo).port, { timeout: 100 }), {
    instanceOf: ChanError,
  });
  t.is(err?.code, 'timeout');
});

test('a for-await that breaks lets another start; two at once still throw', async (t) => {
  const server = await testServer([
    service('p', async (mm) => {
      for (let i = 0; i < 4; i++) mm.push(i);
      await mm.receive();
    }),
  ]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'p', null);
  for await (const x of ch) if (x === 1) break;
  const it = ch[Symbol.asyncIterator]();
  t.is((await it.next()).value, 2);
  t.throws(() => ch[Symbol.asyncIterator](), { instanceOf: ChanError, message: /already being iterated/ });
  await ch.close();
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
