import net from 'node:net';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import test from 'ava';
import { connect, type ConnectOptions } from '../src/client.js';
import { ChanError } from '../src/errors.js';
import type { ServiceDefinition } from '../src/modules.js';
import type { ServerOptions } from '../src/server.js';
import path from 'node:path';
import { makeCertificate } from '../src/certs.js';
import { parseConfig } from '../src/config/load.js';
import { startServer } from '../src/server.js';
import { CLOSED_FIELDS, capturedLog, echo, lineFields, service, tempDir, testServer } from './helpers.js';
import { fixtures, serverTls } from './tls-fixtures.js';

const SERVICES: ServiceDefinition[] = [
  service('secret', echo, 'ABXy45'),
  service('open', echo, null),
  service('ops', echo, 'ops-secret', { allowCn: ['ops'] }),
];

async function outcome(p: Promise<{ close(): Promise<void>; rpc(x: unknown): Promise<unknown> }>): Promise<string> {
  try {
    const ch = await p;
    const answer = await ch.rpc('hi');
    await ch.close();
    return answer === 'hi' ? 'ack' : `wrong answer ${String(answer)}`;
  } catch (err) {
    if (err instanceof ChanError) return err.code;
    throw err;
  }
}

const transports: [string, Partial<ServerOptions>, ConnectOptions][] = [
  ['plain TCP', {}, {}],
  ['TLS', { tls: serverTls() }, { tls: { ca: fixtures().ca.certPem } }],
];

for (const [name, serverOptions, clientOptions] of transports) {
  test(`every handshake outcome over ${name}: ack, badService, badCert, authFail, badServer, authThrottled`, async (t) => {
    const server = await testServer(SERVICES, { ...serverOptions, authMaxFailures: 3, authLockout: 60_000 });
    t.teardown(() => server.close());
    const c = (svc: string, secret: string | null): Promise<string> =>
      outcome(connect('127.0.0.1', server.port, svc, secret, null, clientOptions));
    t.is(await c('secret', 'ABXy45'), 'ack');
    t.is(await c('open', null), 'ack');
    t.is(await c('nope', 'ABXy45'), 'badService');
    t.is(await c('ops', 'ops-secret'), 'badCert'); // allow_cn, and no client certificate
    t.is(await c('open', 'a secret the server cannot prove'), 'badServer');
    t.is(await c('secret', 'wrong'), 'authFail');
    t.is(await c('secret', 'wrong'), 'authFail');
    t.is(await c('secret', 'wrong'), 'authFail');
    t.is(await c('secret', 'ABXy45'), 'authThrottled'); // locked out, right secret or not
  });
}

test('a client without the CA refuses the server: tlsFailed', async (t) => {
  const server = await testServer(SERVICES, { tls: serverTls() });
  t.teardown(() => server.close());
  const err = await t.throwsAsync(
    connect('localhost', server.port, 'open', null, null, { tls: { ca: fixtures().otherCa.certPem } }),
    { instanceOf: ChanError },
  );
  t.is(err?.code, 'tlsFailed');
  t.regex(err?.message ?? '', /not signed by a CA we trust/);
});

test('an expired server certificate is refused by the client: tlsFailed', async (t) => {
  // (lib-chan's own server refuses to start with one: a bare TLS server stands in for a server that does not.)
  const expired = fixtures().expiredServer;
  const bare = tls.createServer({ cert: expired.certPem, key: expired.keyPem }, (s) => s.destroy());
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  t.teardown(() => bare.close());
  const port = (bare.address() as AddressInfo).port;
  const err = await t.throwsAsync(
    connect('localhost', port, 'open', null, null, { tls: { ca: fixtures().ca.certPem } }),
    { instanceOf: ChanError },
  );
  t.is(err?.code, 'tlsFailed');
  t.regex(err?.message ?? '', /has expired/);
});

test('a certificate for another host name is refused', async (t) => {
  const server = await testServer(SERVICES, { tls: serverTls() });
  t.teardown(() => server.close());
  const err = await t.throwsAsync(
    connect('127.0.0.1', server.port, 'open', null, null, {
      tls: { ca: fixtures().ca.certPem, servername: 'example.org' },
    }),
    {
      instanceOf: ChanError,
    },
  );
  t.is(err?.code, 'tlsFailed');
  t.regex(err?.message ?? '', /not for this host name/);
});

test('verify_client required: no client certificate, or one from another CA, is tlsRejected', async (t) => {
  const server = await testServer(SERVICES, { tls: serverTls('required') });
  t.teardown(() => server.close());
  const p = fixtures();
  const base = { ca: p.ca.certPem };
  t.is(await outcome(connect('localhost', server.port, 'open', null, null, { tls: base })), 'tlsRejected');
  t.is(
    await outcome(
      connect('localhost', server.port, 'open', null, null, {
        tls: { ...base, cert: p.otherCaClient.certPem, key: p.otherCaClient.keyPem },
      }),
    ),
    'tlsRejected',
  );
  t.is(
    await outcome(
      connect('localhost', server.port, 'open', null, null, {
        tls: { ...base, cert: p.dev.certPem, key: p.dev.keyPem },
      }),
    ),
    'ack',
  );
});

