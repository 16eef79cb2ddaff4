/**
 * A battery of hostile connections against one server, with a well-behaved client beside them that must keep getting
 * correct kvs answers, each within a second, throughout.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { connect } from '../src/client.js';
import type { ChanServer } from '../src/server.js';
import { atom, tuple } from '../src/term/index.js';
import { BOOK_SERVICE, RawClient, besideBystander, bystander, capturedLog, testServer } from './helpers.js';

const LIMITS = { handshakeTimeout: 1000, maxUnauthenticated: 20, sendBufferLimit: 1024 * 1024, mailboxHighWater: 64 };

async function withBystander(t: ExecutionContext, attack: (server: ChanServer) => Promise<void>): Promise<void> {
  await besideBystander(t, [BOOK_SERVICE], LIMITS, attack);
}

async function authenticated(port: number): Promise<RawClient> {
  const c = await RawClient.open(port);
  c.send({ kind: 'startService', version: 1, service: 'open', args: null });
  return c;
}

test('a length prefix of 0xFFFFFFFF is refused with frameTooLarge', async (t) => {
  await withBystander(t, async (server) => {
    const c = await RawClient.open(server.port);
    c.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    t.is((await c.closeMessage())?.reason, 'frameTooLarge');
  });
});

test('1 MiB of random bytes is refused', async (t) => {
  await withBystander(t, async (server) => {
    const c = await RawClient.open(server.port);
    c.write(randomBytes(1024 * 1024));
    t.true(['frameTooLarge', 'protocolError'].includes((await c.closeMessage())?.reason ?? ''));
  });
});

test('a frame cut in half and then silence is closed at handshake_timeout', async (t) => {
  await withBystander(t, async (server) => {
    const c = await RawClient.open(server.port);
    c.write(Buffer.from([0, 0, 0, 100, 0x92, 0xac]));
    t.is((await c.closeMessage())?.reason, 'timeout');
  });
});

test('a 10,000-deep nested array is a protocolError', async (t) => {
  await withBystander(t, async (server) => {
    const c = await RawClient.open(server.port);
    const deep = Buffer.concat([Buffer.alloc(10_000, 0x91), Buffer.from([0xc0])]);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(deep.length);
    c.write(Buffer.concat([header, deep]));
    t.is((await c.closeMessage())?.reason, 'protocolError');
  });
});

test('a silent connection is closed at handshake_timeout', async (t) => {
  await withBystander(t, async (server) => {
    const c = await RawClient.open(server.port);
    t.is((await c.closeMessage())?.reason, 'timeout');
  });
});

test('max_unauthenticated + 50 connections that never speak are all closed, within their limits', async (t) => {
  await withBystander(t, async (server) => {
    const started = Date.now();
    const squatters = await Promise.all(
      Array.from({ length: LIMITS.maxUnauthenticated + 50 }, () => RawClient.open(server.port)),
    );
    const reasons = await Promise.all(squatters.map(async (s) => (await s.closeMessage())?.reason));
    // Each is refused or times out. (On a busy machine the first may time out before the last has connected: its
    // place then goes to a later one, so "50 refused" is at most 50, never more.)
    const refused = reasons.filter((r) => r === 'tooManyConnections').length;
    const timedOut = reasons.filter((r) => r === 'timeout').length;
    t.is(refused + timedOut, reasons.length);
    t.true(refused <= 50 && refused > 0, `${refused} refused`);
    t.true(timedOut >= LIMITS.maxUnauthenticated);
    t.true(Date.now() - started < LIMITS.handshakeTimeout + 2000);
    t.is(server.stats().unauthenticated, 0);
  });
});

test('a client that sends 10,000 rpcs and never reads is cut off at send_buffer_limit; memory stays bounded', async (t) => {
  const { logger, lines } = capturedLog();
  const server = await testServer([BOOK_SERVICE, { ...BOOK_SERVICE, name: 'open', secret: null }], {
    ...LIMITS,
    logger,
  });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
  const b = bystander(ch);
  const hog = await authenticated(server.port);
  t.is((await hog.next(0)).kind, 'ack');
  // Each answer is about 10 KiB: unbounded, 10,000 of them would pile up 100 MB for this one client.
  hog.send({ kind: 'rpc', id: 1, data: tuple(atom('store'), atom('big'), 'x'.repeat(10 * 1024)) });
  await hog.next(1);
  hog.socket.pause();
  const before = process.memoryUsage().arrayBuffers;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers)), 5);
  for (let id = 2; id < 10_002; id++) hog.send({ kind: 'rpc', id, data: tuple(atom('lookup'), atom('big')) });
  while (server.stats().connections > 1) await new Promise((r) => setTimeout(r, 10));
  clearInterval(sampler);
  const closed = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['msg'] === 'connection closed');
  t.deepEqual(
    closed.map((l) => l['reason']),
    ['slowConsumer'],
  );
  const grew = (peak - before) / (1024 * 1024);
  t.true(grew < 40, `buffers grew by ${grew.toFixed(1)} MiB`);
  t.log(`buffer memory grew by at most ${grew.toFixed(1)} MiB for 100 MB of unread answers (send_buffer_limit 1 MiB)`);
  const { wrong, slowest } = await b.stop();
  t.deepEqual(wrong, []);
  t.true(slowest < 1000, `slowest answer took ${slowest} ms`);
  hog.destroy();
  await ch.close();
});

test('200 connections opened and dropped mid-handshake leave nothing behind', async (t) => {
  await withBystander(t, async (server) => {
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const s = net.connect({ host: '127.0.0.1', port: server.port });
        s.on('error', () => {});
        await new Promise((r) => s.once('connect', r));
        if (i % 2 === 0) s.write(Buffer.from([0, 0, 0, 40, 0x92])); // half a startService
        s.destroy();
      }),
    );
    while (server.stats().connections > 1) await new Promise((r) => setTimeout(r, 10));
    t.is(server.stats().unauthenticated, 0);
  });
});
