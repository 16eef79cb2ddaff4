/**
 * Groups of connections: in one process, across the processes of one server, across servers sharing one Redis; and
 * the IRC example on them.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { connect } from '../src/client.js';
import { loadConfigFile } from '../src/config/load.js';
import { msgpackCodec } from '../src/codec/index.js';
import { GroupBacklog, groupMessageSize, type GroupMessage } from '../src/group-backlog.js';
import { Groups, type Broadcast, type GroupBus } from '../src/groups.js';
import { silentLogger } from '../src/log.js';
import type { Handler } from '../src/runtime.js';
import { startServer } from '../src/server.js';
import { atom, isTuple, tuple } from '../src/term/model.js';
import { termKey } from '../src/term/print.js';
import { serve } from './cli-helpers.js';
import { capturedLog, service, tempDir, testServer } from './helpers.js';
import { hasRedis, startRedis } from '../scripts/redis-server.js';

/** {join, G} / {leave, G} / {publish, G, X} / {others, G, X} (all but the sender) / {count, G}. */
const grouped: Handler = async (mm, _argsC, _argsS, ctx) => {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    const x = m.data;
    if (isTuple(x, 'join', 2)) ctx.groups.join(x.at(1) ?? null, mm);
    else if (isTuple(x, 'leave', 2)) ctx.groups.leave(x.at(1) ?? null, mm);
    else if (isTuple(x, 'publish', 3)) ctx.groups.publish(x.at(1) ?? null, x.at(2) ?? null);
    else if (isTuple(x, 'others', 3)) ctx.groups.publish(x.at(1) ?? null, x.at(2) ?? null, { except: mm });
    if (m.requestId !== undefined)
      mm.reply(m, isTuple(x, 'count', 2) ? ctx.groups.localMembers(x.at(1) ?? null) : atom('ok'));
  }
};

test('in one process: every member gets a publish, but the one left out; a member that disconnects is forgotten', async (t) => {
  const server = await testServer([service('g', grouped)]);
  t.teardown(() => server.close());
  const [a, b, c] = await Promise.all([0, 1, 2].map(() => connect('127.0.0.1', server.port, 'g', null)));
  if (!a || !b || !c) throw new Error('no channels');
  for (const ch of [a, b, c]) await ch.rpc(tuple(atom('join'), atom('room')));
  t.is(await a.rpc(tuple(atom('count'), atom('room'))), 3);
  await a.rpc(tuple(atom('publish'), atom('room'), 'to all'));
  for (const ch of [a, b, c]) t.is(await ch.receive({ timeout: 2000 }), 'to all');
  await a.rpc(tuple(atom('others'), atom('room'), 'not to a'));
  for (const ch of [b, c]) t.is(await ch.receive({ timeout: 2000 }), 'not to a');
  await b.rpc(tuple(atom('leave'), atom('room')));
  await c.close();
  t.is(await a.rpc(tuple(atom('count'), atom('room'))), 1, 'b left, c disconnected');
  await a.rpc(tuple(atom('publish'), atom('room'), 'after'));
  t.is(await a.receive({ timeout: 2000 }), 'after');
  await Promise.all([a.close(), b.close()]);
});

