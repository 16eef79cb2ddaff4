import { once } from 'node:events';
import net from 'node:net';
import test from 'ava';
import { connect } from '../src/client.js';
import { memoryTransport } from '../src/memory-transport.js';
import type { ChanError } from '../src/errors.js';
import type { Handler } from '../src/runtime.js';
import { RawClient, echo, handlerEnding, service, silent, testServer } from './helpers.js';

test('a full mailbox stops the reading of the socket; nothing is lost when the handler catches up', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const got: number[] = [];
  const slowReader: Handler = async (mm) => {
    await gate;
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      got.push(m.data as number);
      if (m.requestId !== undefined) mm.send('done');
    }
  };
  const server = await testServer([service('s', slowReader)], { mailboxHighWater: 100 });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', null, null, { rpcTimeout: 30_000 });
  for (let i = 0; i < 5000; i++) ch.cast(i);
  const finished = ch.rpc(-1);
  // The server reads until the mailbox holds 100, then stops: the rest waits in socket buffers, not in the heap.
  while (server.stats().queuedMessages < 100) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  t.is(server.stats().queuedMessages, 100);
  release();
  t.is(await finished, 'done');
  t.deepEqual(got, [...Array.from({ length: 5000 }, (_, i) => i), -1]);
  await ch.close();
});

test('a client that does not read is closed with slowConsumer past send_buffer_limit', async (t) => {
  const closed = await handlerEnding(
    t.teardown.bind(t),
    { sendBufferLimit: 1024 * 1024 },
    (c) => {
      c.socket.pause();
    },
    async (mm) => {
      const chunk = Buffer.alloc(64 * 1024, 1);
      while (mm.push(chunk)) await new Promise((r) => setImmediate(r));
    },
  );
  t.is(closed.reason, 'slowConsumer');
  t.regex(closed.text, /send_buffer_limit \(1048576 bytes\)/);
});

test('a handler that awaits drain() streams far more than send_buffer_limit to a reading client', async (t) => {
  const total = 16 * 1024 * 1024;
  const streamer: Handler = async (mm) => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    for (let sent = 0; sent < total; sent += chunk.length) {
      mm.push(chunk);
      await mm.drain();
    }
    mm.push('end');
    await mm.receive();
  };
  const server = await testServer([service('s', streamer)], { sendBufferLimit: 1024 * 1024 });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', null);
  let bytes = 0;
  for await (const x of ch) {
    if (x === 'end') break;
    bytes += (x as Buffer).length;
  }
  t.is(bytes, total);
  t.false(ch.isClosed);
  await ch.close();
});

test('a client with unread pushes stops reading at mailboxHighWater, and loses none', async (t) => {
  const pusher: Handler = async (mm) => {
    for (let i = 0; i < 300; i++) mm.push(i);
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      mm.send('pong');
    }
  };
  const server = await testServer([service('s', pusher)]);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', null, null, { mailboxHighWater: 10 });
  const got: unknown[] = [];
  for (let i = 0; i < 300; i++) got.push(await ch.receive());
  t.deepEqual(
    got,
    Array.from({ length: 300 }, (_, i) => i),
  );
  t.is(await ch.rpc('ping'), 'pong');
  await ch.close();
});

test('at max_connections a new connection is told tooManyConnections; one closing makes room', async (t) => {
  const server = await testServer([service('echo', echo)], { maxConnections: 3 });
  t.teardown(() => server.close());
  const chs = await Promise.all([1, 2, 3].map(() => connect('127.0.0.1', server.port, 'echo', null)));
  const err = await t.throwsAsync(connect('127.0.0.1', server.port, 'echo', null));
  t.is((err as { code?: string }).code, 'tooManyConnections');
  t.regex(err?.message ?? '', /max_connections \(3\)/);
  await chs[0]?.close();
  while (server.stats().connections >= 3) await new Promise((r) => setTimeout(r, 5));
  const again = await connect('127.0.0.1', server.port, 'echo', null);
  t.is(await again.rpc('in'), 'in');
  t.is(server.stats().refused, 1);
  await Promise.all([again, ...chs.slice(1)].map((c) => c?.close()));
});

