/** Test fixtures: servers on 127.0.0.1 port 0, tiny handlers named by behaviour, and a raw protocol client. */
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { msgpackCodec } from '../src/codec/index.js';
import { FrameParser, frame } from '../src/frame.js';
import { Writable, type Duplex } from 'node:stream';
import { createLogger, type Logger } from '../src/log.js';
import type { ExecutionContext } from 'ava';
import { ChanError } from '../src/errors.js';
import { tcp, type Transport } from '../src/transport.js';
import { connect, type Channel, type ConnectOptions } from '../src/client.js';
import type { ServiceDefinition } from '../src/modules.js';
import { fromWire, toWire, type WireMessage } from '../src/protocol.js';
import type { ChanClosedMessage, Handler, MM } from '../src/runtime.js';
import { startServer, type ChanServer, type ServerOptions } from '../src/server.js';
import { atom, tuple, type Term } from '../src/term/model.js';
import { formatTerm } from '../src/term/print.js';

/** A new folder under the system's temporary one, holding `files` (name to contents). */
export function tempDir(files: Record<string, string | Uint8Array> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'chan-test-'));
  for (const [name, contents] of Object.entries(files)) writeFileSync(path.join(dir, name), contents);
  return dir;
}

export const BOOK_SERVICE: ServiceDefinition = {
  name: 'nameServer',
  secret: 'ABXy45',
  module: 'mod_name_server',
  function: 'start_me_up',
};

/** Answers every message with itself (lib_chan style: one send per message). */
export const echo: Handler = async (mm) => {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    mm.send(m.data);
  }
};

/** Throws on the first message. */
export const crash: Handler = async (mm) => {
  await mm.receive();
  throw new Error('poison message');
};

/** Receives and never answers. */
export const silent: Handler = async (mm) => {
  for await (const m of mm) if (m.type === 'chan_closed') return;
};

export function service(
  name: string,
  handler: Handler,
  secret: string | null = null,
  extra: Partial<ServiceDefinition> = {},
): ServiceDefinition {
  return { name, secret, handler, ...extra };
}

export async function testServer(
  services: ServiceDefinition[],
  options: Partial<ServerOptions> = {},
): Promise<ChanServer> {
  return startServer({ port: 0, host: '127.0.0.1', services, ...options });
}

const codec = msgpackCodec({ maxDepth: 32 });

/**
 * A real client whose socket the test also holds (through the client's `transport` option): to write bytes the client
 * would never send, or to stop reading, after a real handshake.
 */
export async function tappedConnect(
  port: number,
  service: string,
  secret: string | null,
  options: ConnectOptions = {},
): Promise<{ ch: Channel; socket: Duplex }> {
  let socket: Duplex | undefined;
  const transport: Transport = {
    ...tcp,
    async connect(host, p, timeout, localAddress) {
      const opened = await tcp.connect(host, p, timeout, localAddress);
      socket = opened.socket;
      return opened;
    },
  };
  const ch = await connect('127.0.0.1', port, service, secret, null, { ...options, transport });
  if (!socket) throw new Error('the transport was not used');
  return { ch, socket };
}

/** The ChanError a connect (or another call) that must fail rejects with; anything else fails the test. */
export async function refusal(p: Promise<unknown>): Promise<ChanError> {
  const err = await p.then(
    () => {
      throw new Error('it succeeded');
    },
    (e: unknown) => e,
  );
  if (!(err instanceof ChanError)) throw err;
  return err;
}

/** A client that speaks frames by hand: for protocol and hostile-input tests. */
export class RawClient {
  readonly messages: WireMessage[] = [];
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;
  private readonly parser = new FrameParser(1 << 24, (p) => {
    this.messages.push(fromWire(codec.decode(p)));
    for (const w of this.waiters.splice(0)) w();
  });

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.parser.push(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(port: number): Promise<RawClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    return new RawClient(socket);
  }

  /** A connection past the handshake of `service` (which has no secret): its ack is `messages[0]`. */
  static async started(port: number, service: string): Promise<RawClient> {
    const c = await RawClient.open(port);
    c.send({ kind: 'startService', version: 1, service, args: null });
    const ack = await c.next(0);
    if (ack.kind !== 'ack') throw new Error(`${service}: expected ack, got ${ack.kind}`);
    return c;
  }

  send(m: WireMessage): void {
    this.socket.write(frame(codec.encode(toWire(m), 0)));
  }

