/**
 * The baseline for `npm run bench`: the least a Node server can do to answer the same clients. Plain `net`, the same
 * framing and codec as lib-chan, the same map of terms as its memory store, and nothing else: no authentication (it acks every
 * startService), no middle-man, no mailbox, no handler process, no heartbeats, no limits, one write per reply.
 * It speaks just enough of docs/PROTOCOL.md for `chan bench` (with an empty secret) to run against it.
 * Prints {"port": N} on stdout once it listens.
 */
import net from 'node:net';
import { msgpackCodec } from '../src/codec/index.js';
import { FRAME_HEADER_BYTES, FrameParser, sealFrame } from '../src/frame.js';
import { fromWire, toWire, type WireMessage } from '../src/protocol.js';
import { TermMap } from '../src/term/hash.js';
import { atom, isTuple, tuple, type Term } from '../src/term/model.js';

const codec = msgpackCodec({ maxDepth: 32 });
/** The map the memory store keeps its terms in, used directly: the baseline has no limits and no store layer. */
const store = new TermMap<Term>();
const OK = atom('ok');
const UNDEFINED = atom('undefined');

function answer(x: Term): Term | undefined {
  if (isTuple(x, 'lookup', 2)) {
    const e = store.get(x.at(1) as Term);
    return e ? tuple(OK, e.value) : UNDEFINED;
  }
  if (isTuple(x, 'store', 3)) {
    store.set(x.at(1) as Term, x.at(2) as Term);
    return true;
  }
  return undefined;
}

const server = net.createServer({ noDelay: true }, (socket) => {
  const send = (m: WireMessage): void => {
    socket.write(sealFrame(codec.encode(toWire(m), FRAME_HEADER_BYTES)));
  };
  const parser = new FrameParser(1 << 20, (payload) => {
    const m = fromWire(codec.decode(payload));
    switch (m.kind) {
      case 'startService':
        send({ kind: 'ack', version: 1, maxFrameSize: 1 << 20, heartbeatInterval: 0 });
        return;
      case 'cast':
        answer(m.data);
        return;
      case 'rpc':
        send({ kind: 'reply', id: m.id, data: answer(m.data) ?? null });
        return;
      case 'close':
        socket.end();
        return;
      default:
    }
  });
  socket.on('data', (chunk: Buffer) => parser.push(chunk));
  socket.on('error', () => socket.destroy());
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`);
});