test('refused connections are told why up to max_unauthenticated at once; past that a flood is closed without a word, and a refusal once told frees its place', async (t) => {
  const server = await testServer([service('echo', echo)], { maxConnections: 1, maxUnauthenticated: 4 });
  t.teardown(() => server.close());
  const held = await connect('127.0.0.1', server.port, 'echo', null);
  // Peers that never close their side: a refusal told why waits for them (up to 2 s).
  const peers = await Promise.all(
    Array.from({ length: 12 }, async () => {
      const socket = net.connect({ host: '127.0.0.1', port: server.port, allowHalfOpen: true });
      socket.on('error', () => {});
      let bytes = 0;
      socket.on('data', (b: Buffer) => (bytes += b.length));
      const ended = new Promise<boolean>((resolve) => socket.once('end', () => resolve(bytes > 0)));
      await once(socket, 'connect');
      return { socket, told: ended };
    }),
  );
  const told = await Promise.all(peers.map((p) => p.told));
  t.is(told.filter(Boolean).length, 4, `${told.filter(Boolean).length} of 12 refusals told why`);
  t.is(server.stats().refused, 12);
  t.is(await held.rpc('still served'), 'still served');
  for (const p of peers) p.socket.destroy();
  // Once those peers have gone, a refusal is told why again.
  let code: string | undefined;
  for (let i = 0; i < 200 && code !== 'tooManyConnections'; i++) {
    code = ((await t.throwsAsync(connect('127.0.0.1', server.port, 'echo', null))) as ChanError | undefined)?.code;
    if (code !== 'tooManyConnections') await new Promise((r) => setTimeout(r, 10));
  }
  t.is(code, 'tooManyConnections');
  await held.close();
});

test('a refused connection that is gone before it is refused holds no place among the refusals being told why', async (t) => {
  const transport = memoryTransport();
  const server = await testServer([service('echo', echo)], { maxConnections: 1, maxUnauthenticated: 2, transport });
  t.teardown(() => server.close());
  const held = await connect('memory', server.port, 'echo', null, null, { transport });
  // Peers that connect and reset at once: the memory transport hands them over on a later turn, already closed.
  for (let i = 0; i < 4; i++) {
    const { socket } = await transport.connect('memory', server.port, 1000);
    socket.on('error', () => {});
    socket.destroy();
  }
  const err = await t.throwsAsync<ChanError>(connect('memory', server.port, 'echo', null, null, { transport }));
  t.is(err?.code, 'tooManyConnections');
  await held.close();
});

test('at max_unauthenticated, silent connections cannot lock out the clients already in', async (t) => {
  // The timeout is long enough for all 15 to be open before the first 5 time out, even on a loaded machine.
  const server = await testServer([service('echo', echo), service('quiet', silent)], {
    maxUnauthenticated: 5,
    handshakeTimeout: 4000,
  });
  t.teardown(() => server.close());
  const good = await connect('127.0.0.1', server.port, 'echo', null);
  const squatters = await Promise.all(Array.from({ length: 5 + 10 }, () => RawClient.open(server.port)));
  const closes = await Promise.all(squatters.map((s) => s.closeMessage()));
  t.is(closes.filter((c) => c?.reason === 'tooManyConnections').length, 10);
  t.is(closes.filter((c) => c?.reason === 'timeout').length, 5);
  t.is(await good.rpc('still served'), 'still served');
  t.is(server.stats().unauthenticated, 0);
  const after = await connect('127.0.0.1', server.port, 'echo', null);
  t.is(await after.rpc('room again'), 'room again');
  await Promise.all([good.close(), after.close()]);
});

