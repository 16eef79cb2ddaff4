import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import { SaltedPasswordCache, formatVerifier, makeVerifier, parseVerifier } from '../src/auth/scram.js';
import { AuthThrottle } from '../src/auth/throttle.js';
import { connect } from '../src/client.js';
import { parseConfig } from '../src/config/load.js';
import { DEFAULTS } from '../src/config/options.js';
import { ChanError } from '../src/errors.js';
import { startServer } from '../src/server.js';
import { formatTerm, parseTerm } from '../src/term/index.js';
import { run, serve } from './cli-helpers.js';
import * as scram from '../src/auth/scram.js';
import { BOOK_SERVICE, RawClient, capturedLog, echo, service, testServer, tempDir } from './helpers.js';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    const ch = (await p) as { close(): Promise<void> };
    await ch.close();
    return 'ack';
  } catch (err) {
    if (err instanceof ChanError) return err.code;
    throw err;
  }
}

test('throttling: maxFailures within the window lock an address out for the lockout, then it may try again', (t) => {
  let now = 0;
  const th = new AuthThrottle({ maxFailures: 3, window: 1000, lockout: 5000 }, () => now);
  t.false(th.fail('a'));
  now = 2000; // the first failure is out of the window now
  t.false(th.fail('a'));
  t.false(th.fail('a'));
  t.is(th.lockedFor('a'), 0);
  t.true(th.fail('a'));
  t.is(th.lockedFor('a'), 5000);
  t.is(th.lockedFor('b'), 0);
  now = 6999;
  t.is(th.lockedFor('a'), 1);
  now = 7000;
  t.is(th.lockedFor('a'), 0);
});

test('throttling keeps a bounded table however many addresses fail', (t) => {
  const th = new AuthThrottle({ maxFailures: 5, window: 1000, lockout: 1000 }, () => 0, 100);
  for (let i = 0; i < 1000; i++) th.fail(`10.0.${i >> 8}.${i & 255}`);
  t.is(th.size, 100);
});

test('a locked address stays locked however many other addresses fail: the table cannot be flushed', (t) => {
  let now = 0;
  const th = new AuthThrottle({ maxFailures: 5, window: 60_000, lockout: 60_000 }, () => now, 100);
  for (let i = 0; i < 5; i++) th.fail('192.0.2.1');
  t.is(th.lockedFor('192.0.2.1'), 60_000);
  // A hundred times the table, from other addresses, each failing once (the flush that used to unlock it).
  for (let i = 0; i < 10_000; i++) th.fail(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
  now = 30_000;
  t.is(th.lockedFor('192.0.2.1'), 30_000);
  t.true(th.size <= 100);
  now = 60_000;
  t.is(th.lockedFor('192.0.2.1'), 0);
});

test('IPv6 addresses are throttled by their /64; an IPv4 address written as IPv6 is the IPv4 address', (t) => {
  const th = new AuthThrottle({ maxFailures: 3, window: 1000, lockout: 5000 }, () => 0);
  th.fail('2001:db8:1:2::1');
  th.fail('2001:db8:1:2:ffff:0:0:7');
  th.fail('2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd');
  t.is(th.lockedFor('2001:db8:1:2:1234::5678'), 5000);
  t.is(th.lockedFor('2001:db8:1:3::1'), 0);
  for (let i = 0; i < 3; i++) th.fail('::ffff:192.0.2.9');
  t.is(th.lockedFor('192.0.2.9'), 5000);
});

test('a table full of lockouts counts every other address together, and locks them out together', (t) => {
  const th = new AuthThrottle({ maxFailures: 2, window: 1000, lockout: 5000 }, () => 0, 10);
  for (let i = 0; i < 10; i++) for (let k = 0; k < 2; k++) th.fail(`10.0.0.${i}`);
  t.is(th.lockedCount, 10);
  t.false(th.fail('10.9.9.1'));
  t.is(th.lockedFor('10.9.9.2'), 0);
  t.true(th.fail('10.9.9.2')); // the second failure from outside the table
  t.is(th.lockedFor('10.9.9.3'), 5000);
  t.is(th.lockedFor('10.0.0.1'), 5000);
});

test('six wrong secrets from one address: the sixth is authThrottled; other addresses get in; the lockout ends', async (t) => {
  const { logger, lines } = capturedLog();
  const server = await testServer([BOOK_SERVICE], { authLockout: 400, logger });
  t.teardown(() => server.close());
  const attempt = (secret: string, localAddress = '127.0.0.1'): Promise<string> =>
    code(connect('127.0.0.1', server.port, 'nameServer', secret, null, { localAddress }));
  for (let i = 0; i < 5; i++) t.is(await attempt(`guess${i}`), 'authFail');
  t.is(await attempt('guess5'), 'authThrottled');
  t.is(await attempt('ABXy45'), 'authThrottled');
  t.is(await attempt('ABXy45', '127.0.0.2'), 'ack');
  const err = await t.throwsAsync(connect('127.0.0.1', server.port, 'nameServer', 'ABXy45'), { instanceOf: ChanError });
  t.regex(err?.message ?? '', /too many failed handshakes from 127\.0\.0\.1; try again in 1 s/);
  await new Promise((r) => setTimeout(r, 450)); // the lockout is a span of time: waiting it out is the point
  t.is(await attempt('ABXy45'), 'ack');

  const failures = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['reason'] === 'authFail' && l['msg'] !== 'connection closed');
  t.is(failures.length, 5);
  for (const f of failures) {
    t.is(f['service'], 'nameServer');
    t.regex(String(f['peer']), /^127\.0\.0\.1:\d+$/);
  }
  const all = lines.join('\n');
  for (const secret of ['ABXy45', 'guess0', 'guess4']) t.false(all.includes(secret), `the log holds ${secret}`);
  t.false(/p=[A-Za-z0-9+/]{20,}/.test(all), 'the log holds a proof');
});

