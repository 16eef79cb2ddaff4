import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import test from 'ava';
import { connect } from '../src/client.js';
import { msgpackCodec } from '../src/codec/index.js';
import { ChanError } from '../src/errors.js';
import * as scram from '../src/auth/scram.js';
import { frame, sealFrame } from '../src/frame.js';
import { ServerHandshake, clientHandshake } from '../src/handshake.js';
import { fromWire, toWire, type WireMessage } from '../src/protocol.js';
import { float, parseTerm, type Term } from '../src/term/index.js';
import { RawClient, echo, service, testServer } from './helpers.js';

const codec = msgpackCodec({ maxDepth: 32 });
const hex = (m: WireMessage): string =>
  sealFrame(codec.encode(toWire(m), 4))
    .toString('hex')
    .replace(/(..)(?!$)/g, '$1 ');

const EXAMPLES: [string, WireMessage][] = [
  ['startService, no secret', { kind: 'startService', version: 1, service: 'nameServer', args: null }],
  ['cast {store, joe, "writing a book"}', { kind: 'cast', data: parseTerm('{store, joe, "writing a book"}') }],
  ['rpc 1 {lookup, joe}', { kind: 'rpc', id: 1, data: parseTerm('{lookup, joe}') }],
  ['reply 1 {ok, "writing a book"}', { kind: 'reply', id: 1, data: parseTerm('{ok, "writing a book"}') }],
  ['reply 2 undefined', { kind: 'reply', id: 2, data: parseTerm('undefined') }],
  ['close normal "bye"', { kind: 'close', reason: 'normal', text: 'bye' }],
  ['ping 1', { kind: 'ping', n: 1 }],
  ['pong 1', { kind: 'pong', n: 1 }],
];

/** The handshake of docs/PROTOCOL.md section 12, run by the real client and server code with its fixed values. */
async function workedHandshake(): Promise<string[]> {
  const salt = Buffer.from('QSXCR+Q6sek8bf92', 'base64');
  const v = scram.verifierFromSalted(await scram.saltedPassword('ABXy45', salt, 4096), salt, 4096);
  const server = new ServerHandshake({
    lookup: (n) => (n === 'nameServer' ? { name: n, verifier: v } : undefined),
    maxFrameSize: 1048576,
    heartbeatInterval: 15000,
    peer: { address: '127.0.0.1' },
    newNonce: () => '3rfcNHYJY1ZVvWVs7j',
  });
  const frames: string[] = [];
  const replies: WireMessage[] = [];
  await clientHandshake(
    {
      send(m) {
        frames.push(hex(m));
        const out = server.step(m);
        const reply: WireMessage =
          out.kind === 'send'
            ? out.message
            : out.kind === 'accept'
              ? out.ack
              : { kind: 'close', reason: out.reason, text: out.text };
        frames.push(hex(reply));
        replies.push(reply);
      },
      next: async () => replies.shift() as WireMessage,
    },
    { service: 'nameServer', secret: 'ABXy45', args: null, nonce: 'fyko+d2lbbFgONRv9qkxdawL', maxFrameSize: 1048576 },
  );
  return frames;
}

test('the handshake in docs/PROTOCOL.md is what client and server produce, proof and signature included', async (t) => {
  const doc = readFileSync('docs/PROTOCOL.md', 'utf8').split('\n');
  const frames = await workedHandshake();
  t.is(frames.length, 4);
  for (const [i, label] of ['client: startService', 'server: challenge', 'client: response', 'server: ack'].entries()) {
    const at = doc.findIndex((l) => l.startsWith(label));
    t.true(at >= 0, label);
    t.is(doc[at + 1], frames[i], label);
  }
  t.true(doc.includes('ClientProof     = kX1cqYBqs40eNHJK86z5ymcquBGjEOU2sjKEIK/5LA8='));
  t.true(doc.includes('ServerSignature = YA49+egzbQTVa+/QvVX/cg6eeLm6HrDq8HQ3VXUn4G4='));
  t.true(
    frames[2]?.includes(
      Buffer.from('p=kX1cqYBqs40eNHJK86z5ymcquBGjEOU2sjKEIK/5LA8=')
        .toString('hex')
        .replace(/(..)(?!$)/g, '$1 '),
    ),
  );
});

