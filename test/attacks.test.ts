/**
 * The attacks of the hostile-peers review, each at the socket level against a real server, each with a well-behaved
 * neighbour beside it whose answers must stay right and prompt (see besideBystander).
 *
 * One at a time: the servers of one test file share its process's event loop, so a costly frame decoded for one test
 * would count against every other test's neighbour running at the same moment, and "prompt" would measure the file
 * rather than the server under attack.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import ava, { type ExecutionContext } from 'ava';
import { connect, type Channel } from '../src/client.js';
import type { ChanError } from '../src/errors.js';
import { decodedSizeLimit, msgpackCodec } from '../src/codec/index.js';
import { frame } from '../src/frame.js';
import { kvsClient } from '../src/kvs.js';
import { toWire } from '../src/protocol.js';
import type { ServiceDefinition } from '../src/modules.js';
import type { Handler } from '../src/runtime.js';
import { atom, formatTerm, parseTerm, tuple, type Term } from '../src/term/index.js';
import { run, serve } from './cli-helpers.js';
import { BOOK_SERVICE, RawClient, besideBystander, bystander, service, tappedConnect } from './helpers.js';
import { fixtures, serverTls } from './tls-fixtures.js';

const test = ava.serial;

const OPEN_KVS: ServiceDefinition = { ...BOOK_SERVICE, name: 'open', secret: null };

/** A frame holding `["rpc", id, {store, K, V}]`, with V a list of `n` copies of `item` (raw MessagePack). */
function storeOfList(id: number, n: number, item: Buffer): Buffer {
  const head = Buffer.from([0x93, 0xa3, 0x72, 0x70, 0x63, 0xce, 0, 0, 0, 0]);
  head.writeUInt32BE(id, 6);
  const list = Buffer.alloc(5 + n * item.length);
  list[0] = 0xdd;
  list.writeUInt32BE(n, 1);
  for (let i = 0; i < n; i++) item.copy(list, 5 + i * item.length);
  // {store, k, List}: ext32 type 2 holding [store, k, List]
  const atoms = Buffer.from([0x93, 0xc7, 5, 1, ...Buffer.from('store'), 0xc7, 1, 1, 0x6b]);
  const tupleHeader = Buffer.alloc(6);
  tupleHeader[0] = 0xc9;
  tupleHeader.writeUInt32BE(atoms.length + list.length, 1);
  tupleHeader[5] = 2;
  const payload = Buffer.concat([head, tupleHeader, atoms, list]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

test('lists of a million empty maps (1 MiB on the wire, 67 MB decoded) are refused with frameTooLarge; the heap stays small', async (t) => {
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], {}, async (server) => {
    const frame = storeOfList(1, 1024 * 1024 - 64, Buffer.from([0x80]));
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    // Ten at once: unbounded, that is 670 MB of objects.
    const attackers = await Promise.all(Array.from({ length: 10 }, () => RawClient.started(server.port, 'open')));
    for (const a of attackers) a.write(frame);
    const closes = await Promise.all(attackers.map((a) => a.closeMessage()));
    const grew = (process.memoryUsage().heapUsed - before) / 2 ** 20;
    t.deepEqual(
      closes.map((c) => c?.reason),
      Array(10).fill('frameTooLarge'),
    );
    t.regex(closes[0]?.text ?? '', new RegExp(`more than ${decodedSizeLimit(1024 * 1024)} bytes once decoded`));
    t.true(grew < 100, `the heap grew by ${grew.toFixed(0)} MiB`);
  });
});

test('a stored atom of 255 emoji is read back by another client; values at the deepest nesting too', async (t) => {
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], {}, async (server) => {
    const writer = await connect('127.0.0.1', server.port, 'open', null);
    const reader = await connect('127.0.0.1', server.port, 'open', null);
    const emoji = atom('\u{1F600}'.repeat(255));
    // {store, K, V} and {ok, V} put V at the same depth: the deepest V a client can store, it can read back.
    let deep: Term = [atom('bottom'), Buffer.from('bin')];
    for (let i = 0; i < 30; i++) deep = [deep];
    t.is(await writer.rpc(tuple(atom('store'), atom('e'), emoji)), true);
    t.is(await writer.rpc(tuple(atom('store'), atom('d'), deep)), true);
    t.is(formatTerm(await reader.rpc(tuple(atom('lookup'), atom('e')))), `{ok,'${emoji.name}'}`);
    t.is(formatTerm(await reader.rpc(tuple(atom('lookup'), atom('d')))), formatTerm(tuple(atom('ok'), deep)));
    await Promise.all([writer.close(), reader.close()]);
  });
});