test('drain() resolves for a small queue too, once the client reads again', async (t) => {
  const total = 8 * 1024 * 1024;
  const pacer: Handler = async (mm) => {
    for (let sent = 0; sent < total; sent += 1024) {
      mm.push(Buffer.alloc(1024, 1));
      await mm.drain();
    }
    mm.push('done');
    await mm.receive();
  };
  const server = await testServer([service('s', pacer)]);
  t.teardown(() => server.close());
  const c = await RawClient.started(server.port, 's');
  c.socket.pause();
  // Wait until the kernel's buffers are full and the server holds a small queue of its own: the case where Node
  // never emits 'drain'.
  while (server.stats().queuedBytes === 0) await new Promise((r) => setTimeout(r, 5));
  t.true(server.stats().queuedBytes < 16 * 1024);
  c.socket.resume();
  for (let i = 1; ; i++) {
    const m = await c.next(i);
    if (m.kind === 'push' && m.data === 'done') break;
  }
  t.is(c.messages.length, total / 1024 + 2);
  c.destroy();
});

test('a peer that floods pings and reads nothing does not make the server queue pongs', async (t) => {
  const server = await testServer([service('echo', echo)]);
  t.teardown(() => server.close());
  const c = await RawClient.started(server.port, 'echo');
  c.socket.pause();
  const ping = Buffer.from([0, 0, 0, 7, 0x92, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0x01]);
  for (let i = 0; i < 20; i++) c.write(Buffer.concat(Array.from({ length: 20_000 }, () => ping)));
  const ok = await connect('127.0.0.1', server.port, 'echo', null); // wait for the server to have read the floods
  for (let i = 0; i < 50; i++) await ok.rpc(i);
  t.true(server.stats().queuedBytes < 64 * 1024, `${server.stats().queuedBytes} bytes queued`);
  c.destroy();
  await ok.close();
});

test('a connection with 65,536 rpcs waiting for an answer is closed at the next one', async (t) => {
  const server = await testServer([service('quiet', silent)]);
  t.teardown(() => server.close());
  const c = await RawClient.started(server.port, 'quiet');
  const frames: Buffer[] = [];
  const { msgpackCodec } = await import('../src/codec/index.js');
  const { frame } = await import('../src/frame.js');
  const { toWire } = await import('../src/protocol.js');
  const codec = msgpackCodec({ maxDepth: 32 });
  for (let id = 1; id <= 65_537; id++) frames.push(frame(codec.encode(toWire({ kind: 'rpc', id, data: 0 }), 0)));
  c.write(Buffer.concat(frames));
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /more than 65536 rpcs are waiting/);
});

test('a client stops reading at mailboxHighWaterBytes of unread pushes, and loses none when it reads them', async (t) => {
  const chunk = Buffer.alloc(32 * 1024, 5);
  const pusher: Handler = async (mm) => {
    for (let i = 0; i < 100; i++) mm.push([i, chunk]);
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      mm.send('pong');
    }
  };
  const server = await testServer([service('s', pusher)], { sendBufferLimit: 16 * 1024 * 1024 });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', null, null, { mailboxHighWaterBytes: 64 * 1024 });
  while (ch.stats().framesIn < 3) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 200)); // time to read on, were it reading
  // 64 KiB of pushes is two of them: it stopped there (and one chunk more), not at the 100 the kernel holds for it.
  t.true(ch.stats().framesIn < 10, `${ch.stats().framesIn} frames read`);
  for (let i = 0; i < 100; i++) t.is(((await ch.receive()) as [number, Buffer])[0], i);
  t.is(await ch.rpc('ping'), 'pong');
  await ch.close();
});

test('a server given frame limits in code under 256 (or over 4294967295) refuses to start, as a config file would', async (t) => {
  for (const options of [{ maxFrameSize: 200 }, { maxFrameSizeUnauth: 255 }, { maxFrameSize: 2 ** 32 }]) {
    const err = await t.throwsAsync<ChanError>(testServer([service('echo', echo)], options));
    t.is(err?.code, 'badConfig');
    t.regex(err?.message ?? '', /must be an integer from 256 to 4294967295/);
  }
});
