import { readFileSync } from 'node:fs';
import test from 'ava';
import { msgpackCodec } from '../src/codec/index.js';
import { ChanError } from '../src/errors.js';
import * as scram from '../src/auth/scram.js';
import { sealFrame } from '../src/frame.js';
import { ServerHandshake, clientHandshake } from '../src/handshake.js';
import { fromWire, toWire, type WireMessage } from '../src/protocol.js';
import { parseTerm, type Term } from '../src/term/index.js';

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