  sendTerm(t: Term): void {
    this.socket.write(frame(codec.encode(t, 0)));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next message (index-based: messages are never consumed twice); rejects if the socket closes first. */
  async next(index: number): Promise<WireMessage> {
    while (this.messages.length <= index) {
      if (this.socket.destroyed || this.socket.readableEnded)
        throw new Error(`socket closed after ${this.messages.length} messages`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.messages[index] as WireMessage;
  }

  /** Waits for the server to close; returns its close message (if it sent one). */
  async closeMessage(): Promise<Extract<WireMessage, { kind: 'close' }> | undefined> {
    await this.closed;
    const last = this.messages.at(-1);
    return last?.kind === 'close' ? last : undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A term shorthand for tests: atoms as strings prefixed with ':' are tedious; use the parser. */
export { parseTerm as t } from '../src/term/parse.js';

/**
 * A server whose one service, `s`, records how its connection ended; `peer` drives a raw client once it is acked,
 * `before` runs in the handler before it waits for the end. Resolves with the handler's chan_closed message.
 */
export async function handlerEnding(
  teardown: (fn: () => Promise<void>) => void,
  options: Partial<ServerOptions>,
  peer: (c: RawClient, ack: WireMessage) => void | Promise<void>,
  before?: (mm: MM) => Promise<void>,
): Promise<ChanClosedMessage> {
  let resolveEnd!: (m: ChanClosedMessage) => void;
  const ended = new Promise<ChanClosedMessage>((resolve) => (resolveEnd = resolve));
  const h: Handler = async (mm) => {
    await before?.(mm);
    for await (const m of mm) if (m.type === 'chan_closed') resolveEnd(m);
  };
  const server = await testServer([service('s', h)], options);
  teardown(() => server.close());
  const c = await RawClient.open(server.port);
  c.send({ kind: 'startService', version: 1, service: 's', args: null });
  await peer(c, await c.next(0));
  return ended;
}

/**
 * The well-behaved neighbour of the attack tests: stores and looks up on a name server in a loop, checking every
 * answer, until stopped. Reports its answers, the wrong ones, and its slowest store-and-lookup, ms.
 */
export function bystander(ch: Channel): { stop: () => Promise<{ answers: number; wrong: string[]; slowest: number }> } {
  let running = true;
  const wrong: string[] = [];
  let answers = 0;
  let slowest = 0;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const started = Date.now();
      const key = tuple(atom('k'), i % 50);
      await ch.rpc(tuple(atom('store'), key, `v${i}`), { timeout: 1000 });
      const got = formatTerm(await ch.rpc(tuple(atom('lookup'), key), { timeout: 1000 }));
      if (got !== `{ok,"v${i}"}`) wrong.push(got);
      slowest = Math.max(slowest, Date.now() - started);
      answers++;
      await new Promise((r) => setImmediate(r));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { answers, wrong, slowest };
    },
  };
}

/**
 * Runs `attack` against a server of `services` (the first must be a name server with the book's secret) while a
 * neighbour uses it; then asserts that every one of the neighbour's answers was right and none took a second.
 */
export async function besideBystander(
  t: ExecutionContext,
  services: ServiceDefinition[],
  options: Partial<ServerOptions>,
  attack: (server: ChanServer) => Promise<void>,
  connectOptions: ConnectOptions = {},
): Promise<void> {
  const server = await testServer(services, options);
  t.teardown(() => server.close());
  const ch = await connect(
    '127.0.0.1',
    server.port,
    services[0]?.name ?? 'nameServer',
    services[0]?.secret ?? null,
    null,
    connectOptions,
  );
  const b = bystander(ch);
  await attack(server);
  const { answers, wrong, slowest } = await b.stop();
  t.deepEqual(wrong, []);
  t.true(answers > 0);
  t.true(slowest < 1000, `slowest answer took ${slowest} ms`);
  await ch.close();
}

/** A list whose growth can be awaited, instead of polled: `until(test)` resolves once `test(items)` holds. */
export class Watched<T> {
  readonly items: T[] = [];
  private readonly waiters = new Set<() => void>();

  push(x: T): void {
    this.items.push(x);
    for (const w of [...this.waiters]) w();
  }

  until(test: (items: readonly T[]) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!test(this.items)) return;
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      check();
    });
  }
}

/** A logger that keeps every line it writes (JSON lines, as `chan serve` writes them), for tests that read the log. */
export function capturedLog(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({
    pretty: false,
    stream: new Writable({
      write: (chunk, _encoding, done) => {
        lines.push(String(chunk));
        done();
      },
    }),
  });
  return { logger, lines };
}

/** A captured log line's own fields, in order: after level, time and pid, without msg. */
export function lineFields(line: Record<string, unknown> | undefined): string[] {
  return Object.keys(line ?? {}).filter((k) => !['level', 'time', 'pid', 'msg'].includes(k));
}

/** What a 'connection closed' line adds to the connection's fields, in order. */
export const CLOSED_FIELDS = ['reason', 'by', 'ms', 'framesIn', 'framesOut', 'bytesIn', 'bytesOut'];

/**
 * What the runs of a model test crossed, over all of them: steps that held two or more, the most held at once, and how
 * often a run emptied after holding two or more (code that keeps one item apart from many crosses both ways).
 */
export class Crossings {
  many = 0;
  peak = 0;
  emptiedAfterMany = 0;

  /** The size after a step of one run; `run.most` is that run's own count (the most held since it was last empty). */
  note(run: { most: number }, size: number): void {
    if (size >= 2) this.many++;
    this.peak = Math.max(this.peak, size);
    if (size > 0) run.most = Math.max(run.most, size);
    else {
      if (run.most >= 2) this.emptiedAfterMany++;
      run.most = 0;
    }
  }
}
