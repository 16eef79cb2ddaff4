/**
 * The middle-man with no socket: one end of an in-memory duplex pair is its socket, and the test is the peer on the
 * other end, writing bytes and reading frames by hand.
 */
import type { Duplex } from 'node:stream';
import test from 'ava';
import { msgpackCodec } from '../src/codec/index.js';
import type { ChanError, CloseInfo } from '../src/errors.js';
import { FrameParser, frame } from '../src/frame.js';
import { silentLogger } from '../src/log.js';
import { duplexPair } from '../src/memory-transport.js';
import { EARLY_FLUSH_BYTES, EARLY_FLUSH_FRAMES, MiddleMan } from '../src/mm.js';
import { ORIGINAL_SERVER } from '../src/original.js';
import { LIB_CHAN, fromWire, toWire, type Dialect, type WireMessage } from '../src/protocol.js';
import { atom } from '../src/term/model.js';

const codec = msgpackCodec({ maxDepth: 32 });
const bytesOf = (m: WireMessage): Buffer => frame(codec.encode(toWire(m), 0));
/** One turn of the event loop: what was written has been delivered. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Rig {
  mm: MiddleMan;
  /** The middle-man's end (its socket). */
  socket: Duplex;
  /** The peer's end. */
  peer: Duplex;
  /** What the middle-man handed its sink. */
  got: WireMessage[];
  /** How the sink was told the connection ended. */
  ended: Promise<CloseInfo>;
  /** What the peer read from the middle-man, frame by frame (once it reads). */
  read: WireMessage[];
  /** The peer starts reading (at once, unless `peerReads: false`). */
  startReading(): void;
  socketClosed: Promise<void>;
  /** The peer has read the middle-man's FIN. */
  peerEnded: Promise<void>;
}

function rig(
  options: { maxFrameSize?: number; sendBufferLimit?: number; peerReads?: boolean } = {},
  onMessage: (mm: MiddleMan) => void = () => {},
): Rig {
  const [mine, peer] = duplexPair();
  const got: WireMessage[] = [];
  const read: WireMessage[] = [];
  let end!: (info: CloseInfo) => void;
  let socketGone!: () => void;
  const ended = new Promise<CloseInfo>((resolve) => (end = resolve));
  const socketClosed = new Promise<void>((resolve) => (socketGone = resolve));
  const peerEnded = new Promise<void>((resolve) => peer.once('end', resolve));
  const mm: MiddleMan = new MiddleMan(
    mine,
    {
      codec,
      maxFrameSize: options.maxFrameSize ?? 1024 * 1024,
      sendBufferLimit: options.sendBufferLimit ?? 1024 * 1024,
      log: silentLogger,
    },
    { onSocketClosed: () => socketGone() },
    {
      onMessage: (m) => {
        got.push(m);
        onMessage(mm);
      },
      onClosed: (info) => end(info),
    },
  );
  const parser = new FrameParser(1 << 24, (p) => read.push(fromWire(codec.decode(p))));
  const startReading = (): void => {
    peer.on('data', (c: Buffer) => parser.push(c));
    peer.resume();
  };
  if (options.peerReads === false) peer.pause();
  else startReading();
  return { mm, socket: mine, peer, got, ended, read, startReading, socketClosed, peerEnded };
}

const MESSAGES: WireMessage[] = [
  { kind: 'cast', data: 1 },
  { kind: 'rpc', id: 7, data: 'seven' },
  { kind: 'cast', data: atom('three') },
];

test('frames split at every byte, or merged into one chunk, reach the sink as the same messages in order', async (t) => {
  const bytes = Buffer.concat(MESSAGES.map(bytesOf));
  const dribbled = rig();
  for (const b of bytes) dribbled.peer.write(Buffer.from([b]));
  const merged = rig();
  merged.peer.write(bytes);
  await turn();
  t.deepEqual(dribbled.got, MESSAGES);
  t.deepEqual(merged.got, MESSAGES);
});