/** A chat client (examples/irc/chat.mjs) as its own process; `saw` waits for a line it prints. */
function chat(
  nick: string,
  port: number,
): { child: ChildProcessWithoutNullStreams; saw: (p: RegExp) => Promise<void> } {
  const child = spawn(process.execPath, ['examples/irc/chat.mjs', nick, 'lobby', String(port)]);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  child.stdout.on('data', (c: Buffer) => {
    lines.push(...String(c).split('\n'));
    for (const w of waiters.splice(0)) w();
  });
  const saw = async (p: RegExp): Promise<void> => {
    while (!lines.some((l) => p.test(l))) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { child, saw };
}

/** Two chat clients, one on each port: they hear each other join, talk, and leave. */
async function chatAcross(portA: number, portB: number): Promise<void> {
  const ann = chat('ann', portA);
  await ann.saw(/joined lobby as ann/);
  const bob = chat('bob', portB);
  await bob.saw(/joined lobby as bob/);
  await ann.saw(/\[lobby\] bob joined/);
  bob.child.stdin.write('hello from bob\n');
  await Promise.all([ann.saw(/\[lobby\] bob: hello from bob/), bob.saw(/\[lobby\] bob: hello from bob/)]);
  ann.child.stdin.write('hi bob\n');
  await bob.saw(/\[lobby\] ann: hi bob/);
  bob.child.kill('SIGKILL');
  await ann.saw(/\[lobby\] bob left/);
  ann.child.stdin.end();
  await new Promise((resolve) => ann.child.once('exit', resolve));
}

const EXAMPLES = path.resolve('examples/lib_chan.conf');

test('IRC lite across the two processes of one server: the chat reaches both', async (t) => {
  const s = await serve([EXAMPLES], { CHAN_PROCESSES: '2', CHAN_STORE: `lmdb:${tempDir()}` });
  t.teardown(() => s.child.kill('SIGKILL'));
  await s.line(/every process is listening/);
  await chatAcross(s.port, s.port);
  const workers = new Set(
    s.lines
      .filter((l) => /"msg":"connection opened"/.test(l) && /"service":"irc"/.test(l))
      .map((l) => /"worker":(\d+)/.exec(l)?.[1]),
  );
  t.is(workers.size, 2, 'the two chat clients were served by two processes');
});

if (hasRedis) {
  test('IRC lite across two servers sharing one Redis: the chat reaches both', async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const config = loadConfigFile(EXAMPLES, { env: { CHAN_PORT: '0' } });
    const servers = await Promise.all([0, 1].map(() => startServer({ ...config, store: redis.url })));
    t.teardown(() => Promise.all(servers.map((s) => s.close())));
    await chatAcross(servers[0]?.port ?? 0, servers[1]?.port ?? 0);
    t.pass();
  });
  test('what anyone publishes on the Redis channel that is not a broadcast of ours is dropped: the servers carry on', async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const servers = await Promise.all([0, 1].map(() => testServer([service('g', grouped)], { store: redis.url })));
    t.teardown(() => Promise.all(servers.map((s) => s.close())));
    const [a, b] = await Promise.all(servers.map((s) => connect('127.0.0.1', s.port, 'g', null)));
    if (!a || !b) throw new Error('no channels');
    await a.rpc(tuple(atom('join'), atom('room')));
    const { Redis } = await import('ioredis');
    const raw = new Redis(redis.url);
    t.teardown(() => raw.disconnect());
    const codec = msgpackCodec({ maxDepth: 8 });
    const envelope = (payload: Buffer): Buffer => codec.encode(['someone', 'g', termKey(atom('room')), payload], 0);
    for (const junk of [
      Buffer.from([0xc1]),
      Buffer.alloc(200_000, 0x91),
      envelope(Buffer.alloc(200_000, 0x91)),
      envelope(Buffer.from([0xc1])),
      codec.encode(['not', 'an', 'envelope'], 0),
    ])
      await raw.publish('libchan:groups', junk);
    await b.rpc(tuple(atom('publish'), atom('room'), 'after the junk'));
    t.is(await a.receive({ timeout: 5000 }), 'after the junk');
    await Promise.all([a.close(), b.close()]);
  });
} else {
  console.log('groups across servers skipped: redis-server is not installed');
  test.skip('IRC lite across two servers sharing one Redis (redis-server not installed)', () => {});
}