test('a value whose answer could not be sent back is refused at store, not kept as poison; a bad request at the limit is answered', async (t) => {
  const maxFrameSize = 4096;
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], { maxFrameSize }, async (server) => {
    const ch = await connect('127.0.0.1', server.port, 'open', null);
    const refused = formatTerm(await ch.rpc(tuple(atom('store'), atom('big'), Buffer.alloc(maxFrameSize - 40))));
    t.regex(refused, /^\{error,\{tooLarge,"not stored: /);
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('big')))), 'undefined');
    // A request 32 levels deep (the most a client may send) cannot be repeated inside {error, {badRequest, X}}.
    let deep: Term = [];
    for (let i = 0; i < 31; i++) deep = [deep];
    t.is(formatTerm(await ch.rpc(deep)), '{error,{badRequest,tooLarge}}');
    t.is(formatTerm(await ch.rpc(parseTerm('{what, 1}'))), '{error,{badRequest,{what,1}}}');
    t.false(ch.isClosed);
    await ch.close();
  });
});

test("an answer over the client's own frame limit fails that rpc with {error, {frameTooLarge, Text}}; the connection stays", async (t) => {
  await besideBystander(t, [BOOK_SERVICE], {}, async (server) => {
    const writer = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
    await writer.rpc(tuple(atom('store'), atom('big'), 'x'.repeat(5000)));
    // This client accepts frames of 1 KiB only, and says so in its startService (carried through SCRAM).
    const small = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45', null, { maxFrameSize: 1024 });
    t.regex(
      formatTerm(await small.rpc(tuple(atom('lookup'), atom('big')))),
      /^\{error,\{frameTooLarge,"message of \d+ bytes is over the peer's max_frame_size of 1024"\}\}$/,
    );
    t.is(await small.rpc(tuple(atom('store'), atom('small'), 1)), true);
    t.is(formatTerm(await small.rpc(tuple(atom('lookup'), atom('small')))), '{ok,1}');
    await Promise.all([writer.close(), small.close()]);
  });
});