test("the peer's frame limit holds as it was told: none until told, 0 refuses every frame, 4 GiB - 1 is kept whole", (t) => {
  const { mm } = rig();
  t.is(mm.peerMaxFrameSize, Number.POSITIVE_INFINITY);
  mm.peerMaxFrameSize = 0xffff_ffff;
  t.is(mm.peerMaxFrameSize, 0xffff_ffff);
  t.true(mm.send({ kind: 'cast', data: 1 }));
  mm.peerMaxFrameSize = 0;
  t.is(mm.peerMaxFrameSize, 0);
  t.is(t.throws<ChanError>(() => mm.send({ kind: 'cast', data: 1 }))?.code, 'frameTooLarge');
  mm.peerMaxFrameSize = Number.POSITIVE_INFINITY;
  t.true(mm.send({ kind: 'cast', data: 2 }));
});

test('a paused middle-man hands nothing over, not even the rest of the chunk being parsed, until it resumes', async (t) => {
  const r = rig({}, (mm) => mm.pauseReading());
  r.peer.write(Buffer.concat(MESSAGES.map(bytesOf)));
  await turn();
  t.deepEqual(r.got, MESSAGES.slice(0, 1));
  r.mm.resumeReading();
  t.deepEqual(r.got, MESSAGES.slice(0, 2));
  r.mm.resumeReading();
  await turn();
  t.deepEqual(r.got, MESSAGES);
});

test("a heartbeat ping the peer's frame limit refuses closes the connection with frameTooLarge; nothing is thrown from the timer", async (t) => {
  const r = rig();
  r.mm.peerMaxFrameSize = 0;
  t.notThrows(() => r.mm.sendPing(1));
  t.is((await r.ended).reason, 'frameTooLarge');
  // The same for a pong sent once what was queued before it has left (from a write's callback).
  const q = rig({ peerReads: false });
  q.mm.beginSession(0, 4);
  q.mm.send({ kind: 'push', data: Buffer.alloc(256 * 1024) }); // bytes queued: the pong waits for them
  q.mm.peerMaxFrameSize = 0;
  q.peer.write(bytesOf({ kind: 'ping', n: 7 }));
  q.startReading();
  t.is((await q.ended).reason, 'frameTooLarge');
});

test('a pause that outlasts its turn pauses the socket itself; resuming reads on from where it stopped', async (t) => {
  const r = rig({}, (mm) => mm.pauseReading());
  const { socket } = r;
  r.peer.write(bytesOf(MESSAGES[0] as WireMessage));
  await turn();
  await turn();
  t.true(socket.isPaused(), 'the socket is paused once the pause has outlasted a turn');
  // What the peer writes meanwhile waits in the socket: the sink sees none of it.
  r.peer.write(Buffer.concat(MESSAGES.slice(1).map(bytesOf)));
  await turn();
  t.deepEqual(r.got, MESSAGES.slice(0, 1));
  t.true(socket.readableLength > 0, 'the bytes wait unread in the socket');
  r.mm.resumeReading();
  t.false(socket.isPaused());
  await turn();
  t.deepEqual(r.got, MESSAGES.slice(0, 2), 'each message pauses again, and the socket goes on delivering');
  r.mm.resumeReading();
  await turn();
  t.deepEqual(r.got, MESSAGES);
});

test('a close for a reason that keeps the queue sends every queued frame, then the close frame, then FIN', async (t) => {
  // A peer not reading: the socket holds its share (SOCKET_SHARE, 128 KiB) and the middle-man queues the rest.
  const r = rig({ sendBufferLimit: 4 * 1024 * 1024, peerReads: false });
  const pushes = Array.from({ length: 40 }, (_, i): WireMessage => ({ kind: 'push', data: `${i}`.repeat(10 * 1024) }));
  for (const m of pushes) r.mm.send(m);
  t.true(r.mm.queuedBytes > 300 * 1024, `${r.mm.queuedBytes} bytes wait for the peer`);
  r.mm.close('normal', 'done');
  t.is((await r.ended).reason, 'normal');
  r.startReading();
  await r.peerEnded;
  t.deepEqual(r.read, [...pushes, { kind: 'close', reason: 'normal', text: 'done' }]);
});

