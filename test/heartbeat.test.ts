import net from 'node:net';
import test from 'ava';
import { connect } from '../src/client.js';
import { msgpackCodec } from '../src/codec/index.js';
import type { ChanError } from '../src/errors.js';
import { FrameParser, frame } from '../src/frame.js';
import { Heartbeat, type Clock } from '../src/heartbeat.js';
import { fromWire, toWire } from '../src/protocol.js';
import type { Handler } from '../src/runtime.js';
import { RawClient, echo, handlerEnding, service, testServer } from './helpers.js';

/** A clock that moves only when told to. */
class FakeClock implements Clock {
  t = 0;
  private timer: { at: number; fn: () => void } | null = null;
  now(): number {
    return this.t;
  }
  after<A>(ms: number, fn: (arg: A) => void, arg: A): unknown {
    const timer = { at: this.t + ms, fn: () => fn(arg) };
    this.timer = timer;
    return timer;
  }
  cancel(handle: unknown): void {
    if (this.timer === handle) this.timer = null;
  }
  advance(ms: number, each?: () => void): void {
    const end = this.t + ms;
    while (this.timer && this.timer.at <= end) {
      const { at, fn } = this.timer;
      this.timer = null;
      this.t = at;
      fn();
      each?.();
    }
    this.t = end;
  }
}

function harness(
  interval = 100,
  maxMissed = 4,
): { hb: Heartbeat; clock: FakeClock; pings: number[]; deaths: number[] } {
  const clock = new FakeClock();
  const pings: number[] = [];
  const deaths: number[] = [];
  const hb = new Heartbeat(
    { sendPing: (n) => pings.push(n), dead: (ms) => deaths.push(ms) },
    interval,
    maxMissed,
    clock,
  );
  hb.start();
  return { hb, clock, pings, deaths };
}

test('a silent peer is declared dead after interval x maxMissed, with a ping every interval before', (t) => {
  const { clock, pings, deaths } = harness(100, 4);
  clock.advance(399);
  t.deepEqual(pings, [1, 2, 3]);
  t.deepEqual(deaths, []);
  clock.advance(1);
  t.deepEqual(deaths, [400]);
  clock.advance(1000);
  t.is(deaths.length, 1);
});

test('an idle peer that answers pings stays alive, and its round-trip time is measured', (t) => {
  const { hb, clock, pings, deaths } = harness(100, 4);
  let answered = 0;
  clock.advance(10_000, () => {
    if (pings.length === answered) return;
    answered = pings.length;
    clock.t += 3; // the pong comes back 3 ms later
    hb.pong(pings.at(-1) as number);
  });
  t.deepEqual(deaths, []);
  t.true(pings.length >= 90);
  t.is(hb.rtt, 3);
});

test('a busy connection sends no pings', (t) => {
  const { hb, clock, pings, deaths } = harness(100, 4);
  for (let i = 0; i < 100; i++) {
    clock.advance(50);
    hb.heard();
  }
  t.deepEqual(pings, []);
  t.deepEqual(deaths, []);
});

test('silence while this side has stopped reading does not count', (t) => {
  const { hb, clock, deaths } = harness(100, 4);
  hb.suspend(true);
  clock.advance(10_000);
  t.deepEqual(deaths, []);
  hb.suspend(false);
  clock.advance(400);
  t.deepEqual(deaths, [400]);
});

test('an interval of 0 turns heartbeats off', (t) => {
  const clock = new FakeClock();
  const deaths: number[] = [];
  new Heartbeat({ sendPing: () => {}, dead: (ms) => deaths.push(ms) }, 0, 4, clock).start();
  clock.advance(1e9);
  t.deepEqual(deaths, []);
});

test('the server notices a client that stopped reading and answering: the handler gets chan_closed timeout', async (t) => {
  const closed = await handlerEnding(t.teardown.bind(t), { heartbeatInterval: 40, heartbeatMaxMissed: 3 }, (c, ack) => {
    t.is(ack.kind === 'ack' ? ack.heartbeatInterval : -1, 40);
    c.socket.pause(); // alive at the TCP level, but it neither reads nor answers
  });
  t.is(closed.reason, 'timeout');
  t.regex(closed.text, /no frame from the peer for \d+ ms \(heartbeat\)/);
});

