/**
 * The admin port: /metrics after real traffic (a wrong secret included), /healthz, /readyz (a service down, the store
 * gone), the token, the config's refusal of an open port without one, and the status page in a real browser (Debian's
 * chromium, driven by playwright-core; .ci/run installs it).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { connect } from '../src/client.js';
import { parseConfig } from '../src/config/load.js';
import { ChanError } from '../src/errors.js';
import { startServer, type ChanServer, type ServerOptions } from '../src/server.js';
import { atom, tuple } from '../src/term/index.js';
import { hasRedis, startRedis } from '../scripts/redis-server.js';
import { run } from './cli-helpers.js';
import { BOOK_SERVICE, RawClient, refusal, tempDir } from './helpers.js';
import { request } from 'node:http';
import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { ADMIN_LIMITS } from '../src/admin.js';
import { RECENT_EVENTS } from '../src/metrics.js';
import { READY_STORE_TIMEOUT } from '../src/server.js';

const CODE_PATH = [path.resolve('test/fixtures')];
const FLAKY = { name: 'flaky', secret: null, module: 'mod_flaky', function: 'start_me_up' };

async function adminServer(options: Partial<ServerOptions> = {}): Promise<ChanServer> {
  return startServer({
    port: 0,
    host: '127.0.0.1',
    adminPort: 0,
    codePath: CODE_PATH,
    services: [BOOK_SERVICE],
    ...options,
  });
}

async function get(
  server: ChanServer,
  p: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${server.adminPort}${p}`, { headers });
  return { status: res.status, body: await res.text() };
}

/** The value of one sample of the Prometheus text (`name{labels}`), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test.serial(
  '/metrics counts handshakes by outcome, closes by reason, rpc times, store operations and what was carried',
  async (t) => {
    const server = await adminServer();
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
    await ch.rpc(tuple(atom('store'), atom('joe'), 'writing a book'));
    await ch.rpc(tuple(atom('lookup'), atom('joe')));
    t.is((await refusal(connect('127.0.0.1', server.port, 'nameServer', 'wrong'))).code, 'authFail');
    t.is((await refusal(connect('127.0.0.1', server.port, 'nobody', 'x'))).code, 'badService');
    const { status, body } = await get(server, '/metrics');
    t.is(status, 200);
    t.is(sample(body, 'libchan_handshakes_total{service="nameServer",outcome="ack"}'), 1);
    t.is(sample(body, 'libchan_handshakes_total{service="nameServer",outcome="authFail"}'), 1);
    // A service the server does not have is not a label: a client cannot grow the series by inventing names.
    t.is(sample(body, 'libchan_handshakes_total{service="",outcome="badService"}'), 1);
    t.false(body.includes('nobody'));
    t.is(sample(body, 'libchan_connections_closed_total{reason="authFail"}'), 1);
    t.is(sample(body, 'libchan_rpc_duration_seconds_count{service="nameServer"}'), 2);
    t.is(sample(body, 'libchan_store_operations_total{backend="memory",op="put"}'), 1);
    t.is(sample(body, 'libchan_store_operations_total{backend="memory",op="get"}'), 1);
    t.is(sample(body, 'libchan_connections_open{service="nameServer",protocol="lib-chan"}'), 1);
    // The session's frames count for the service (the two rpcs); the handshakes' for (handshake), so that no count
    // ever goes down when a connection moves from one to the other.
    t.is(sample(body, 'libchan_messages_received_total{service="nameServer"}'), 2);
    t.is(sample(body, 'libchan_messages_received_total{service="(handshake)"}'), 5);
    t.true((sample(body, 'libchan_bytes_sent_total{service="nameServer"}') ?? 0) > 0);
    t.is(sample(body, 'libchan_service_up{service="nameServer"}'), 1);
    t.is(sample(body, 'libchan_handler_crashes_total{service="nameServer"}'), 0);
    t.is(sample(body, 'libchan_throttled_addresses'), 0);
    t.true((sample(body, 'libchan_process_cpu_user_seconds_total') ?? -1) >= 0, "Node's own metrics, prefixed");
    await ch.close();
  },
);

test.serial(
  'a reason a client makes up in its close frame is counted as other, never as a label of its own',
  async (t) => {
    const server = await adminServer();
    t.teardown(() => server.close());
    for (let i = 0; i < 3; i++) {
      const c = await RawClient.open(server.port);
      c.send({ kind: 'close', reason: `madeUp${i}`, text: 'bye' });
      await c.closed;
    }
    const body = (await get(server, '/metrics')).body;
    t.false(body.includes('madeUp'));
    t.is(sample(body, 'libchan_connections_closed_total{reason="other"}'), 3);
    t.is(sample(body, 'libchan_handshakes_total{service="",outcome="other"}'), 3);
  },
);

test.serial(
  'without a token the admin port answers only requests addressed to a loopback host (no DNS rebinding)',
  async (t) => {
    const server = await adminServer();
    t.teardown(() => server.close());
    const status = (host: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: server.adminPort, path: '/metrics', headers: { host } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    t.is(await status('rebound.example:9100'), 403);
    t.is(await status(`localhost:${server.adminPort}`), 200);
    t.is(await status(`127.0.0.1:${server.adminPort}`), 200);
  },
);

test.serial(
  'the admin port keeps to its limits: 64 connections (a new one takes the place of the oldest idle one), 5 s of silence, 50 recent events',
  async (t) => {
    const server = await adminServer({ authMaxFailures: 1000 });
    t.teardown(() => server.close());
    // More refusals than the page keeps: the oldest go.
    for (let i = 0; i < RECENT_EVENTS + 10; i++) await refusal(connect('127.0.0.1', server.port, 'nobody', 'x'));
    const status = JSON.parse((await get(server, '/status.json')).body) as { recent: unknown[] };
    t.is(status.recent.length, RECENT_EVENTS);
    // Past the limit, a new connection takes the place of the oldest idle one: idle connections cannot keep a probe out.
    const open = async (): Promise<Socket> => {
      const s = createConnection({ host: '127.0.0.1', port: server.adminPort });
      s.on('error', () => {});
      await once(s, 'connect');
      return s;
    };
    const answer = async (s: Socket): Promise<string> => {
      s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      return new Promise<string>((resolve) => {
        let text = '';
        s.on('data', (c: Buffer) => (text += String(c)));
        s.once('close', () => resolve(text));
      });
    };
    const held: Socket[] = [];
    for (let i = 0; i < ADMIN_LIMITS.maxConnections; i++) held.push(await open());
    const oldestClosed = once(held[0] as Socket, 'close');
    t.regex(await answer(await open()), /^HTTP\/1\.1 200/, 'a probe past the limit is answered');
    await oldestClosed;
    // A request that stops halfway is closed once the connection has been silent too long.
    const slow = held[1] as Socket;
    slow.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
    await once(slow, 'close');
    for (const s of held) s.destroy();
    t.is((await get(server, '/healthz')).status, 200);
  },
);

test.serial('/healthz answers while the process does; /readyz says what is wrong: a service down', async (t) => {
  const server = await adminServer({ services: [BOOK_SERVICE, FLAKY], restartIntensity: 0 });
  t.teardown(() => server.close());
  t.deepEqual(await get(server, '/healthz'), { status: 200, body: 'ok\n' });
  t.deepEqual(await get(server, '/readyz'), { status: 200, body: 'ready\n' });
  const ch = await connect('127.0.0.1', server.port, 'flaky', null);
  await ch.rpc('break');
  await ch.close();
  const ready = await get(server, '/readyz');
  t.is(ready.status, 503);
  t.is(ready.body, 'not ready:\n  service flaky is down\n');
  t.is(sample((await get(server, '/metrics')).body, 'libchan_service_up{service="flaky"}'), 0);
  const status = JSON.parse((await get(server, '/status.json')).body) as {
    services: { name: string; status: string }[];
    recent: { kind: string }[];
  };
  t.deepEqual(
    status.services.map((s) => [s.name, s.status]),
    [
      ['nameServer', 'up'],
      ['flaky', 'down'],
    ],
  );
  t.true(status.recent.some((e) => e.kind === 'down'));
});

if (hasRedis) {
  test.serial('/readyz says when the store does not answer', async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const server = await adminServer({ store: redis.url });
    t.teardown(() => server.close());
    t.is((await get(server, '/readyz')).status, 200);
    // A store that hangs (the process stopped): reported once READY_STORE_TIMEOUT has passed.
    process.kill(redis.child.pid as number, 'SIGSTOP');
    const hung = await get(server, '/readyz');
    process.kill(redis.child.pid as number, 'SIGCONT');
    t.is(hung.status, 503);
    t.regex(hung.body, new RegExp(`did not answer within ${READY_STORE_TIMEOUT} ms`));
    await redis.stop();
    const ready = await get(server, '/readyz');
    t.is(ready.status, 503);
    t.regex(ready.body, /^not ready:\n {2}the store \(redis:\/\/127\.0\.0\.1:\d+\/0\) failed: /);
  });
} else {
  console.log('admin store readiness test skipped: redis-server is not installed');
  test.skip('/readyz says when the store does not answer (redis-server not installed)', () => {});
}

test.serial(
  'with admin_token every path but /healthz and /readyz needs it, as a bearer token or ?token=',
  async (t) => {
    const token = 'a-long-random-admin-token';
    const server = await adminServer({ adminToken: token });
    t.teardown(() => server.close());
    for (const p of ['/metrics', '/status.json', '/']) {
      t.is((await get(server, p)).status, 401, p);
      t.is((await get(server, p, { authorization: 'Bearer wrong-token-of-some-length' })).status, 401, p);
      t.is((await get(server, p, { authorization: `Bearer ${token}` })).status, 200, p);
      t.is((await get(server, `${p}?token=${token}`)).status, 200, p);
    }
    t.is((await get(server, '/healthz')).status, 200);
    t.is((await get(server, '/readyz')).status, 200);
    const post = await fetch(`http://127.0.0.1:${server.adminPort}/metrics`, { method: 'POST' });
    t.is(post.status, 405);
    t.is((await get(server, '/nothing-here')).status, 401);
    t.is((await get(server, `/nothing-here?token=${token}`)).status, 404);
    // The page lists the services as served, before any script runs.
    t.regex(
      (await get(server, `/?token=${token}`)).body,
      /<tr data-service="nameServer"><td>nameServer<\/td><td class="up">up<\/td>/,
    );
  },
);

test('an admin port on an address other than loopback needs a token: the config is refused without one', (t) => {
  const conf = '{port, 1}.\n{admin_port, 9100}.\n{admin_host, "0.0.0.0"}.\n{service, s, password, none, mfa, m, f, a}.';
  const err = t.throws(() => parseConfig(conf), { instanceOf: ChanError });
  t.regex(err?.message ?? '', /admin_host: 0\.0\.0\.0 is not a loopback address, so the admin port needs admin_token/);
  t.notThrows(() => parseConfig(`${conf}\n{admin_token, "0123456789abcdef"}.`));
  const short = t.throws(() => parseConfig(`${conf}\n{admin_token, "short"}.`), { instanceOf: ChanError });
  t.regex(short?.message ?? '', /admin_token: must be a string of at least 16 characters/);
  t.false(short?.message.includes('"short"'), 'the token is not echoed');
});

test('chan check shows the admin options, the token masked', async (t) => {
  const dir = tempDir({
    'lib_chan.conf':
      '{port, 1234}.\n{admin_port, 9100}.\n{admin_token, "0123456789abcdef-secret"}.\n{service, s, password, none, mfa, mod_name_server, start_me_up, x}.',
  });
  const out = await run(['check', path.join(dir, 'lib_chan.conf')]);
  t.is(out.status, 0, out.stderr);
  t.regex(out.stdout, /admin_port\s+9100/);
  t.regex(out.stdout, /admin_token\s+\*{8}/);
  t.false(out.stdout.includes('0123456789abcdef-secret'));
});

const CHROMIUM = '/usr/bin/chromium';
if (existsSync(CHROMIUM)) {
  test.serial(
    'the status page, in a real browser: it lists the services, and a new connection and a refusal appear without a reload',
    async (t) => {
      const { chromium } = await import('playwright-core');
      const server = await adminServer();
      t.teardown(() => server.close());
      const browser = await chromium.launch({ executablePath: CHROMIUM });
      t.teardown(() => browser.close());
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      await page.goto(`http://127.0.0.1:${server.adminPort}/`);
      await page.locator('#services tr[data-service="nameServer"]').waitFor();
      t.is(await page.locator('#services tr[data-service="nameServer"] td').nth(1).textContent(), 'up');
      t.is(await page.locator('#connections').textContent(), '0');
      const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
      await page.locator('#connections', { hasText: /^1$/ }).waitFor();
      await refusal(connect('127.0.0.1', server.port, 'nameServer', 'wrong'));
      await page.locator('#recent td', { hasText: 'authFail' }).first().waitFor();
      t.is(await page.locator('#state').textContent(), 'all services up');
      await ch.close();
      t.deepEqual(errors, [], 'no script errors, nothing the Content-Security-Policy blocked');
    },
  );
} else {
  console.log(`status page browser test skipped: ${CHROMIUM} is not installed (Debian's chromium)`);
  test.skip('the status page in a real browser (chromium not installed)', () => {});
}