test('verifier and plaintext-password services side by side', async (t) => {
  const verifier = formatVerifier(await makeVerifier('vault-secret'));
  const config = parseConfig(
    `{port, 0}.\n{host, "127.0.0.1"}.\n{service, plain, password, "ABXy45", mfa, mod_name_server, start_me_up, notUsed}.\n{service, stored, verifier, "${verifier}", mfa, mod_name_server, start_me_up, notUsed}.`,
    { env: {} },
  );
  t.is(config.services[1]?.secret, null);
  const server = await startServer(config);
  t.teardown(() => server.close());
  t.is(await code(connect('127.0.0.1', server.port, 'plain', 'ABXy45')), 'ack');
  t.is(await code(connect('127.0.0.1', server.port, 'stored', 'vault-secret')), 'ack');
  t.is(await code(connect('127.0.0.1', server.port, 'stored', 'ABXy45')), 'authFail');
  t.is(await code(connect('127.0.0.1', server.port, 'plain', 'vault-secret')), 'authFail');
});

test('a bad verifier is refused at start-up with its position', (t) => {
  const err = t.throws(() =>
    parseConfig('{port, 1}.\n{service, s, verifier, "SCRAM-SHA-256$1000:c2FsdHNhbHQ=$AAAA:AAAA", mfa, m, f, a}.', {
      env: {},
    }),
  );
  t.regex(err?.message ?? '', /<config>:2:24: the verifier's iteration count 1000 is below the minimum of 4096/);
  t.is(typeof parseVerifier('plaintext'), 'string');
});

test('chan passwd prints a verifier that a config accepts', async (t) => {
  const r = await run(['passwd'], { input: 'correct horse\n' });
  t.is(r.status, 0, r.stderr);
  const verifier = r.stdout.trim();
  t.regex(verifier, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
  t.false(verifier.includes('correct horse'));
  const server = await startServer(
    parseConfig(
      `{port, 0}.\n{host, "127.0.0.1"}.\n{service, s, verifier, "${verifier}", mfa, mod_name_server, start_me_up, x}.`,
      { env: {} },
    ),
  );
  t.teardown(() => server.close());
  t.is(await code(connect('127.0.0.1', server.port, 's', 'correct horse')), 'ack');
  t.is((await run(['passwd', '--iterations', '100'], { input: 'x\n' })).status, 2);
});

test('the client remembers salted passwords per (secret, salt, iterations)', async (t) => {
  const server = await testServer([BOOK_SERVICE]);
  t.teardown(() => server.close());
  const cache = new SaltedPasswordCache();
  const derived: Buffer[] = [];
  const spy = new SaltedPasswordCache();
  const get = spy.get;
  spy.get = async (...a) => {
    const b = await get(...a);
    derived.push(b);
    return b;
  };
  for (let i = 0; i < 3; i++)
    await (await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45', null, { saltedPasswordCache: spy })).close();
  t.is(spy.size, 1);
  t.is(derived[0], derived[2]); // the same Buffer: no second PBKDF2
  t.is(
    await code(connect('127.0.0.1', server.port, 'nameServer', 'wrong', null, { saltedPasswordCache: cache })),
    'authFail',
  );
  t.is(
    await code(connect('127.0.0.1', server.port, 'nameServer', 'ABXy45', null, { saltedPasswordCache: false })),
    'ack',
  );
});

test('a capture of a plain-TCP session holds neither the secret nor a fast hash of it', async (t) => {
  const server = await testServer([BOOK_SERVICE]);
  t.teardown(() => server.close());
  const captured: Buffer[] = [];
  const proxy = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: server.port });
    client.on('data', (c: Buffer) => {
      captured.push(c);
      upstream.write(c);
    });
    upstream.on('data', (c: Buffer) => {
      captured.push(c);
      client.write(c);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    proxy.close();
  });
  const ch = await connect('127.0.0.1', (proxy.address() as net.AddressInfo).port, 'nameServer', 'ABXy45');
  t.is(formatTerm(await ch.rpc(parseTerm('{lookup, joe}'))), 'undefined');
  await ch.close();
  const wire = Buffer.concat(captured);
  const secret = Buffer.from('ABXy45');
  const forms = [secret, Buffer.from(secret.toString('base64')), Buffer.from(secret.toString('hex'))];
  for (const alg of ['md5', 'sha1', 'sha256']) {
    const h = createHash(alg).update(secret).digest();
    forms.push(h, Buffer.from(h.toString('hex')), Buffer.from(h.toString('base64')));
  }
  for (const f of forms) t.is(wire.indexOf(f), -1);
  t.true(wire.includes(Buffer.from('p='))); // the proof is there, and checking a guess against it costs 4096 iterations
});

test('SIGHUP reloads secrets for new connections; live ones carry on; a broken file changes nothing', async (t) => {
  const dir = tempDir();
  const file = path.join(dir, 'lib_chan.conf');
  const conf = (secret: string): string =>
    `{port, 0}.\n{service, nameServer, password, "${secret}", mfa, mod_name_server, start_me_up, notUsed}.\n`;
  writeFileSync(file, conf('first'));
  const { child, port, lines } = await serve([file]);
  t.teardown(() => child.kill('SIGKILL'));
  const nextLine = (pattern: RegExp): Promise<string> =>
    new Promise((resolve) => {
      const seen = lines.length;
      const check = (): void => {
        const hit = lines.slice(seen).find((l) => pattern.test(l));
        if (hit) resolve(hit);
        else child.stdout?.once('data', () => setImmediate(check));
      };
      check();
    });
  const live = await connect('127.0.0.1', port, 'nameServer', 'first');
  writeFileSync(file, conf('second'));
  const reloaded = nextLine(/configuration reloaded/);
  child.kill('SIGHUP');
  await reloaded;
  t.is(await code(connect('127.0.0.1', port, 'nameServer', 'second')), 'ack');
  t.is(await code(connect('127.0.0.1', port, 'nameServer', 'first')), 'authFail');
  t.is(formatTerm(await live.rpc(parseTerm('{lookup, x}'))), 'undefined');

  writeFileSync(file, '{port, 0}.\n{service, nameServer, password}.\n');
  const refused = nextLine(/reload refused/);
  child.kill('SIGHUP');
  t.regex(await refused, /lib_chan\.conf:2:1: a service is/);
  t.is(await code(connect('127.0.0.1', port, 'nameServer', 'second')), 'ack');
  await live.close();
  child.kill('SIGTERM');
  t.is((await once(child, 'exit'))[0], 0);
});

test('reload applies new secrets and certificates, and names what needs a restart', async (t) => {
  const server = await testServer([service('a', echo, 'one'), service('b', echo, null)]);
  t.teardown(() => server.close());
  const next = parseConfig(
    '{port, 1}.\n{service, a, password, "two", mfa, m, f, x}.\n{service, c, password, none, mfa, m, f, x}.',
    { env: {} },
  );
  const notApplied = await server.reload(next);
  t.deepEqual(notApplied, [
    'port 1: restart to listen on another port',
    'service b removed: restart to remove it',
    'service a: restart to change its mfa',
    'service c added: restart to start it',
  ]);
  t.is(await code(connect('127.0.0.1', server.port, 'a', 'two')), 'ack');
  t.is(await code(connect('127.0.0.1', server.port, 'a', 'one')), 'authFail');
});

test('a reload names every other option it changes as needing a restart, a secret without its value, and applies none of them', async (t) => {
  const conf = (extra: string): string => `{port, 0}.\n${extra}{service, a, password, "one", mfa, m, f, x}.`;
  const server = await testServer([service('a', echo, 'one')]);
  t.teardown(() => server.close());
  const mfa = 'service a: restart to change its mfa'; // (the test's handler is not m:f)
  t.deepEqual(await server.reload(parseConfig(conf(''), { env: {} })), [mfa], 'options left at their defaults');
  const next = parseConfig(
    conf(
      '{host, "0.0.0.0"}.\n{max_connections, 7}.\n{handshake_timeout, 2500}.\n{admin_token, "s3cret-token-that-is-long"}.\n',
    ),
    { env: {} },
  );
  const notApplied = await server.reload(next);
  t.deepEqual(notApplied, [
    mfa,
    'host "0.0.0.0": restart to apply it',
    'admin_token (changed): restart to apply it',
    'handshake_timeout 2500: restart to apply it',
    'max_connections 7: restart to apply it',
  ]);
  t.false(notApplied.join().includes('s3cret'), 'a secret is never shown');
  t.is(server.host, '127.0.0.1');
  t.is(server.settings.maxConnections, DEFAULTS.maxConnections);
});

test('a lockout shortened by a reload, or behind a longer one, ends when it should: the address is counted and locked again', (t) => {
  let now = 0;
  const th = new AuthThrottle({ maxFailures: 2, window: 10_000, lockout: 3_600_000 }, () => now);
  th.fail('192.0.2.1');
  th.fail('192.0.2.1'); // locked for an hour
  th.settings = { maxFailures: 2, window: 10_000, lockout: 60_000 };
  th.fail('192.0.2.2');
  t.true(th.fail('192.0.2.2')); // locked for a minute, behind the hour
  now = 61_000;
  t.is(th.lockedFor('192.0.2.2'), 0);
  t.false(th.fail('192.0.2.2'));
  t.true(th.fail('192.0.2.2')); // counted, and locked again
  t.is(th.lockedFor('192.0.2.1'), 3_600_000 - 61_000);
});

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

test('a verifier whose salt is longer than clients accept (1024 bytes) is refused at start-up; 1024 is kept', (t) => {
  const keys = `${'A'.repeat(43)}=:${'A'.repeat(43)}=`;
  const withSalt = (bytes: number): string => `SCRAM-SHA-256$4096:${Buffer.alloc(bytes, 1).toString('base64')}$${keys}`;
  t.regex(String(scram.parseVerifier(withSalt(1025))), /salt is longer than 1024 bytes, which clients refuse/);
  t.is(typeof scram.parseVerifier(withSalt(1024)), 'object');
});

test('a lockout decided by the primary makes room in a table full of failing addresses, and locks out that one alone', (t) => {
  const throttle = new AuthThrottle({ maxFailures: 5, window: 60_000, lockout: 60_000 }, Date.now, 4);
  for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) throttle.fail(a);
  throttle.lock('10.0.0.9', 60_000);
  t.true(throttle.lockedFor('10.0.0.9') > 0);
  t.is(throttle.lockedFor('192.0.2.7'), 0, 'an address outside the table is not locked out with it');
  t.deepEqual(
    throttle.activeLocks().map(([a]) => a),
    ['10.0.0.9'],
  );
});