test('allow_cn: only a verified certificate with a listed common name gets the service', async (t) => {
  const { logger, lines } = capturedLog();
  const server = await testServer(SERVICES, { tls: serverTls('optional'), logger });
  t.teardown(() => server.close());
  const p = fixtures();
  const as = (pair?: { certPem: string; keyPem: string }): ConnectOptions => ({
    tls: { ca: p.ca.certPem, ...(pair ? { cert: pair.certPem, key: pair.keyPem } : {}) },
  });
  t.is(await outcome(connect('localhost', server.port, 'ops', 'ops-secret', null, as(p.ops))), 'ack');
  t.is(await outcome(connect('localhost', server.port, 'ops', 'ops-secret', null, as(p.dev))), 'badCert');
  t.is(await outcome(connect('localhost', server.port, 'ops', 'ops-secret', null, as())), 'badCert');
  t.is(await outcome(connect('localhost', server.port, 'ops', 'ops-secret', null, as(p.otherCaClient))), 'badCert');
  t.is(await outcome(connect('localhost', server.port, 'open', null, null, as())), 'ack'); // other services are open to all
  // Each connection's log lines say who it was: the verified certificate's common name where there is one.
  await server.close();
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const of = (msg: string): Record<string, unknown>[] => logged.filter((l) => l['msg'] === msg);
  const opened = of('connection opened');
  t.deepEqual(
    opened.map((l) => [l['service'], l['cn']]),
    [
      ['ops', 'ops'],
      ['open', undefined],
    ],
  );
  const closed = of('connection closed');
  t.is(closed.length, 5);
  const ops = closed.find((l) => l['service'] === 'ops');
  t.like(ops, { cn: 'ops', reason: 'normal', by: 'peer', framesIn: 4, framesOut: 3 });
  t.deepEqual(lineFields(ops), ['conn', 'peer', 'cn', 'service', ...CLOSED_FIELDS]);
  t.is(opened[0]?.['conn'], ops?.['conn']);
  t.regex(String(ops?.['peer']), /^127\.0\.0\.1:\d+$/);
  t.false('cn' in (closed.find((l) => l['service'] === 'open') ?? { cn: 1 }), 'no certificate, no cn');
  // Refused in the handshake: its certificate named, no service.
  const refused = closed.find((l) => l['cn'] === 'dev');
  t.like(refused, { reason: 'badCert', by: 'local' });
  t.deepEqual(lineFields(refused), ['conn', 'peer', 'cn', ...CLOSED_FIELDS]);
});

test('allow_cn over plain TCP: nobody has a verified certificate, so nobody gets the service', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  t.is(await outcome(connect('127.0.0.1', server.port, 'ops', 'ops-secret')), 'badCert');
});

test('a TLS handshake that does not finish in tls_handshake_timeout is cut off by the server', async (t) => {
  const server = await testServer(SERVICES, { tls: serverTls(), tlsHandshakeTimeout: 150 });
  t.teardown(() => server.close());
  const started = Date.now();
  const s = net.connect({ host: '127.0.0.1', port: server.port });
  s.on('error', () => {});
  s.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello, then nothing
  await new Promise((resolve) => s.once('close', resolve));
  t.true(Date.now() - started < 2000);
});

test('a plaintext client on a TLS port, and a TLS client on a plaintext port, get clear errors on both ends', async (t) => {
  const { logger, lines } = capturedLog();
  const tlsServer = await testServer(SERVICES, { tls: serverTls(), logger });
  const plainServer = await testServer(SERVICES, { logger });
  t.teardown(() => Promise.all([tlsServer.close(), plainServer.close()]));

  const plainOnTls = await t.throwsAsync(connect('127.0.0.1', tlsServer.port, 'open', null), { instanceOf: ChanError });
  t.regex(plainOnTls?.message ?? '', /if its port speaks TLS, connect with TLS/);
  const tlsOnPlain = await t.throwsAsync(
    connect('localhost', plainServer.port, 'open', null, null, { tls: { ca: fixtures().ca.certPem } }),
    { instanceOf: ChanError },
  );
  t.is(tlsOnPlain?.code, 'tlsFailed');
  t.regex(tlsOnPlain?.message ?? '', /does not speak TLS/);

  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.true(
    logged.some((l) => /TLS handshake failed: the client does not speak TLS/.test(String(l['msg']))),
    'the TLS server says why',
  );
  t.true(
    logged.some((l) => l['msg'] === 'connection closed' && l['reason'] === 'protocolError'),
    'the plain server says why',
  );
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
  const { logger, lines } = capturedLog();
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