test('close sends its reason, then FIN, and lingers until the peer closes its side', async (t) => {
  const r = rig();
  r.mm.close('normal', 'goodbye');
  const info = await r.ended;
  t.deepEqual({ reason: info.reason, by: info.by }, { reason: 'normal', by: 'local' });
  await r.peerEnded;
  t.deepEqual(r.read, [{ kind: 'close', reason: 'normal', text: 'goodbye' }]);
  // The middle-man's socket is still open: it waits for the peer's FIN (or CLOSE_LINGER_MS).
  let gone = false;
  void r.socketClosed.then(() => (gone = true));
  await turn();
  t.false(gone);
  r.peer.end();
  await r.socketClosed;
  t.pass();
});

test('a close frame from the peer ends the connection with its reason, by the peer', async (t) => {
  const r = rig();
  r.peer.write(bytesOf({ kind: 'close', reason: 'shutdown', text: 'bye' }));
  const info = await r.ended;
  t.deepEqual({ reason: info.reason, text: info.text, by: info.by }, { reason: 'shutdown', text: 'bye', by: 'peer' });
  t.deepEqual(r.got, []);
});

test('a frame over the limit is refused with frameTooLarge before it is read; the sink never sees it', async (t) => {
  const r = rig({ maxFrameSize: 64 });
  r.peer.write(bytesOf({ kind: 'cast', data: 'x'.repeat(100) }));
  const info = await r.ended;
  t.is(info.reason, 'frameTooLarge');
  await r.peerEnded;
  t.is(r.read.at(-1)?.kind, 'close');
  t.deepEqual(r.got, []);
});

test('bytes that are not a message are a protocolError, told to the peer', async (t) => {
  const r = rig();
  r.peer.write(frame(Buffer.from([0xc1])));
  t.is((await r.ended).reason, 'protocolError');
});

test('a ping before the session is a protocolError; in the session it is answered with its number', async (t) => {
  const early = rig();
  early.peer.write(bytesOf({ kind: 'ping', n: 1 }));
  t.is((await early.ended).reason, 'protocolError');

  const r = rig();
  r.mm.beginSession(0, 4);
  r.peer.write(bytesOf({ kind: 'ping', n: 41 }));
  await turn();
  t.deepEqual(r.read, [{ kind: 'pong', n: 41 }]);
  t.deepEqual(r.got, []);
});

test('a peer that stops reading is cut at sendBufferLimit with slowConsumer, and reads that reason first when it reads again', async (t) => {
  // Over SOCKET_SHARE (128 KiB): the socket holds its share, the middle-man queues the rest, and drops it at the cut.
  const limit = 512 * 1024;
  const r = rig({ sendBufferLimit: limit, peerReads: false });
  const chunk = 'x'.repeat(10 * 1024);
  let sent = 0;
  while (!r.mm.closed && sent < 1000) {
    r.mm.send({ kind: 'push', data: chunk });
    sent++;
  }
  t.is(r.mm.closed?.reason, 'slowConsumer');
  t.true(sent < 1000, 'it was cut long before 1000 frames');
  // What waited for the peer was dropped: the close frame comes right after what the socket had already taken.
  r.startReading();
  await r.peerEnded;
  const last = r.read.at(-1);
  t.deepEqual(last?.kind === 'close' ? last.reason : last?.kind, 'slowConsumer');
  t.true(r.read.length - 1 < sent, `${r.read.length - 1} of ${sent} pushes reached the peer`);
});

test('drain() resolves once the peer has taken what was sent', async (t) => {
  const r = rig({ peerReads: false });
  r.mm.send({ kind: 'push', data: 'y'.repeat(300 * 1024) });
  let drained = false;
  const done = r.mm.drain().then(() => (drained = true));
  await turn();
  t.false(drained, 'nothing has been read yet');
  r.startReading();
  await done;
  t.true(drained);
});

