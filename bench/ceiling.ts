/**
 * The ceiling for `npm run bench`: the fastest plain Node server and client we know how to write for the workloads of
 * `chan bench`, so that lib-chan is measured against what a program without lib-chan could reach, not against a weak
 * copy of itself. Plain `net` (or `tls`), 4-byte big-endian length frames, msgpackr on plain arrays, string keys in a
 * `Map`, and writes gathered per turn of the event loop with lib-chan's early flush (16 frames answered or waited on, or
 * 64 KiB of any), so that a pipelining peer can start on the first answers while the rest are being made. No
 * authentication, no limits, no heartbeats, no close frames: everything lib-chan does beyond this is what its ratio
 * to the ceiling pays for.
 *
 * The messages, all plain arrays:
 *   [id, 'get', key]         answered [id, value] or [id, null]
 *   [id, 'set', key, value]  answered [id, true]
 *   [0, 'set', key, value]   one way: not answered
 *   [id, 'hello']            answered [id, 'ok'] (the connect and idle scenarios' handshake)
 *
 *   node dist/bench/ceiling.js serve [--tls DIR]            prints {"port": N} once it listens (DIR: server.pem, server-key.pem)
 *   node dist/bench/ceiling.js load --port N [--ca FILE] [--scenario rpc,pipeline,cast,connect,idle] [-d MS] [-c 1,16]
 *                                   [-w 64] [--size 100] [--keys 10000] [--idle N] [--idle-hold MS] [--server-pid PID]
 *                                   prints the results as chan bench --json does (the same scenario names)
 */
import { readFileSync, realpathSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Packr, Unpackr } from 'msgpackr';
import {
  Meter,
  connectScenario,
  idleScenario,
  parseIdleHold,
  type LoadSettings,
  type ScenarioResult,
} from '../src/bench/load.js';
// lib-chan's own early flush and slab size, so that both sides of every ratio gather their writes alike.
import { SLAB_BYTES } from '../src/codec/msgpack.js';
import { extendsRun, runOf } from '../src/frame.js';
import { EARLY_FLUSH_BYTES, EARLY_FLUSH_FRAMES } from '../src/mm.js';

const MAX_FRAME = 1 << 20;

const packr = new Packr({ useRecords: false, structuredClone: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true });

/** A connection: a TCP or TLS socket, or one end of an in-memory pair (bench/inproc.ts). */
type Socket = Duplex;

/**
 * Frames are copied into slabs (lib-chan's size), one after another, a slab never written twice: a turn's frames lie
 * end to end and leave as one write, as lib-chan's do.
 */
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabUsed = 0;

/** `m` framed: in the slab where it is small, else in a buffer of its own. */
function slabFrame(m: unknown[]): Buffer {
  const body = packr.pack(m);
  const n = 4 + body.length;
  if (n >= SLAB_BYTES / 2) return framed(body, Buffer.allocUnsafe(n));
  if (SLAB_BYTES - slabUsed < n) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const frame = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += n;
  return framed(body, frame);
}

/** `body` with its 4-byte length before it, written into `frame` (4 bytes longer than it). */
function framed(body: Buffer, frame: Buffer): Buffer {
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/**
 * One end of a connection: frames in (to `onFrame`, synchronously, in order), frames out gathered per turn with an
 * early flush, a run of frames that lie end to end written as one. Used by both the server and the load generator.
 */
class Wire {
  private rest: Buffer | null = null;
  private corked = false;
  private pending = 0;
  private gatherFirst: Buffer | null = null;
  private gatherBytes = 0;

  constructor(
    readonly socket: Socket,
    private readonly onFrame: (m: unknown[]) => void,
  ) {
    if (socket instanceof net.Socket) socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.read(chunk));
  }

  private read(chunk: Buffer): void {
    let buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at);
      if (len > MAX_FRAME) {
        this.socket.destroy();
        return;
      }
      if (buf.length - at - 4 < len) break;
      this.onFrame(unpackr.unpack(buf.subarray(at + 4, at + 4 + len)) as unknown[]);
      at += 4 + len;
    }
    buf = buf.subarray(at);
    this.rest = buf.length > 0 ? Buffer.from(buf) : null;
  }

  send(m: unknown[]): void {
    const frame = slabFrame(m);
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    const first = this.gatherFirst;
    if (first !== null && extendsRun(first, this.gatherBytes, frame)) {
      this.gatherBytes += frame.length;
    } else {
      this.emit();
      this.gatherFirst = frame;
      this.gatherBytes = frame.length;
    }
    // A cast (id 0) is one way: it leaves by the bytes or at the turn's end, as lib-chan's do.
    if (
      (m[0] !== 0 && ++this.pending >= EARLY_FLUSH_FRAMES) ||
      this.socket.writableLength + this.gatherBytes >= EARLY_FLUSH_BYTES
    ) {
      // An early flush: what is ready leaves now, and the turn's later frames gather again.
      this.emit();
      this.socket.uncork();
      this.socket.cork();
      this.pending = 0;
    }
  }

  /** Writes the run of frames gathered, as one view. */
  private emit(): void {
    const first = this.gatherFirst;
    if (first === null) return;
    this.gatherFirst = null;
    this.socket.write(runOf(first, this.gatherBytes));
    this.gatherBytes = 0;
  }

  /** @internal */
  flush(): void {
    this.corked = false;
    this.pending = 0;
    this.emit();
    this.socket.uncork();
  }

  /** Ends the connection once what was gathered is written. */
  end(): void {
    this.emit();
    this.socket.end();
  }

  /** Resolves once everything written has been handed to the kernel. */
  drain(): Promise<void> {
    this.emit();
    return new Promise((resolve) => this.socket.write(Buffer.alloc(0), () => resolve()));
  }
}