test('the frames in docs/PROTOCOL.md are what the encoder writes, and read back', (t) => {
  const doc = readFileSync('docs/PROTOCOL.md', 'utf8').split('\n');
  for (const [label, message] of EXAMPLES) {
    const at = doc.findIndex((l) => l.startsWith(label));
    t.true(at >= 0, `docs/PROTOCOL.md has no example '${label}'`);
    t.is(doc[at + 1], hex(message), label);
    const bytes = Buffer.from((doc[at + 1] ?? '').replaceAll(' ', ''), 'hex');
    t.deepEqual(toWire(fromWire(codec.decode(bytes.subarray(4)))), toWire(message));
  }
});

const invalid: [string, Term][] = [
  ['not an array', 'cast'],
  ['an unknown word', ['hello', 1]],
  ['a cast without its term', ['cast']],
  ['an rpc id of 0', ['rpc', 0, 'x']],
  ['an rpc id over 32 bits', ['rpc', 2 ** 32, 'x']],
  ['a close without a text', ['close', 'normal']],
  ['startService without a map', ['startService', 1]],
  ['startService without a version', ['startService', { service: 's' }]],
  ['startService with a scram that is not a string', ['startService', { version: 1, service: 's', scram: 1 }]],
  ['an ack without maxFrameSize', ['ack', { version: 1 }]],
  ['a ping without its number', ['ping']],
  ['a pong with a negative number', ['pong', -1]],
  // Integer fields take integers only: a float is refused even when its value is whole (1.0) or zero (-0.0).
  ['an rpc id of 1.0', ['rpc', float(1), 'x']],
  ['a reply id of 2.0', ['reply', float(2), 'x']],
  ['a ping of 1.0', ['ping', float(1)]],
  ['a pong of -0.0', ['pong', -0]],
  ['startService with version 1.0', ['startService', { version: float(1), service: 's' }]],
  [
    'startService with maxFrameSize 1048576.0',
    ['startService', { version: 1, service: 's', maxFrameSize: float(1048576) }],
  ],
  ['an ack with version 1.0', ['ack', { version: float(1), maxFrameSize: 1048576 }]],
  ['an ack with maxFrameSize 1048576.0', ['ack', { version: 1, maxFrameSize: float(1048576) }]],
  [
    'an ack with heartbeatInterval 15000.0',
    ['ack', { version: 1, maxFrameSize: 1048576, heartbeatInterval: float(15000) }],
  ],
  ['a hello with version 1.0', ['hello', { version: float(1) }]],
];

for (const [what, term] of invalid) {
  test(`a message that is ${what} is a protocolError`, (t) => {
    const err = t.throws(() => fromWire(term), { instanceOf: ChanError });
    t.is(err?.code, 'protocolError');
  });
}

test('unknown keys in handshake maps are ignored (room to grow)', (t) => {
  const m = fromWire(['startService', { version: 1, service: 's', args: null, future: 'x' }]);
  t.is(m.kind, 'startService');
});

// ---------------------------------------------------------------------------------------------------------------------
// Over a real socket, with MessagePack written by hand (as another implementation writes it): an integer field that
// arrives as a float 64 is a protocolError, even when the float's value is a whole number.

const bytes = (...xs: number[]): Buffer => Buffer.from(xs);
const str = (s: string): Buffer => Buffer.concat([bytes(0xa0 | s.length), Buffer.from(s)]);
const float64 = (n: number): Buffer => {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(n, 1);
  return b;
};
const uint32 = (n: number): Buffer => {
  const b = Buffer.alloc(5);
  b[0] = 0xce;
  b.writeUInt32BE(n, 1);
  return b;
};