test('flush() rejects with timeout when the peer does not answer its ping, resolves on the pong, and rejects when the connection ends', async (t) => {
  const r = rig();
  const late = await t.throwsAsync(r.mm.flush(20));
  t.is((late as ChanError).code, 'timeout');
  // The next flush is answered: the peer reads its ping and sends the pong.
  const answered = r.mm.flush(60_000);
  const ping = await new Promise<number>((resolve) => {
    // The rig's reader parses each chunk first: once the second ping has been read, its number is known.
    const look = (): void => {
      const second = r.read.filter((m) => m.kind === 'ping')[1];
      if (second?.kind !== 'ping') return;
      r.peer.off('data', look);
      resolve(second.n);
    };
    r.peer.on('data', look);
    look();
  });
  r.peer.write(bytesOf({ kind: 'pong', n: ping }));
  await t.notThrowsAsync(answered);
  const pending = r.mm.flush(60_000);
  r.mm.close('normal', 'done');
  const closed = await t.throwsAsync(pending);
  t.is((closed as ChanError).code, 'closed');
});

test('TLS bytes where a frame should be are a protocolError however the first two bytes are split between reads', async (t) => {
  for (const split of [[Buffer.from([0x16, 0x03])], [Buffer.from([0x16]), Buffer.from([0x03, 0x00, 0x00])]]) {
    const r = rig();
    for (const chunk of split) {
      r.peer.write(chunk);
      await turn();
    }
    const info = await r.ended;
    t.is(info.reason, 'protocolError');
    t.regex(info.text, /speaks TLS/);
  }
});

test('a close text cut to fit is never cut inside a surrogate pair', async (t) => {
  const r = rig();
  r.mm.peerMaxFrameSize = 96 + 3 * 11; // room for 11 UTF-16 units: the 6th emoji's pair would be split
  r.mm.close('normal', '😀'.repeat(10));
  await r.peerEnded;
  const close = r.read.at(-1);
  t.is(close?.kind === 'close' ? close.text : undefined, '😀'.repeat(5));
});

