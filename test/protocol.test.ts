import { readFileSync } from 'node:fs';
import test from 'ava';
import { msgpackCodec } from '../src/codec/index.js';
import { ChanError } from '../src/errors.js';
import { sealFrame } from '../src/frame.js';
import { fromWire, toWire, type WireMessage } from '../src/protocol.js';
import { parseTerm, type Term } from '../src/term/index.js';

const codec = msgpackCodec({ maxDepth: 32 });
const hex = (m: WireMessage): string => sealFrame(codec.encode(toWire(m), 4)).toString('hex').replace(/(..)(?!$)/g, '$1 ');

const EXAMPLES: [string, WireMessage][] = [
  ['startService, no secret', { kind: 'startService', version: 1, service: 'nameServer', args: null }],
  ['cast {store, joe, "writing a book"}', { kind: 'cast', data: parseTerm('{store, joe, "writing a book"}') }],
  ['rpc 1 {lookup, joe}', { kind: 'rpc', id: 1, data: parseTerm('{lookup, joe}') }],
  ['reply 1 {ok, "writing a book"}', { kind: 'reply', id: 1, data: parseTerm('{ok, "writing a book"}') }],
  ['reply 2 undefined', { kind: 'reply', id: 2, data: parseTerm('undefined') }],
  ['close normal "bye"', { kind: 'close', reason: 'normal', text: 'bye' }],
];

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