/** ["startService", {"version": Version, "service": "echo", "args": nil, "maxFrameSize"?: Max}], framed. */
function startService(version: Buffer, maxFrameSize?: Buffer): Buffer {
  const fields = [str('version'), version, str('service'), str('echo'), str('args'), bytes(0xc0)];
  if (maxFrameSize) fields.push(str('maxFrameSize'), maxFrameSize);
  return frame(Buffer.concat([bytes(0x92), str('startService'), bytes(0x80 | (fields.length / 2)), ...fields]));
}

async function echoServer(t: { teardown(fn: () => Promise<void>): void }): Promise<number> {
  const server = await testServer([service('echo', echo)]);
  t.teardown(() => server.close());
  return server.port;
}

test('over a socket: startService with "version": 1.0 is a protocolError; with 1 it is acked', async (t) => {
  const port = await echoServer(t);
  const good = await RawClient.open(port);
  good.write(startService(bytes(0x01)));
  t.is((await good.next(0)).kind, 'ack');
  good.destroy();
  const c = await RawClient.open(port);
  c.write(startService(float64(1)));
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /startService: field 'version' must be a non-negative integer/);
});

test('over a socket: startService with "maxFrameSize": 1048576.0 is a protocolError; with 1048576 it is acked', async (t) => {
  const port = await echoServer(t);
  const good = await RawClient.open(port);
  good.write(startService(bytes(0x01), uint32(1048576)));
  t.is((await good.next(0)).kind, 'ack');
  good.destroy();
  const c = await RawClient.open(port);
  c.write(startService(bytes(0x01), float64(1048576)));
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /field 'maxFrameSize' must be an integer from 256 to 4294967295/);
});

test('over a socket: an rpc with the id 1.0 is a protocolError; the id 1 is answered', async (t) => {
  const port = await echoServer(t);
  const c = await RawClient.started(port, 'echo');
  c.write(frame(Buffer.concat([bytes(0x93), str('rpc'), bytes(0x01), str('x')])));
  const reply = await c.next(1);
  t.deepEqual(reply, { kind: 'reply', id: 1, data: 'x' });
  c.write(frame(Buffer.concat([bytes(0x93), str('rpc'), float64(2), str('y')])));
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /rpc: the request id must be an integer from 1 to 4294967295/);
  t.is(c.messages.length, 3); // the ack, the one reply, the close: "y" was never answered
});

test('over a socket: a ping of 1.0 is a protocolError; a ping of 1 is ponged', async (t) => {
  const port = await echoServer(t);
  const c = await RawClient.started(port, 'echo');
  c.write(frame(Buffer.concat([bytes(0x92), str('ping'), bytes(0x01)])));
  t.deepEqual(await c.next(1), { kind: 'pong', n: 1 });
  c.write(frame(Buffer.concat([bytes(0x92), str('ping'), float64(1)])));
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /ping: expected an integer from 0 to 4294967295/);
});

test('over a socket: a client refuses an ack whose heartbeatInterval is 15000.0 (protocolError)', async (t) => {
  // A server that acks whatever comes with a float where the protocol has an integer.
  const fake = net.createServer((socket) => {
    socket.once('data', () => {
      const body = [str('version'), bytes(0x01), str('maxFrameSize'), uint32(1048576)];
      body.push(str('heartbeatInterval'), float64(15000));
      socket.write(frame(Buffer.concat([bytes(0x92), str('ack'), bytes(0x83), ...body])));
    });
    socket.on('error', () => {});
  });
  fake.listen(0, '127.0.0.1');
  await once(fake, 'listening');
  t.teardown(() => fake.close());
  const { port } = fake.address() as net.AddressInfo;
  const err = await t.throwsAsync(connect('127.0.0.1', port, 'echo', null), {
    instanceOf: ChanError,
  });
  t.is((err as ChanError | undefined)?.code, 'protocolError');
  t.regex(err?.message ?? '', /^ack: field 'heartbeatInterval' must be a non-negative integer/);
});