test('the client notices a server that stopped answering: closed is timeout, pending rpcs reject', async (t) => {
  const codec = msgpackCodec({ maxDepth: 32 });
  const mute = net.createServer((socket) => {
    socket.on('error', () => {});
    const parser = new FrameParser(1 << 16, (p) => {
      if (fromWire(codec.decode(p)).kind === 'startService') {
        socket.write(
          frame(codec.encode(toWire({ kind: 'ack', version: 1, maxFrameSize: 1 << 20, heartbeatInterval: 40 }), 0)),
        );
      }
    });
    socket.on('data', (c: Buffer) => parser.push(c)); // and never answer anything after the ack
  });
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    mute.close();
  });
  const ch = await connect('127.0.0.1', (mute.address() as net.AddressInfo).port, 's', null, null, {
    heartbeatMaxMissed: 3,
    rpcTimeout: 60_000,
  });
  const pending = ch.rpc('anyone there?').catch((e: unknown) => e);
  const info = await ch.closed;
  t.is(info.reason, 'timeout');
  const err = (await pending) as ChanError;
  t.is(err.code, 'closed');
  t.is(err.reason, 'timeout');
});

test('a live idle connection answers pings and measures the round trip', async (t) => {
  const server = await testServer([service('echo', echo)], { heartbeatInterval: 20, heartbeatMaxMissed: 3 });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 'echo', null);
  // Wait (without sleeping blindly) until the client's heartbeat has had a ping answered: that takes idle time.
  while (ch.stats().rtt === undefined) await new Promise((r) => setTimeout(r, 20));
  t.is(await ch.rpc('still open'), 'still open');
  t.false(ch.isClosed);
  await ch.close();
});

// Serial: it moves Date.now for the whole process, which other tests' deadlines read.
test.serial(
  'setting the wall clock does not make a live connection look dead: heartbeats run on the monotonic clock',
  async (t) => {
    const server = await testServer([service('echo', echo)], { heartbeatInterval: 20, heartbeatMaxMissed: 3 });
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.port, 'echo', null);
    while (ch.stats().rtt === undefined) await new Promise((r) => setTimeout(r, 20));
    // The wall clock jumps a day ahead (an NTP step, an operator's date -s): on it, both sides would see a day of silence.
    const wallClock = Date.now;
    Date.now = () => wallClock() + 86_400_000;
    t.teardown(() => {
      Date.now = wallClock;
    });
    // Four of the server's pings later (80 ms, past interval x maxMissed), both sides still take the other for alive.
    const heard = ch.stats().framesIn;
    while (ch.stats().framesIn < heard + 4 && !ch.isClosed) await new Promise((r) => setTimeout(r, 20));
    t.false(ch.isClosed);
    t.is(await ch.rpc('still open'), 'still open');
    await ch.close();
  },
);

test('a ping before the handshake is done is a protocolError (no pongs to pile up for an unauthenticated peer)', async (t) => {
  const server = await testServer([service('echo', echo)]);
  t.teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'ping', n: 1 });
  const close = await c.closeMessage();
  t.is(close?.reason, 'protocolError');
  t.regex(close?.text ?? '', /ping before the handshake/);
});

test('a server that has stopped reading (full mailbox) still pings, so its client does not take it for dead', async (t) => {
  const slow: Handler = async (mm) => {
    for await (const m of mm) {
      if (m.type === 'chan_closed') return;
      await new Promise((r) => setTimeout(r, 100));
      if (m.requestId !== undefined) mm.send('done');
    }
  };
  const server = await testServer([service('s', slow)], {
    mailboxHighWater: 2,
    heartbeatInterval: 40,
    heartbeatMaxMissed: 3,
  });
  t.teardown(() => server.close());
  const ch = await connect('127.0.0.1', server.port, 's', null, null, { rpcTimeout: 10_000 });
  for (let i = 0; i < 12; i++) ch.cast(i);
  t.is(await ch.rpc('last'), 'done'); // 13 messages x 100 ms, far past the 120 ms the heartbeat allows for silence
  t.false(ch.isClosed);
  await ch.close();
});

test('a peer that dribbles one endless frame is silent: the heartbeat closes it', async (t) => {
  const closed = await handlerEnding(t.teardown.bind(t), { heartbeatInterval: 40, heartbeatMaxMissed: 3 }, (c) => {
    c.write(Buffer.from([0, 0, 3, 232])); // a frame of 1000 bytes...
    const drip = setInterval(() => c.write(Buffer.from([0x01])), 20); // ...that never ends
    void c.closed.then(() => clearInterval(drip));
  });
  t.is(closed.reason, 'timeout');
});