function uncork(w: Wire): void {
  w.flush();
}

/** A frame's payload as the ceiling reads it. */
export function unpackFrame(payload: Buffer): unknown {
  return unpackr.unpack(payload);
}

/** `m` as the ceiling sends it: a 4-byte length, then msgpackr's bytes. */
export function frameOf(m: unknown[]): Buffer {
  const body = packr.pack(m);
  return framed(body, Buffer.allocUnsafe(4 + body.length));
}

// --- the server ---

/** Serves one connection, its names kept in `store` (the server's one Map). */
export function serveConnection(socket: Socket, store: Map<string, unknown>): void {
  const wire: Wire = new Wire(socket, (m) => {
    if (!Array.isArray(m)) {
      socket.destroy();
      return;
    }
    const [id, op, key, value] = m as [number, string, string, unknown];
    if (op === 'get') wire.send([id, store.get(key) ?? null]);
    else if (op === 'set') {
      store.set(key, value);
      if (id !== 0) wire.send([id, true]);
    } else if (op === 'hello') wire.send([id, 'ok']);
    else socket.destroy();
  });
  socket.on('error', () => socket.destroy());
}

function serve(tlsDir: string | undefined): void {
  const store = new Map<string, unknown>();
  const onSocket = (socket: net.Socket): void => serveConnection(socket, store);
  const server = tlsDir
    ? tls.createServer(
        {
          cert: readFileSync(path.join(tlsDir, 'server.pem')),
          key: readFileSync(path.join(tlsDir, 'server-key.pem')),
          minVersion: 'TLSv1.3',
        },
        onSocket,
      )
    : net.createServer(onSocket);
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`);
  });
}

// --- the load generator ---

/** A client connection: requests by id, each answered through its callback. */
class Client {
  private nextId = 1;
  private readonly waiting = new Map<number, (v: unknown) => void>();
  private readonly wire: Wire;

  private constructor(socket: Socket) {
    this.wire = new Wire(socket, (m) => {
      const id = m[0] as number;
      const f = this.waiting.get(id);
      this.waiting.delete(id);
      f?.(m[1]);
    });
    // A load generator that lost its server with answers owed stops with the reason, rather than wait forever.
    socket.on('error', (err) => fail(`a connection failed: ${err.message}`));
    socket.on('close', () => {
      if (this.waiting.size > 0) fail(`a connection closed with ${this.waiting.size} requests unanswered`);
    });
  }

  static open(port: number, ca: Buffer | undefined): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = ca
        ? tls.connect({ port, host: '127.0.0.1', ca, servername: 'localhost' })
        : net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      const c = new Client(socket);
      // One exchange, as lib-chan's connect ends with its ack: the connection is in use once it is answered.
      socket.once(ca ? 'secureConnect' : 'connect', () => c.call(['hello'], () => resolve(c)));
    });
  }

  /** Sends `[id, ...q]`; `done` gets the answer. */
  call(q: unknown[], done: (v: unknown) => void): void {
    const id = this.nextId++;
    this.waiting.set(id, done);
    this.wire.send([id, ...q]);
  }

  rpc(q: unknown[]): Promise<unknown> {
    return new Promise((resolve) => this.call(q, resolve));
  }

  cast(q: unknown[]): void {
    this.wire.send([0, ...q]);
  }

  drain(): Promise<void> {
    return this.wire.drain();
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.wire.socket.once('close', () => resolve());
      this.wire.end();
    });
  }
}

const key = (prefix: string, i: number): string => `${prefix}:${i}`;

function fail(why: string): never {
  process.stderr.write(`ceiling: ${why}\n`);
  process.exit(1);
}

function idleHoldOrExit(text: string): number {
  const ms = parseIdleHold(text);
  return typeof ms === 'number' ? ms : fail(ms.refused);
}

async function load(port: number, ca: Buffer | undefined, scenarios: string[], s: LoadSettings): Promise<void> {
  const value = 'x'.repeat(s.size);
  const open = (): Promise<Client> => Client.open(port, ca);
  const out: ScenarioResult[] = [];
  if (scenarios.includes('rpc') || scenarios.includes('pipeline')) {
    const c = await open();
    for (let i = 0; i < s.keys; i += 256)
      await Promise.all(
        Array.from({ length: Math.min(256, s.keys - i) }, (_, j) => c.rpc(['set', key('k', i + j), value])),
      );
    await c.close();
  }
  const pick = (): string => key('k', (Math.random() * s.keys) | 0);
  for (const sc of scenarios) {
    if (sc === 'rpc') {
      for (const n of s.connections) {
        const conns = await Promise.all(Array.from({ length: n }, open));
        const m = new Meter(`rpc -c ${n}`, s);
        await Promise.all(
          conns.map(async (c) => {
            while (m.running()) {
              const t0 = performance.now();
              const v = await c.rpc(['get', pick()]);
              m.finished(t0);
              if (v !== value) m.errors++;
            }
          }),
        );
        out.push(m.done());
        await Promise.all(conns.map((c) => c.close()));
      }
    } else if (sc === 'pipeline') {
      const c = await open();
      const m = new Meter(`pipeline -w ${s.window}`, s);
      await new Promise<void>((resolve) => {
        let inFlight = 0;
        const one = (): void => {
          inFlight++;
          const t0 = performance.now();
          c.call(['get', pick()], (v) => {
            m.finished(t0);
            if (v !== value) m.errors++;
            inFlight--;
            if (m.running()) one();
            else if (inFlight === 0) resolve();
          });
        };
        for (let i = 0; i < s.window; i++) one();
      });
      out.push(m.done());
      await c.close();
    } else if (sc === 'cast') {
      const c = await open();
      const m = new Meter('cast', s);
      let last = -1;
      while (m.running()) {
        for (let i = 0; i < 1000; i++) {
          last = (last + 1) % 10_000;
          c.cast(['set', key('c', last), value]);
          m.ops++;
        }
        await c.drain();
      }
      const t0 = performance.now();
      const v = await c.rpc(['get', key('c', last)]);
      m.latency(t0);
      if (v !== value) m.errors++;
      out.push(m.done());
      await c.close();
    } else if (sc === 'connect') {
      for (const n of s.connections) out.push(await connectScenario(open, s, n));
    } else if (sc === 'idle') {
      out.push(await idleScenario(open, s));
    } else {
      throw new Error(`unknown scenario '${sc}'`);
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function main(): void {
  const [mode, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({
    args: rest,
    options: {
      tls: { type: 'string' },
      port: { type: 'string' },
      ca: { type: 'string' },
      scenario: { type: 'string', default: 'rpc,pipeline,cast,connect' },
      d: { type: 'string', default: '3000' },
      c: { type: 'string', default: '1,16' },
      w: { type: 'string', default: '64' },
      size: { type: 'string', default: '100' },
      keys: { type: 'string', default: '10000' },
      idle: { type: 'string', default: '1000' },
      'idle-hold': { type: 'string', default: '1000' },
      'server-pid': { type: 'string' },
    },
  });
  if (mode === 'serve') return serve(values.tls);
  if (mode !== 'load' || values.port === undefined)
    throw new Error('usage: ceiling.js serve [--tls DIR] | load --port N ...');
  const settings: LoadSettings = {
    duration: Number(values.d),
    connections: values.c.split(',').map(Number),
    window: Number(values.w),
    size: Number(values.size),
    keys: Number(values.keys),
    idle: Number(values.idle),
    idleHold: idleHoldOrExit(values['idle-hold']),
    ...(values['server-pid'] !== undefined ? { serverPid: Number(values['server-pid']) } : {}),
  };
  load(
    Number(values.port),
    values.ca === undefined ? undefined : readFileSync(values.ca),
    values.scenario.split(','),
    settings,
  ).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`ceiling: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** Whether this module is the program being run (by any path to it, a link's included), not one imported. */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false; // argv[1] is no file (a module given without its extension, say): not this one
  }
}

// Run as a program, not when bench/inproc.ts imports the server's code.
if (isMain()) main();