test('the name server keeps at most store_max_bytes: a store past it is answered storeFull; lookups and replacements carry on', async (t) => {
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], { storeMaxBytes: 100_000 }, async (server) => {
    const ch = await connect('127.0.0.1', server.port, 'open', null);
    const value = 'v'.repeat(30_000);
    for (const k of ['a', 'b', 'c']) t.is(await ch.rpc(tuple(atom('store'), atom(k), value)), true);
    t.regex(
      formatTerm(await ch.rpc(tuple(atom('store'), atom('d'), value))),
      /^\{error,\{storeFull,"not stored: the store would hold \d+ bytes, over store_max_bytes \(100000\)"\}\}$/,
    );
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('d')))), 'undefined');
    t.is(await ch.rpc(tuple(atom('store'), atom('a'), 'small now')), true); // a replacement frees what it replaces
    t.is(await ch.rpc(tuple(atom('store'), atom('d'), value)), true);
    t.is(formatTerm(await ch.rpc(tuple(atom('lookup'), atom('b')))), `{ok,"${value}"}`);
    // As a cast (the book's way), the refusal comes as a push.
    ch.cast(tuple(atom('store'), atom('e'), value));
    t.regex(formatTerm(await ch.receive({ timeout: 2000 })), /^\{error,\{storeFull,/);
    // The kvs helper rejects with the name server's word.
    const err = await t.throwsAsync<ChanError>(kvsClient(ch).store(atom('f'), value));
    t.is(err?.code, 'storeFull');
    t.regex(err?.message ?? '', /^store refused: \{error,\{storeFull,"not stored/);
    await ch.close();
  });
});

/** A handler that takes nothing until `open()` is called, then echoes what it takes. */
function gated(): { handler: Handler; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  return {
    open,
    handler: async (mm) => {
      await gate;
      for await (const m of mm) {
        if (m.type === 'chan_closed') return;
        if (m.requestId !== undefined) mm.reply(m, 'done');
      }
    },
  };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}

test('a mailbox stops its socket at mailbox_high_water_bytes of decoded size, and loses nothing when the handler catches up', async (t) => {
  const g = gated();
  await besideBystander(
    t,
    [BOOK_SERVICE, service('slow', g.handler)],
    { mailboxHighWaterBytes: 512 * 1024 },
    async (server) => {
      const ch = await connect('127.0.0.1', server.port, 'slow', null, null, { rpcTimeout: 30_000 });
      const chunk = Buffer.alloc(100 * 1024, 1);
      for (let i = 0; i < 40; i++) ch.cast(chunk);
      const finished = ch.rpc('last');
      await until(() => server.stats().heldBytes >= 512 * 1024);
      await new Promise((r) => setTimeout(r, 100)); // time to read more, were it reading
      const held = server.stats().heldBytes;
      // Paused once 512 KiB were waiting: at most one message over it (and the frame being received).
      t.true(held < 512 * 1024 + 2 * (chunk.length + 1024), `${held} bytes held`);
      t.true(server.stats().queuedMessages < 10);
      g.open();
      t.is(await finished, 'done');
      await until(() => server.stats().heldBytes === 0);
      await ch.close();
    },
  );
});

test('past max_queued_bytes the connection holding the most is dropped with overloaded; the total stays bounded; the neighbour is not touched', async (t) => {
  const limit = 4 * 1024 * 1024;
  const g = gated();
  await besideBystander(
    t,
    [BOOK_SERVICE, service('slow', g.handler)],
    { maxQueuedBytes: limit, mailboxHighWaterBytes: 2 * limit },
    async (server) => {
      let peak = 0;
      const sampler = setInterval(() => (peak = Math.max(peak, server.stats().heldBytes)), 1);
      t.teardown(() => clearInterval(sampler)); // also when an assertion below throws
      const chunk = Buffer.alloc(700 * 1024, 2);
      const attackers = await Promise.all(
        Array.from({ length: 8 }, () => connect('127.0.0.1', server.port, 'slow', null)),
      );
      // Each sends more than its share: together ten times the budget.
      for (const a of attackers) for (let i = 0; i < 6; i++) a.cast(chunk);
      await until(() => server.stats().shed >= 1);
      // Once the attackers have sent all they could, the handler takes again: the ones still open carry on.
      await new Promise((r) => setTimeout(r, 200));
      clearInterval(sampler);
      g.open();
      const reasons = await Promise.all(
        attackers.map((a) =>
          a.flush({ timeout: 20_000 }).then(
            () => 'open',
            (err: ChanError) => err.reason ?? err.code,
          ),
        ),
      );
      t.true(reasons.includes('overloaded'), reasons.join(' '));
      t.true(reasons.includes('open'), reasons.join(' '));
      // The budget, plus what one turn of the event loop can add before shedding runs (a chunk's frames).
      t.true(peak <= limit + 2 * chunk.length, `peak ${peak} bytes held for a budget of ${limit}`);
      t.log(
        `peak ${(peak / 2 ** 20).toFixed(2)} MiB held for a budget of ${limit / 2 ** 20} MiB; ${server.stats().shed} connection(s) shed: ${reasons.join(' ')}`,
      );
      await Promise.all(attackers.map((a) => a.close()));
    },
  );
});

for (const isolation of ['inline', 'worker'] as const) {
  test(`rpcs a handler takes and leaves unanswered count against max_queued_bytes, 64 bytes each in steps of 64: a client that piles them up is shed, the neighbour carries on (${isolation})`, async (t) => {
    const hoard = { name: 'hoard', secret: null, module: 'mod_hoard', function: 'start_me_up', isolation } as const;
    const options = { maxQueuedBytes: 256 * 1024, codePath: [path.resolve('test/fixtures')] };
    await besideBystander(t, [BOOK_SERVICE, hoard], options, async (server) => {
      const ch = await connect('127.0.0.1', server.port, 'hoard', null, null, { rpcTimeout: 60_000 });
      const outcome = (p: Promise<unknown>): Promise<unknown> => p.catch((err: ChanError) => err.reason ?? err.code);
      const first = Array.from({ length: 640 }, (_, i) => outcome(ch.rpc(i)));
      await until(() => server.stats().heldBytes === 640 * 64);
      ch.cast('answerFirst');
      t.is(await first[0], 'first');
      await until(() => server.stats().heldBytes === (639 - 63) * 64); // a step fewer once under 640
      // On towards 8,192 waiting (512 KiB counted): over the budget, the connection is shed.
      const more = Array.from({ length: 8192 - 640 }, (_, i) => outcome(ch.rpc(i)));
      const reasons = new Set(await Promise.all([...first.slice(1), ...more]));
      t.deepEqual([...reasons], ['overloaded']);
      t.is(server.stats().shed, 1);
      await until(() => server.stats().heldBytes === 0);
    });
  });
}

test('a reader cut off for slowConsumer learns why when it reads again: the close frame goes ahead of the queue', async (t) => {
  let ended!: (reason: string) => void;
  const end = new Promise<string>((resolve) => (ended = resolve));
  let pushed = 0;
  const flood: Handler = async (mm) => {
    const chunk = Buffer.alloc(64 * 1024, 3);
    while (mm.push(chunk)) {
      pushed++;
      await new Promise((r) => setImmediate(r));
    }
    for await (const m of mm) if (m.type === 'chan_closed') ended(m.reason);
  };
  await besideBystander(
    t,
    [BOOK_SERVICE, service('flood', flood)],
    { sendBufferLimit: 4 * 1024 * 1024 },
    async (server) => {
      const c = await RawClient.started(server.port, 'flood');
      c.socket.pause();
      t.is(await end, 'slowConsumer');
      c.socket.resume();
      const close = await c.closeMessage();
      t.is(close?.reason, 'slowConsumer');
      // What was still queued (up to send_buffer_limit) was dropped for it: only what the kernel held came first.
      const arrived = c.messages.filter((m) => m.kind === 'push').length;
      t.true(arrived < pushed - 16, `${arrived} of ${pushed} pushes of 64 KiB arrived before the close`);
    },
  );
});

test('chan cast exits 0 only once the server confirmed reading: through a proxy that drops the cast and resets, exit 1', async (t) => {
  await besideBystander(t, [BOOK_SERVICE], {}, async (server) => {
    const target = ['127.0.0.1', String(server.port), 'nameServer', 'ABXy45'];
    const ok = await run(['cast', ...target, '{store, confirmed, 1}.']);
    t.is(ok.status, 0, ok.stderr);
    // A proxy that passes the handshake, then swallows the next frame from the client and resets both sides.
    const proxy = net.createServer((client) => {
      const upstream = net.connect(server.port, '127.0.0.1');
      let frames = 0;
      client.on('data', (chunk: Buffer) => {
        if (frames++ < 2) upstream.write(chunk);
        else {
          client.resetAndDestroy();
          upstream.resetAndDestroy();
        }
      });
      upstream.on('data', (chunk: Buffer) => client.write(chunk));
      client.on('error', () => {});
      upstream.on('error', () => {});
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.teardown(() => proxy.close());
    const dropped = await run([
      'cast',
      '127.0.0.1',
      String((proxy.address() as net.AddressInfo).port),
      'nameServer',
      'ABXy45',
      '{store, lost, 1}.',
    ]);
    t.is(dropped.status, 1);
    t.regex(dropped.stderr, /^chan: (closed|peerClosed|socketError): /);
    const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
    t.is(formatTerm(await ch.rpc(parseTerm('{lookup, lost}'))), 'undefined');
    t.is(formatTerm(await ch.rpc(parseTerm('{lookup, confirmed}'))), '{ok,1}');
    await ch.close();
  });
});

/**
 * Silent connections from each of `addresses`, `each` at a time, reopened as soon as the server closes one: the
 * lock-out attack. Returns how to stop it.
 */
function squat(port: number, addresses: string[], each: number): { opened: () => number; stop: () => void } {
  let running = true;
  let opened = 0;
  const sockets = new Set<net.Socket>();
  const open = (localAddress: string): void => {
    if (!running) return;
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    opened++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('data', () => {});
    s.once('close', () => {
      sockets.delete(s);
      setImmediate(open, localAddress);
    });
  };
  for (const a of addresses) for (let i = 0; i < each; i++) open(a);
  return {
    opened: () => opened,
    stop: () => {
      running = false;
      for (const s of sockets) s.destroy();
    },
  };
}

for (const [attackers, overTls, each] of [
  [1, false, 80],
  [16, false, 8],
  [64, false, 1],
  [1, true, 80],
  [16, true, 8],
] as const) {
  test(`with ${attackers} address${attackers > 1 ? 'es' : ''} holding every place of the handshake (${each} each)${overTls ? ' over TLS' : ''}, clients from 100 other addresses all get in`, async (t) => {
    const tls = overTls ? { tls: serverTls() } : {};
    await besideBystander(
      t,
      [{ ...BOOK_SERVICE, secret: null }],
      { maxUnauthenticated: 64, handshakeTimeout: 10_000, tlsHandshakeTimeout: 10_000, ...tls },
      async (server) => {
        const flood = squat(
          server.port,
          Array.from({ length: attackers }, (_, i) => `127.0.1.${i + 1}`),
          each,
        );
        while (server.stats().unauthenticated < (attackers === 1 ? 32 : 64)) await new Promise((r) => setTimeout(r, 5));
        const results = await Promise.all(
          Array.from({ length: 100 }, async (_, i) => {
            try {
              const ch = await connect('127.0.0.1', server.port, 'nameServer', null, null, {
                localAddress: `127.0.2.${i + 1}`,
                ...(overTls ? { tls: { ca: fixtures().ca.certPem } } : {}),
              });
              await ch.close();
              return 'ok';
            } catch (err) {
              return (err as ChanError).code;
            }
          }),
        );
        flood.stop();
        const ok = results.filter((r) => r === 'ok').length;
        t.true(ok >= 99, `${ok} of 100 got in: ${[...new Set(results)].join(', ')}`);
        t.log(
          `${ok} of 100 clients got in while ${attackers} address(es) opened ${flood.opened()} silent connections; ${server.stats().evicted} pushed out, ${server.stats().refused} refused`,
        );
      },
      overTls ? { tls: { ca: fixtures().ca.certPem } } : {},
    );
  });
}

/**
 * Two clients of the open name server, each writing its frame (an rpc) again as soon as the last is answered, for 2 s;
 * every answer must be a reply. Returns how many frames were sent.
 */
async function backToBack(t: ExecutionContext, port: number, frames: [Buffer, Buffer]): Promise<number> {
  const attackers = await Promise.all([RawClient.started(port, 'open'), RawClient.started(port, 'open')]);
  const until = Date.now() + 2000;
  let sent = 0;
  await Promise.all(
    attackers.map(async (a, n) => {
      for (let mine = 1; Date.now() < until; mine++) {
        a.write(frames[n] as Buffer);
        sent++;
        t.is((await a.next(mine)).kind, 'reply'); // answered, whatever the answer: the frame was decoded
      }
    }),
  );
  for (const a of attackers) a.destroy();
  return sent;
}

test('two clients sending the costliest frames a server accepts, back to back, leave a neighbour its answers within a second', async (t) => {
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], {}, async (server) => {
    // Lists of 12-character strings (the slowest values to decode per byte that fit the decoded-size budget) and of
    // unique-key maps (each a new hidden class): about 1 MiB each, accepted, decoded and stored.
    const strings = storeOfList(1, 80_000, Buffer.from([0xac, ...Buffer.from('abcdefghijkl')]));
    const maps: Buffer[] = [];
    for (let i = 0; i < 37_000; i++) {
      const k = Buffer.from(`k${i}`);
      maps.push(Buffer.concat([Buffer.from([0x81, 0xa0 | k.length]), k, Buffer.from([0xc0])]));
    }
    const keyed = rebuild(maps);
    const sent = await backToBack(t, server.port, [strings, keyed]);
    t.true(sent >= 4, `${sent} frames`);
    t.log(`${sent} costly frames decoded and stored in 2 s beside the neighbour`);
  });
});

/** `["rpc", 1, {store, k, [maps...]}]`, framed. */
function rebuild(items: Buffer[]): Buffer {
  const list = Buffer.concat([Buffer.from([0xdd, 0, 0, 0, 0]), ...items]);
  list.writeUInt32BE(items.length, 1);
  const atoms = Buffer.from([0x93, 0xc7, 5, 1, ...Buffer.from('store'), 0xc7, 1, 1, 0x6b]);
  const tupleHeader = Buffer.from([0xc9, 0, 0, 0, 0, 2]);
  tupleHeader.writeUInt32BE(atoms.length + list.length, 1);
  const payload = Buffer.concat([Buffer.from([0x93, 0xa3, ...Buffer.from('rpc'), 0x01]), tupleHeader, atoms, list]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

test('messages left in the mailbox of a handler that ended are dropped, and no longer count against the budget', async (t) => {
  const once: Handler = async (mm) => {
    await mm.receive();
    throw new Error('ends after one message');
  };
  await besideBystander(t, [BOOK_SERVICE, service('once', once)], {}, async (server) => {
    for (let i = 0; i < 10; i++) {
      const c = await RawClient.started(server.port, 'once');
      for (let k = 0; k < 20; k++) c.send({ kind: 'cast', data: Buffer.alloc(1000, k) });
      t.is((await c.closeMessage())?.reason, 'handlerError');
    }
    await until(() => server.stats().connections === 1);
    t.is(server.stats().heldBytes, 0);
  });
});

test('two flushes in a row while the server has much queued for the client: both are confirmed', async (t) => {
  const pusher: Handler = async (mm) => {
    for (let i = 0; i < 20; i++) mm.push('z'.repeat(500_000));
    for await (const m of mm) if (m.type === 'chan_closed') return;
  };
  await besideBystander(
    t,
    [BOOK_SERVICE, service('p', pusher)],
    { sendBufferLimit: 32 * 1024 * 1024 },
    async (server) => {
      const ch = await connect('127.0.0.1', server.port, 'p', null, null, { rpcTimeout: 10_000 });
      const reading = (async () => {
        for await (const _ of ch);
      })();
      ch.cast('a');
      const first = ch.flush();
      ch.cast('b');
      const second = ch.flush();
      await t.notThrowsAsync(Promise.all([first, second]));
      await ch.close();
      await reading;
    },
  );
});

test('a 1 MiB frame sent a byte at a time makes the server hold at most twice what has arrived (or 64 KiB)', async (t) => {
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], {}, async (server) => {
    const c = await RawClient.started(server.port, 'open');
    const frame = storeOfList(1, 1000, Buffer.from([0xc4, 200, ...Buffer.alloc(200, 1)]));
    let sent = 0;
    let worst = 0;
    for (const end of [100, 1000, 10_000, 70_000, 150_000]) {
      while (sent < end) {
        c.write(frame.subarray(sent, ++sent)); // one byte per write
        // (yielding now and then: the tests beside this one share its event loop)
        if (sent % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
      await until(() => server.stats().heldBytes >= Math.min(sent, 64 * 1024) - 8);
      // The first 64 KiB are given at once; past them, the buffer doubles with what arrives.
      worst = Math.max(worst, server.stats().heldBytes / Math.max(sent, 64 * 1024));
    }
    t.true(worst <= 2, `held ${worst.toFixed(2)} x what had arrived (or 64 KiB)`);
    c.write(frame.subarray(sent));
    t.is((await c.next(1)).kind, 'reply');
    c.destroy();
  });
});

test('a startService with a maxFrameSize under 256 is a protocolError; at 256 the session runs, close texts cut to fit', async (t) => {
  const loud: Handler = async (mm) => {
    await mm.receive();
    throw new Error(`a long reason: ${'x'.repeat(1000)}`);
  };
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS, service('loud', loud)], {}, async (server) => {
    const tiny = await RawClient.open(server.port);
    tiny.send({ kind: 'startService', version: 1, service: 'open', args: null, maxFrameSize: 20 });
    const refused = await tiny.closeMessage();
    t.is(refused?.reason, 'protocolError');
    t.regex(refused?.text ?? '', /maxFrameSize' must be an integer from 256 to 4294967295/);
    // A nonce of 256 characters (legal) leaves the challenge no room under a limit of 256 (legal): the client's own
    // choice, refused as a protocolError that says so, the close frame within the limit.
    const crowded = await RawClient.open(server.port);
    const scram = `n,,n=nameServer,r=${'N'.repeat(256)}`;
    crowded.send({ kind: 'startService', version: 1, service: 'nameServer', args: null, scram, maxFrameSize: 256 });
    const tooSmall = await crowded.closeMessage();
    t.is(tooSmall?.reason, 'protocolError');
    t.regex(tooSmall?.text ?? '', /^nonce too long for the maxFrameSize stated/);
    t.true(Buffer.byteLength(JSON.stringify(tooSmall)) < 256);
    const small = await RawClient.open(server.port);
    small.send({ kind: 'startService', version: 1, service: 'open', args: null, maxFrameSize: 256 });
    t.is((await small.next(0)).kind, 'ack');
    small.send({ kind: 'rpc', id: 1, data: tuple(atom('lookup'), atom('nothing')) });
    const reply = await small.next(1);
    t.is(reply.kind === 'reply' ? formatTerm(reply.data) : reply.kind, 'undefined');
    // A handler's error of 1,000 characters: its close text is cut so that the frame fits 256 bytes.
    const cut = await RawClient.open(server.port);
    cut.send({ kind: 'startService', version: 1, service: 'loud', args: null, maxFrameSize: 256 });
    t.is((await cut.next(0)).kind, 'ack');
    cut.send({ kind: 'cast', data: 1 });
    const close = await cut.closeMessage();
    t.is(close?.reason, 'handlerError');
    t.regex(close?.text ?? '', /^a long reason: x+$/);
    t.true(Buffer.byteLength(JSON.stringify(close)) < 256, `${Buffer.byteLength(JSON.stringify(close))} bytes`);
  });
});

// --- The memory ceiling ---

/*
 * The memory ceiling, end to end: `chan serve` on the shipped config, in a process whose V8 heap is capped small
 * (--max-old-space-size), with its queues and store limits lowered to fit, under a mix of every attack on memory at
 * once, beside a neighbour. It must not die, its resident memory must stay under the ceiling docs/SECURITY.md gives
 * for these settings, and the neighbour must keep its answers.
 */
const MiB = 1024 * 1024;
const LIMITS = { maxQueuedBytes: 32 * MiB, storeMaxBytes: 16 * MiB, maxFrameSize: MiB, maxConnections: 1024 };
/**
 * docs/SECURITY.md, "Memory ceiling": 96 MiB, plus max_queued_bytes, plus store_max_bytes for the one name server,
 * plus 128 x max_frame_size (decoded frames on their way, and their garbage), plus 64 KiB a connection.
 */
const CEILING =
  96 * MiB +
  LIMITS.maxQueuedBytes +
  LIMITS.storeMaxBytes +
  128 * LIMITS.maxFrameSize +
  LIMITS.maxConnections * 64 * 1024;

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** `["cast", {store, k, List}]` where List is a list of n empty maps: 1 MiB on the wire, 64 MiB decoded. */
function amplifier(n: number): Buffer {
  const payload = Buffer.concat([
    Buffer.from([0x92, 0xa4, ...Buffer.from('cast'), 0xc9]),
    Buffer.alloc(5),
    Buffer.from([0xdd, 0, 0, 0, 0]),
    Buffer.alloc(n, 0x80),
  ]);
  payload.writeUInt32BE(n + 5, 6);
  payload[10] = 2;
  payload.writeUInt32BE(n, 12);
  const frame = Buffer.alloc(4 + payload.length);
  frame.writeUInt32BE(payload.length);
  payload.copy(frame, 4);
  return frame;
}

test('under every memory attack at once, chan serve with a capped heap stays alive and under its documented ceiling', async (t) => {
  const { child, port } = await serve(['conf/lib_chan.conf'], {
    NODE_OPTIONS: '--max-old-space-size=128',
    CHAN_MAX_QUEUED_BYTES: String(LIMITS.maxQueuedBytes),
    CHAN_STORE_MAX_BYTES: String(LIMITS.storeMaxBytes),
  });
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  t.teardown(() => child.kill('SIGKILL'));
  const pid = child.pid as number;
  let peak = rss(pid);
  const sampler = setInterval(() => (peak = Math.max(peak, rss(pid))), 10);
  // Kept to be destroyed at the end: a paused socket never reads the server's close, and its rpcs wait a minute.
  const paused: Duplex[] = [];
  t.teardown(() => {
    clearInterval(sampler);
    for (const s of paused) s.destroy();
  });

  const neighbour = await connect('127.0.0.1', port, 'nameServer', 'ABXy45');
  const watch = bystander(neighbour);
  let running = true;
  const attacks: Promise<unknown>[] = [];
  const repeat = (n: number, f: () => Promise<unknown>): void => {
    for (let i = 0; i < n; i++)
      attacks.push(
        (async () => {
          while (running) await f().catch(() => {});
        })(),
      );
  };
  const open = (): Promise<Channel> => connect('127.0.0.1', port, 'nameServer', 'ABXy45', null, { rpcTimeout: 2000 });
  // 1. Frames that decode to 64 MiB each, from four connections at a time.
  const big = amplifier(MiB - 64);
  repeat(4, async () => {
    const { ch, socket } = await tappedConnect(port, 'nameServer', 'ABXy45', { rpcTimeout: 2000 });
    socket.write(big);
    await ch.closed;
  });
  // 2. Stores of 512 KiB values past the store quota, under many keys.
  let key = 0;
  repeat(4, async () => {
    const ch = await open();
    for (let i = 0; i < 20 && running; i++) await ch.rpc(tuple(atom('store'), key++, Buffer.alloc(512 * 1024, 7)));
    await ch.close();
  });
  // 3. Readers that never read: lookups of a 512 KiB value piling up answers.
  const seed = await open();
  await seed.rpc(tuple(atom('store'), atom('big'), Buffer.alloc(512 * 1024, 9)));
  // 4. Unauthenticated frames at their limit, never finishing.
  repeat(4, async () => {
    const c = await RawClient.open(port);
    const half = Buffer.alloc(16 * 1024);
    half.writeUInt32BE(16 * 1024);
    c.write(half.subarray(0, 8 * 1024));
    await c.closed;
  });
  repeat(6, async () => {
    const { ch, socket } = await tappedConnect(port, 'nameServer', 'ABXy45', { rpcTimeout: 2000 });
    if (!running) {
      socket.destroy(); // connected after the end: not to be left behind
      return;
    }
    socket.pause();
    paused.push(socket);
    for (let i = 0; i < 200 && running && !ch.isClosed; i++)
      ch.rpc(tuple(atom('lookup'), atom('big')), { timeout: 60_000 }).catch(() => {});
    await ch.closed;
  });
  // 5. Silent connections holding the places of the handshake.
  const silent: net.Socket[] = [];
  for (let i = 0; i < 40; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    silent.push(s);
  }

  await new Promise((r) => setTimeout(r, 6000));
  running = false;
  for (const s of silent) s.destroy();
  const { answers, wrong, slowest } = await watch.stop();
  for (const s of paused) s.destroy();
  clearInterval(sampler);
  t.is(exited, undefined, 'the server died');
  t.deepEqual(wrong, []);
  // The promise to the neighbour is its slowest answer (below); the count shows it was served all along: at least one
  // store-and-lookup every 300 ms on average, on a machine shared with the attackers and another test file.
  t.true(answers >= 20, `${answers} answers`);
  t.true(slowest < 1000, `the neighbour waited ${slowest} ms`);
  t.true(
    peak < CEILING,
    `peak RSS ${(peak / MiB).toFixed(0)} MiB over the ceiling of ${(CEILING / MiB).toFixed(0)} MiB`,
  );
  t.log(
    `peak RSS ${(peak / MiB).toFixed(0)} MiB (ceiling ${(CEILING / MiB).toFixed(0)} MiB); the neighbour got ${answers} answers, slowest ${slowest} ms`,
  );
  await Promise.race([Promise.all(attacks), new Promise((r) => setTimeout(r, 5000))]);
  await neighbour.close();
  await seed.close().catch(() => {});
});

test('a lookup of a map keyed by maps whose keys equal their values leaves a neighbour its answers within a second', async (t) => {
  // {lookup, #{#{0 => 0} => 0, #{1 => 1} => 0, ...}}: with a map's entries hashed as one step on key and value
  // together, every such key had the same hash whatever the seed, and checking 5,000 of them for a duplicate took
  // seconds (before authentication the decoded-size budget keeps a frame to about 500 of them: 70 ms).
  const keyed = new Map<Term, Term>();
  for (let i = 0; i < 5000; i++) keyed.set(new Map<Term, Term>([[i, i]]), 0);
  // Encoded once, here: the neighbour shares this process, and must not wait on the attackers' encoding. The same rpc
  // id each time (it is free again once answered).
  const lookup = frame(
    msgpackCodec({ maxDepth: 32 }).encode(toWire({ kind: 'rpc', id: 1, data: tuple(atom('lookup'), keyed) }), 0),
  );
  await besideBystander(t, [BOOK_SERVICE, OPEN_KVS], {}, async (server) => {
    const sent = await backToBack(t, server.port, [lookup, lookup]);
    t.true(sent >= 4, `${sent} frames`);
    t.log(`${sent} lookups of 5,000 such keys decoded and answered beside the neighbour in 2 s`);
  });
});