test('a broadcast from elsewhere that is not a term within the limits is dropped and logged; members get the next good one', (t) => {
  let deliver: (b: Broadcast) => void = () => {};
  const bus: GroupBus = {
    send() {},
    receive(d) {
      deliver = d;
    },
    close: async () => {},
  };
  const { logger, lines } = capturedLog();
  const got: unknown[] = [];
  const member = {
    push: (x: unknown) => got.push(x) > 0,
    onClose: () => () => {},
  };
  new Groups(bus, logger, { maxDepth: 32, maxFrameSize: 1 << 20 }).of('s').join(atom('room'), member);
  const to = (payload: Uint8Array): Broadcast => ({
    origin: 'elsewhere',
    service: 's',
    group: termKey(atom('room')),
    payload,
  });
  const codec = msgpackCodec({ maxDepth: 32 });
  t.notThrows(() => deliver(to(Buffer.from([0xc1])))); // not MessagePack
  t.notThrows(() => deliver(to(Buffer.alloc(200_000, 0x91)))); // arrays in arrays, 200,000 deep
  t.notThrows(() => deliver(to(codec.encode([Buffer.alloc(10)], 0).subarray(0, 5)))); // cut short
  // A 1 MiB list of empty maps: 67 MB once decoded, over 8 x the frame limit.
  const maps = Buffer.concat([Buffer.from([0xdd, 0x00, 0x10, 0x00, 0x00]), Buffer.alloc(1 << 20, 0x80)]);
  t.notThrows(() => deliver(to(maps)));
  deliver(to(codec.encode('fine', 0)));
  t.deepEqual(got, ['fine']);
  // Logged once for the four (at most a line per 10 s, with how many).
  t.is(lines.filter((l) => /a group broadcast from elsewhere was dropped/.test(l)).length, 1);
});

test('group publishes waiting on a channel are held to 8 MiB: past it a publish is dropped and logged, room comes back as the channel takes them, and one publish alone always goes', (t) => {
  const { logger, lines } = capturedLog();
  const backlog = new GroupBacklog(logger, 'the other processes');
  let sent = 0;
  const taken: (() => void)[] = [];
  const channel = (done: () => void): void => {
    sent++;
    taken.push(done);
  };
  const m: GroupMessage = { t: 'group', origin: 'o', service: 's', group: 'g', payload: 'x'.repeat(1024 * 1024) };
  const size = groupMessageSize(m);
  for (let i = 0; i < 10; i++) backlog.send(size, channel);
  t.is(sent, 7, 'seven of about 1 MiB fit in 8 MiB');
  t.is(backlog.waiting, 7 * (1024 * 1024 + 3));
  t.true(lines.some((l) => /a group publish to the other processes was dropped/.test(l)));
  for (const done of taken.splice(0)) {
    done();
    done(); // a channel that calls back twice frees once
  }
  t.is(backlog.waiting, 0);
  // Larger than the bound, with nothing waiting: it goes (the bound is on what waits behind it).
  backlog.send(9 * 1024 * 1024, channel);
  t.is(sent, 8);
  backlog.send(size, channel);
  t.is(sent, 8, 'not behind it');
});

test('joining and leaving keeps nothing behind: no close watcher per cycle, no empty group', (t) => {
  const watchers = new Set<() => void>();
  const member = {
    push: () => true,
    onClose(fn: () => void) {
      watchers.add(fn);
      return () => watchers.delete(fn);
    },
  };
  const groups = new Groups(null, silentLogger, { maxDepth: 32, maxFrameSize: 1 << 20 });
  const room = groups.of('s');
  for (let i = 0; i < 1000; i++) {
    room.join(tuple(atom('room'), i), member);
    t.true(room.leave(tuple(atom('room'), i), member));
  }
  t.is(watchers.size, 0);
  room.join(atom('lobby'), member);
  room.join(atom('lobby'), member); // twice: one membership, one watcher
  t.is(watchers.size, 1);
  for (const w of [...watchers]) w(); // the connection ends
  t.is(room.localMembers(atom('lobby')), 0);
  t.false(room.leave(atom('lobby'), member));
});