test(`frames of one turn leave together, but ${EARLY_FLUSH_FRAMES} frames answered or waited on, or ${EARLY_FLUSH_BYTES} bytes of any, gathered leave at once`, async (t) => {
  /**
   * Sends `frames` in one turn; returns how many times the gathered frames were let go to the socket before that turn
   * ended (its uncork: the rest leaves when the turn ends), and what the peer read.
   */
  const inTurn = async (
    frames: WireMessage[],
    dialect: Dialect = LIB_CHAN,
  ): Promise<{ flushes: number; writes: number; read: WireMessage[] }> => {
    const [mine, peer] = duplexPair();
    let flushes = 0;
    let writes = 0;
    const uncork = mine.uncork.bind(mine);
    mine.uncork = () => {
      flushes++;
      uncork();
    };
    const write = mine.write.bind(mine) as (chunk: Buffer, ...rest: unknown[]) => boolean;
    mine.write = ((chunk: Buffer, ...rest: unknown[]) => {
      if (chunk.length > 0) writes++;
      return write(chunk, ...rest);
    }) as typeof mine.write;
    const mm = new MiddleMan(
      mine,
      { codec, dialect, maxFrameSize: 1 << 20, sendBufferLimit: 1 << 24, log: silentLogger },
      {},
      { onMessage: () => {}, onClosed: () => {} },
    );
    const read: WireMessage[] = [];
    const parser = new FrameParser(1 << 24, (p) => read.push(dialect.fromWire(codec.decode(p))));
    peer.on('data', (c: Buffer) => parser.push(c));
    for (const m of frames) mm.send(m);
    const early = flushes;
    while (read.length < frames.length) await turn();
    mm.destroy();
    return { flushes: early, writes, read };
  };
  // 40 small rpcs: two early flushes (at 16 and 32), the last 8 at the turn's end; replies alike.
  const small = Array.from({ length: 40 }, (_, i): WireMessage => ({ kind: 'rpc', id: i + 1, data: i }));
  const bySmall = await inTurn(small);
  t.is(bySmall.flushes, 2);
  t.deepEqual(bySmall.read, small);
  // Each flush's frames lie end to end in the codec's slab: one write each (two at most where a slab ends among them).
  t.true(bySmall.writes >= 3 && bySmall.writes <= 4, `${bySmall.writes} writes`);
  const replies = Array.from({ length: 40 }, (_, i): WireMessage => ({ kind: 'reply', id: i + 1, data: i }));
  const byReplies = await inTurn(replies);
  t.is(byReplies.flushes, 2);
  t.deepEqual(byReplies.read, replies);
  // One-way frames (casts, pushes) are not counted: 40 of them leave at the turn's end, and among rpcs they do not
  // bring the rpcs' flush sooner.
  const oneWay = Array.from({ length: 40 }, (_, i): WireMessage => ({ kind: i % 2 ? 'cast' : 'push', data: i }));
  const byOneWay = await inTurn(oneWay);
  t.is(byOneWay.flushes, 0);
  t.deepEqual(byOneWay.read, oneWay);
  const mixed = Array.from(
    { length: 40 },
    (_, i): WireMessage => (i % 2 ? { kind: 'cast', data: i } : { kind: 'rpc', id: i + 1, data: i }),
  );
  const byMixed = await inTurn(mixed);
  t.is(byMixed.flushes, 1, '20 rpcs among them: one flush, at the 16th');
  t.deepEqual(byMixed.read, mixed);
  // In the original protocol every message goes one way and any may be the answer a peer waits on: all count.
  const erlang = await inTurn(oneWay, ORIGINAL_SERVER);
  t.is(erlang.flushes, 2);
  t.deepEqual(
    erlang.read.map((m) => (m.kind === 'cast' ? m.data : null)),
    oneWay.map((m) => (m.kind === 'cast' || m.kind === 'push' ? m.data : null)),
  );
  // A small frame, one large enough for a buffer of its own, and a small one again (end to end with the first in the
  // slab, the large one between them on the wire): in order.
  const apart: WireMessage[] = [
    { kind: 'cast', data: 1 },
    { kind: 'cast', data: Buffer.alloc(5000, 7) },
    { kind: 'cast', data: 2 },
  ];
  t.deepEqual((await inTurn(apart)).read, apart);
  // 2 casts of 40 KiB: by the bytes, one-way frames too; the second takes what is gathered past EARLY_FLUSH_BYTES,
  // and both leave at once.
  const large = Array.from({ length: 2 }, (_, i): WireMessage => ({ kind: 'cast', data: Buffer.alloc(40 * 1024, i) }));
  const byLarge = await inTurn(large);
  t.is(byLarge.flushes, 1);
  t.deepEqual(byLarge.read, large);
});

test('frames gathered in a turn are written before drain() resolves, and before the close frame of a close() in the same turn', async (t) => {
  const [mine, peer] = duplexPair();
  let written = 0;
  const write = mine.write.bind(mine) as (chunk: Buffer, ...rest: unknown[]) => boolean;
  mine.write = ((chunk: Buffer, ...rest: unknown[]) => {
    written += chunk.length;
    return write(chunk, ...rest);
  }) as typeof mine.write;
  const mm = new MiddleMan(
    mine,
    { codec, maxFrameSize: 1 << 20, sendBufferLimit: 1 << 24, log: silentLogger },
    {},
    { onMessage: () => {}, onClosed: () => {} },
  );
  const read: WireMessage[] = [];
  const parser = new FrameParser(1 << 24, (p) => read.push(fromWire(codec.decode(p))));
  const peerEnded = new Promise<void>((resolve) => peer.once('end', resolve));
  peer.on('data', (c: Buffer) => parser.push(c));
  const casts = Array.from({ length: 5 }, (_, i): WireMessage => ({ kind: 'cast', data: `cast ${i}` }));
  for (const m of casts) mm.send(m);
  const bytes = casts.reduce((n, m) => n + 4 + codec.encode(toWire(m), 0).length, 0);
  await mm.drain();
  t.true(written >= bytes, `${written} bytes written of ${bytes} when drain() resolved`);
  for (const m of casts) mm.send(m);
  mm.close('normal', 'bye');
  await peerEnded;
  t.deepEqual(read, [...casts, ...casts, { kind: 'close', reason: 'normal', text: 'bye' }]);
  mm.destroy();
});
