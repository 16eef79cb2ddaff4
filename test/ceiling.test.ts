/**
 * The memory ceiling, end to end: `chan serve` on the shipped config, in a process whose V8 heap is capped small
 * (--max-old-space-size), with its queues and store limits lowered to fit, under a mix of every attack on memory at
 * once, beside a neighbour. It must not die, its resident memory must stay under the ceiling docs/SECURITY.md gives
 * for these settings, and the neighbour must keep its answers.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import test from 'ava';
import { connect, type Channel } from '../src/client.js';
import { atom, tuple } from '../src/term/index.js';
import { serve } from './cli-helpers.js';
import { RawClient, bystander, tappedConnect } from './helpers.js';

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
    socket.pause();
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
  clearInterval(sampler);
  t.is(exited, undefined, 'the server died');
  t.deepEqual(wrong, []);
  t.true(answers > 50, `${answers} answers`);
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
