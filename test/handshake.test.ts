import net from 'node:net';
import test from 'ava';
import { connect } from '../src/client.js';
import { ChanError } from '../src/errors.js';
import { frame } from '../src/frame.js';
import { msgpackCodec } from '../src/codec/index.js';
import { FrameParser } from '../src/frame.js';
import { fromWire, toWire, PROTOCOL_VERSION, type WireMessage } from '../src/protocol.js';
import { RawClient, echo, refusal, service, testServer } from './helpers.js';

const SERVICES = [service('secret', echo, 'ABXy45'), service('open', echo, null)];

const codec = msgpackCodec({ maxDepth: 32 });
/** A message's frame, as a server sends it. */
const framed = (m: WireMessage): Buffer => frame(codec.encode(toWire(m), 0));

/** A server of the test's own on a free port: `answer` is given each message a client sends, and its socket. */
async function fakeServer(
  t: import('ava').ExecutionContext,
  answer: (m: WireMessage, socket: net.Socket) => void,
): Promise<number> {
  const fake = net.createServer((socket) => {
    const parser = new FrameParser(1 << 16, (p) => answer(fromWire(codec.decode(p)), socket));
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  t.teardown(() => fake.close());
  return (fake.address() as net.AddressInfo).port;
}

test('a right secret is acked, and the channel works', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'secret', 'ABXy45');
  t.is(await ch.rpc('hello'), 'hello');
  await ch.close();
});

test('a service without a secret is acked at once', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'open', null);
  t.is(await ch.rpc(1), 1);
  await ch.close();
});

test('an unknown service is refused with badService', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const err = await refusal(connect('127.0.0.1', server.port, 'nope', 'x'));
  t.is(err.code, 'badService');
  t.regex(err.message, /no service named "nope"/);
});

test('a wrong secret is refused with authFail', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  t.is((await refusal(connect('127.0.0.1', server.port, 'secret', 'wrong'))).code, 'authFail');
});

test('no secret for a service that has one is refused with authFail', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  t.is((await refusal(connect('127.0.0.1', server.port, 'secret', null))).code, 'authFail');
});

test('a client with a secret refuses a server that acks without proving it knows it (badServer)', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  t.is((await refusal(connect('127.0.0.1', server.port, 'open', 'some secret'))).code, 'badServer');
});

test('a fake server that does not hold the verifier is refused with badServer', async (t) => {
  const port = await fakeServer(t, (m, socket) => {
    if (m.kind === 'startService') {
      const nonce = /r=([^,]+)/.exec(m.scram ?? '')?.[1] ?? '';
      socket.write(framed({ kind: 'challenge', scram: `r=${nonce}fake,s=QUJD,i=4096` }));
    } else if (m.kind === 'response') {
      const scram = 'v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
      socket.write(framed({ kind: 'ack', version: 1, maxFrameSize: 1024, scram }));
    }
  });
  t.is((await refusal(connect('127.0.0.1', port, 'secret', 'ABXy45'))).code, 'badServer');
});

test('a server that sends more than its challenge before its ack is closed with protocolError; the client keeps none of it', async (t) => {
  const port = await fakeServer(t, (m, socket) => {
    if (m.kind !== 'startService') return;
    const nonce = /r=([^,]+)/.exec(m.scram ?? '')?.[1] ?? '';
    // The challenge at the most iterations a client accepts (its proof takes longest), then a flood of pushes.
    const challenge = framed({ kind: 'challenge', scram: `r=${nonce}fake,s=QUJD,i=1000000` });
    const push = framed({ kind: 'push', data: Buffer.alloc(60 * 1024) });
    socket.write(Buffer.concat([challenge, ...Array.from({ length: 100 }, () => push)]));
  });
  const err = await refusal(connect('127.0.0.1', port, 'secret', 'ABXy45'));
  t.is(err.code, 'protocolError');
  t.regex(err.message, /more than 2 messages before its ack/);
});

test('a server whose challenge is over the frame limit the client stated is cut with frameTooLarge, and connect says so', async (t) => {
  const port = await fakeServer(t, (m, socket) => {
    if (m.kind !== 'startService') return;
    const nonce = /r=([^,]+)/.exec(m.scram ?? '')?.[1] ?? '';
    const scram = `r=${nonce}${'x'.repeat(2000)},s=QUJD,i=4096`;
    socket.write(framed({ kind: 'challenge', scram }));
  });
  const err = await refusal(connect('127.0.0.1', port, 'secret', 'ABXy45', null, { maxFrameSize: 1024 }));
  t.is(err.code, 'frameTooLarge');
});

test('an unknown protocol version is refused with badVersion', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'startService', version: PROTOCOL_VERSION + 1, service: 'open', args: null });
  const close = await c.closeMessage();
  t.is(close?.reason, 'badVersion');
  t.regex(close?.text ?? '', /speaks protocol version 1, not 2/);
});

test('anything but startService first is a protocolError', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'cast', data: 'too early' });
  t.is((await c.closeMessage())?.reason, 'protocolError');
});

test('a connection silent past handshake_timeout is closed with timeout', async (t) => {
  const server = await testServer(SERVICES, { handshakeTimeout: 100 });
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  const close = await c.closeMessage();
  t.is(close?.reason, 'timeout');
  t.regex(close?.text ?? '', /handshake_timeout \(100 ms\)/);
});

test('a client stuck after the challenge is closed with timeout too', async (t) => {
  const server = await testServer(SERVICES, { handshakeTimeout: 150 });
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'startService', version: 1, service: 'secret', args: null, scram: 'n,,n=secret,r=abcdefgh' });
  t.is((await c.next(0)).kind, 'challenge');
  t.is((await c.closeMessage())?.reason, 'timeout');
});

test('a frame over max_frame_size_unauth before the handshake is refused before it is read', async (t) => {
  const server = await testServer(SERVICES, { maxFrameSizeUnauth: 1024 });
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1025);
  c.write(header);
  const close = await c.closeMessage();
  t.is(close?.reason, 'frameTooLarge');
  t.regex(close?.text ?? '', /1025 bytes is over the limit of 1024/);
});

test('the SCRAM user name must be the service', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'startService', version: 1, service: 'secret', args: null, scram: 'n,,n=other,r=abcdefgh' });
  t.is((await c.closeMessage())?.reason, 'protocolError');
});

test('a replayed or altered proof is refused', async (t) => {
  const server = await testServer(SERVICES);
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'startService', version: 1, service: 'secret', args: null, scram: 'n,,n=secret,r=abcdefgh' });
  const challenge = await c.next(0);
  if (challenge.kind !== 'challenge') return t.fail();
  const nonce = /r=([^,]+)/.exec(challenge.scram)?.[1];
  c.send({ kind: 'response', scram: `c=biws,r=${nonce},p=${Buffer.alloc(32, 1).toString('base64')}` });
  t.is((await c.closeMessage())?.reason, 'authFail');
});

test('connecting to a closed port fails with econnrefused', async (t) => {
  const server = await testServer(SERVICES);
  const port = server.port;
  await server.close();
  t.is((await refusal(connect('127.0.0.1', port, 'open', null))).code, 'econnrefused');
});

test('a server that never answers the handshake fails the connect with timeout', async (t) => {
  const mute = net.createServer((s) => s.on('error', () => {}));
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    mute.close();
  });
  const port = (mute.address() as net.AddressInfo).port;
  const err = await refusal(connect('127.0.0.1', port, 'open', null, null, { connectTimeout: 200 }));
  t.is(err.code, 'timeout');
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
