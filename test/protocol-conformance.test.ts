/**
 * docs/PROTOCOL.md, checked against a running server: one row per case the document states, each sending hand-built
 * bytes at one step of the protocol (the first frame, the response to a challenge, the session) and asserting the word
 * the document promises. A row the server does not meet yet is a `test.failing`, its `failing` text saying why (the
 * document says what should happen; the row turns green when the server does it).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import test from 'ava';
import * as scram from '../src/auth/scram.js';
import { decode, encode } from '../src/codec/msgpack.js';
import { CLOSE_REASONS, ChanError } from '../src/errors.js';
import { FrameParser, frame } from '../src/frame.js';
import { clientHandshake } from '../src/handshake.js';
import { fromWire, toWire, type WireMessage } from '../src/protocol.js';
import type { Handler } from '../src/runtime.js';
import type { ChanServer } from '../src/server.js';
import { isTuple, tuple, type Term } from '../src/term/model.js';
import { parseTerm, termEquals } from '../src/term/index.js';
import { service, testServer } from './helpers.js';
import { fixtures, serverTls } from './tls-fixtures.js';

// ---------------------------------------------------------------------------------------------------------------------
// Building payloads by hand: terms encoded by the codec, and raw bytes where the codec would not write them.

/** Bytes given as they are (hex), where a term would be encoded. */
class Raw {
  constructor(readonly bytes: Buffer) {}
}
type Part = Term | Raw;

const h = (hex: string): Raw => new Raw(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
/** Deep enough for the nesting rows (they must be able to send what the server refuses). */
const SEND_DEPTH = 1000;
const bytesOf = (x: Part): Buffer => (x instanceof Raw ? x.bytes : encode(x, SEND_DEPTH));
const cat = (...parts: Part[]): Raw => new Raw(Buffer.concat(parts.map(bytesOf)));

function arr(...items: Part[]): Raw {
  const n = items.length;
  return cat(n < 16 ? h((0x90 | n).toString(16)) : h(`dc${n.toString(16).padStart(4, '0')}`), ...items);
}

function map(entries: [Part, Part][]): Raw {
  const n = entries.length;
  return cat(n < 16 ? h((0x80 | n).toString(16)) : h(`de${n.toString(16).padStart(4, '0')}`), ...entries.flat());
}

/** A frame holding `x`. */
const f = (x: Part): Buffer => frame(bytesOf(x));
const msg = (...items: Part[]): Buffer => f(arr(...items));
const wire = (m: WireMessage): Buffer => f(toWire(m));
const startService = (fields: Record<string, Part>): Buffer => msg('startService', map(Object.entries(fields)));
const open = (more: Record<string, Part> = {}): Buffer =>
  startService({ version: 1, service: 'open', args: null, ...more });
/** `levels` containers nested in each other, `inner` in the innermost. */
function nest(levels: number, wrap: (x: Term) => Term, inner: Term = 0): Term {
  let t = inner;
  for (let i = 0; i < levels; i++) t = wrap(t);
  return t;
}
const list = (x: Term): Term => [x];
const tup = (x: Term): Term => tuple(x);
const obj = (x: Term): Term => ({ k: x });
const float64 = (x: number): Raw => {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(x, 1);
  return new Raw(b);
};

// ---------------------------------------------------------------------------------------------------------------------
// A peer that records every frame the server sends, and whether the server closed.

class Peer {
  readonly frames: Buffer[] = [];
  readonly messages: WireMessage[] = [];
  readonly closed: Promise<void>;
  private isClosed = false;
  private waiters: (() => void)[] = [];
  private readonly parser = new FrameParser(0xffff_ffff, (p) => {
    this.frames.push(Buffer.from(p));
    this.messages.push(fromWire(decode(p, SEND_DEPTH)));
    this.wake();
  });

  constructor(readonly socket: Duplex) {
    socket.on('data', (chunk: Buffer) => this.parser.push(chunk));
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => {
      this.isClosed = true;
      this.wake();
    });
  }

  static async open(port: number): Promise<Peer> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    return new Peer(socket);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  write(...frames: Buffer[]): void {
    for (const b of frames) this.socket.write(b);
  }

  /** Message `index`, or undefined once the socket has closed without it (or after `ms`). */
  async at(index: number, ms = 10_000): Promise<WireMessage | undefined> {
    const deadline = Date.now() + ms;
    while (this.messages.length <= index && !this.isClosed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, Math.max(1, deadline - Date.now())).unref();
      });
    }
    return this.messages[index];
  }

  /** True once the socket has closed (waits at most `ms`). */
  async closes(ms = 10_000): Promise<boolean> {
    if (this.isClosed) return true;
    await Promise.race([this.closed, new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    return this.isClosed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A message as the rows name it: a close by its reason, ping/pong/reply with their numbers, anything else by its word. */
function describe(m: WireMessage): string {
  switch (m.kind) {
    case 'close':
      return m.reason;
    case 'ping':
    case 'pong':
      return `${m.kind} ${m.n}`;
    case 'reply':
      return `reply ${m.id}`;
    default:
      return m.kind;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The server every row talks to.

const SECRET = 'ABXy45';

/** Echoes what it gets (send: a reply to an rpc, a push for a cast); `{args}` gets ArgsC; `{push, N}` pushes N bytes. */
const echo: Handler = async (mm, argsC) => {
  for await (const m of mm) {
    if (m.type === 'chan_closed') return;
    const d = m.data;
    if (isTuple(d, 'args', 1)) mm.send(argsC);
    else if (isTuple(d, 'push', 2)) mm.push('x'.repeat(Number(d.at(1))));
    else mm.send(d);
  }
};

const silent: Handler = async (mm) => {
  for await (const m of mm) if (m.type === 'chan_closed') return;
};

const SERVICES = [
  service('open', echo),
  service('silent', silent),
  service('secret', echo, SECRET),
  service('a,b=c', echo, SECRET),
  service('cn', echo, null, { allowCn: ['ops'] }),
  service('down', echo, SECRET, { allowCn: ['ops'] }),
];

/** Room for every row at once (they all come from 127.0.0.1), and no lockout from the authFail rows. */
const ROOMY = { maxUnauthenticated: 1000, maxUnauthenticatedPerAddress: 1000, authMaxFailures: 1_000_000 };

let shared: Promise<ChanServer> | null = null;
function server(): Promise<ChanServer> {
  shared ??= testServer(SERVICES, ROOMY).then((s) => {
    const down = s.auth('down')?.service;
    if (down) down.status = 'down';
    return s;
  });
  return shared;
}
test.after.always(async () => (await shared)?.close());

// ---------------------------------------------------------------------------------------------------------------------
// The steps a row starts from.

interface Challenge {
  cnonce: string;
  /** The combined nonce of the challenge. */
  nonce: string;
  clientFirstBare: string;
  serverFirst: string;
  salted: Buffer;
  /** A client-final message: `c=C,r=NONCE` + `ext`, with the proof for it (or `proof` as given). */
  final(o?: { c?: string; nonce?: string; ext?: string; proof?: string }): string;
}

const salted = new scram.SaltedPasswordCache();

async function challenged(c: Peer, serviceName = 'secret'): Promise<Challenge> {
  const cnonce = scram.newNonce();
  const clientFirstBare = scram.clientFirstBare(serviceName, cnonce);
  c.write(startService({ version: 1, service: serviceName, args: null, scram: `n,,${clientFirstBare}` }));
  const m = await c.at(0);
  if (m?.kind !== 'challenge') throw new Error(`expected a challenge, got ${m ? describe(m) : 'nothing'}`);
  const sf = scram.parseServerFirst(m.scram);
  if (!sf) throw new Error('the challenge is not a server-first message');
  const key = await salted.get(SECRET, sf.salt, sf.iterations);
  return {
    cnonce,
    nonce: sf.nonce,
    clientFirstBare,
    serverFirst: m.scram,
    salted: key,
    final({ c = 'biws', nonce = sf.nonce, ext = '', proof } = {}) {
      const withoutProof = `c=${c},r=${nonce}${ext}`;
      const auth = scram.authMessage(clientFirstBare, m.scram, withoutProof);
      return `${withoutProof},p=${proof ?? scram.clientProof(key, auth).toString('base64')}`;
    },
  };
}

type Step = 'first frame' | 'response' | 'session';

interface Row {
  /** The case, as the document states it (with its section). */
  doc: string;
  at: Step;
  /** What is sent at that step (after the challenge: made from it). */
  send: Buffer | Buffer[] | ((ch: Challenge) => Buffer | Buffer[]);
  /**
   * What the server sends back, message by message, comma-separated: a close reason, `ping N`/`pong N`/`reply N`, or
   * another message's word; `nothing` when it closes without a frame.
   */
  expect: string;
  /** The startService of a session row (default: service open, no args). */
  start?: Buffer;
  /** A further check on what came back (the frames' payloads, and the messages): an error text, or undefined. */
  check?: (messages: WireMessage[], frames: Buffer[], ch?: Challenge) => string | undefined;
  /** Set when the server disagrees with the document: why (the row is a test.failing until the server is fixed). */
  failing?: string;
}

/**
 * At most this many rows talk to the server at once: the rows are many, and the test files beside this one measure
 * their own latencies on the same few cores.
 */
const AT_ONCE = 6;
let running = 0;
const queue: (() => void)[] = [];

async function inTurn<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= AT_ONCE) await new Promise<void>((resolve) => queue.push(resolve));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    queue.shift()?.();
  }
}

function runRow(row: Row): Promise<{ got: string; problem: string | undefined }> {
  return inTurn(() => talk(row));
}

async function talk(row: Row): Promise<{ got: string; problem: string | undefined }> {
  const s = await server();
  const c = await Peer.open(s.port);
  try {
    let ch: Challenge | undefined;
    let from = 0;
    if (row.at === 'response') {
      ch = await challenged(c);
      from = 1;
    } else if (row.at === 'session') {
      c.write(row.start ?? open());
      const ack = await c.at(0);
      if (ack?.kind !== 'ack') throw new Error(`expected an ack, got ${ack ? describe(ack) : 'nothing'}`);
      from = 1;
    }
    const frames = typeof row.send === 'function' ? row.send(ch as Challenge) : row.send;
    c.write(...(Array.isArray(frames) ? frames : [frames]));
    const expected = row.expect === 'nothing' ? [] : row.expect.split(', ');
    const got: string[] = [];
    for (let i = from; got.length < expected.length; i++) {
      const m = await c.at(i);
      if (!m) break;
      got.push(describe(m));
      if (m.kind === 'close') break;
    }
    // (when a message was expected, at() has waited already: the connection has closed by now, or it is not going to)
    if (got.length === 0 && !(await c.closes(expected.length === 0 ? 10_000 : 500)))
      got.push('no answer, and the connection is still open');
    else if (got.length === 0) got.push('nothing');
    const last = c.messages.at(-1);
    if (last?.kind === 'close' && !(await c.closes())) got.push('(the server did not close after its close frame)');
    const problem = row.check?.(c.messages.slice(from), c.frames.slice(from), ch);
    return { got: got.join(', '), problem };
  } finally {
    c.destroy();
  }
}

function rows(list: Row[]): void {
  for (const row of list) {
    const name = `${row.at}: ${row.doc} -> ${row.expect}`;
    const body = async (t: import('ava').ExecutionContext): Promise<void> => {
      const { got, problem } = await runRow(row);
      t.is(got, row.expect);
      t.is(problem, undefined);
    };
    if (row.failing) test.failing(`${name} (${row.failing})`, body);
    else test(name, body);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Section 1, frames; section 2, payloads: at the first frame (before the handshake) and in the session.

/** A startService for `open` whose frame is exactly `size` bytes of payload (args padded with a string). */
function openOfSize(size: number): Buffer {
  const base = open({ args: '' }).length - 4; // payload with an empty string (a0)
  // A str 16 header takes 3 bytes instead of the fixstr's 1.
  return open({ args: 'x'.repeat(size - base - 2) });
}

const argsRaw = (hex: string): Buffer => open({ args: h(hex) });

rows([
  {
    doc: '§1 a frame over max_frame_size_unauth (16385 bytes)',
    at: 'first frame',
    send: h('00004001').bytes,
    expect: 'frameTooLarge',
  },
  {
    doc: '§1 a frame of exactly max_frame_size_unauth (16384 bytes)',
    at: 'first frame',
    send: openOfSize(16384),
    expect: 'ack',
  },
  { doc: '§1 a frame of length 0', at: 'first frame', send: h('00000000').bytes, expect: 'protocolError' },
  {
    doc: '§1 a frame over max_frame_size (1048577 bytes) after the ack',
    at: 'session',
    send: h('00100001').bytes,
    expect: 'frameTooLarge',
  },
  {
    doc: '§2 bytes after the value',
    at: 'first frame',
    send: frame(Buffer.concat([open().subarray(4), Buffer.from([0])])),
    expect: 'protocolError',
  },
  { doc: '§2 the byte c1', at: 'first frame', send: f(h('c1')), expect: 'protocolError' },
  { doc: '§2 ext type 3', at: 'first frame', send: argsRaw('d4 03 00'), expect: 'protocolError' },
  { doc: '§2 a timestamp (ext -1)', at: 'first frame', send: argsRaw('d6 ff 00 00 00 00'), expect: 'protocolError' },
  { doc: '§2 invalid UTF-8 in a str', at: 'first frame', send: argsRaw('a2 c3 28'), expect: 'protocolError' },
  { doc: '§2 a surrogate in a str', at: 'first frame', send: argsRaw('a3 ed a0 80'), expect: 'protocolError' },
  { doc: '§2 a str longer than the payload', at: 'first frame', send: argsRaw('d9 ff 61'), expect: 'protocolError' },
  {
    doc: '§2 an array longer than the payload',
    at: 'first frame',
    send: argsRaw('dd ff ff ff ff'),
    expect: 'protocolError',
  },
  {
    doc: '§2 a tuple whose payload is not an array',
    at: 'first frame',
    send: argsRaw('c7 01 02 01'),
    expect: 'protocolError',
  },
  {
    doc: '§2 a tuple with bytes after its array',
    at: 'first frame',
    send: argsRaw('c7 02 02 90 01'),
    expect: 'protocolError',
  },
  {
    doc: '§2 an atom of 255 characters',
    at: 'first frame',
    send: argsRaw(`c7 ff 01 ${'61'.repeat(255)}`),
    expect: 'ack',
  },
  {
    doc: '§2 an atom of 256 characters',
    at: 'first frame',
    send: argsRaw(`c8 01 00 01 ${'61'.repeat(256)}`),
    expect: 'protocolError',
  },
  {
    doc: '§2 an atom of 255 emoji (1,020 bytes)',
    at: 'first frame',
    send: argsRaw(`c8 03 fc 01 ${'f09f9880'.repeat(255)}`),
    expect: 'ack',
  },
  {
    doc: '§2 an atom of 256 emoji',
    at: 'first frame',
    send: argsRaw(`c8 04 00 01 ${'f09f9880'.repeat(256)}`),
    expect: 'protocolError',
  },
  {
    doc: '§2 an atom whose name is not UTF-8',
    at: 'first frame',
    send: argsRaw('c7 01 01 ff'),
    expect: 'protocolError',
  },
  { doc: '§2 an atom as fixext 2', at: 'first frame', send: argsRaw('d5 01 6f 6b'), expect: 'ack' },
  { doc: '§2 a tuple as fixext 1', at: 'first frame', send: argsRaw('d4 02 90'), expect: 'ack' },
  { doc: '§2 a tuple as ext 32', at: 'first frame', send: argsRaw('c9 00 00 00 01 02 90'), expect: 'ack' },
  { doc: '§2 a float 32', at: 'first frame', send: argsRaw('ca 3f c0 00 00'), expect: 'ack' },
  { doc: '§2 a short string as str 32', at: 'first frame', send: argsRaw('db 00 00 00 01 61'), expect: 'ack' },
  {
    doc: '§2 version 1 as int 64 (not the shortest width)',
    at: 'first frame',
    send: open({ version: h('d3 00 00 00 00 00 00 00 01') }),
    expect: 'ack',
  },
  { doc: '§2 version 1 as uint 8', at: 'first frame', send: open({ version: h('cc 01') }), expect: 'ack' },
  {
    doc: '§2 the word as str 8',
    at: 'first frame',
    send: f(
      arr(
        cat(h('d9 0c'), h(Buffer.from('startService').toString('hex'))),
        map([
          ['version', 1],
          ['service', 'open'],
        ]),
      ),
    ),
    expect: 'ack',
  },
  {
    doc: '§2 a decoded size over 8 x max_frame_size_unauth (2100 empty maps)',
    at: 'first frame',
    send: argsRaw(`dc 08 34 ${'80'.repeat(2100)}`),
    expect: 'frameTooLarge',
  },
  {
    doc: '§2 args 31 levels deep (the map is level 1)',
    at: 'first frame',
    send: open({ args: nest(31, list) }),
    expect: 'ack',
  },
  { doc: '§2 args 32 levels deep', at: 'first frame', send: open({ args: nest(32, list) }), expect: 'protocolError' },
  {
    doc: '§2 args with an empty list at level 33',
    at: 'first frame',
    send: open({ args: nest(31, list, []) }),
    expect: 'protocolError',
  },
  { doc: '§2 a key twice in args', at: 'first frame', send: argsRaw('82 a1 61 01 a1 61 02'), expect: 'protocolError' },
  {
    doc: '§2 a key twice in the startService map',
    at: 'first frame',
    send: f(
      arr(
        'startService',
        map([
          ['version', 1],
          ['service', 'open'],
          ['version', 1],
        ]),
      ),
    ),
    expect: 'protocolError',
  },
  {
    doc: '§2 keys "a" (fixstr) and "a" (str 8): the same key',
    at: 'first frame',
    send: argsRaw('82 a1 61 01 d9 01 61 02'),
    expect: 'protocolError',
  },
  {
    doc: '§2 keys 1 and 1 (uint 8): the same key',
    at: 'first frame',
    send: argsRaw('82 01 01 cc 01 02'),
    expect: 'protocolError',
  },
  {
    doc: '§2 keys nil and the atom null: the same key',
    at: 'first frame',
    send: argsRaw('82 c0 01 c7 04 01 6e 75 6c 6c 02'),
    expect: 'protocolError',
  },
  {
    doc: '§2 keys true and the atom true: the same key',
    at: 'first frame',
    send: argsRaw('82 c3 01 c7 04 01 74 72 75 65 02'),
    expect: 'protocolError',
  },
  {
    doc: '§2 keys "a" and <<"a">>: different keys',
    at: 'first frame',
    send: argsRaw('82 a1 61 01 c4 01 61 02'),
    expect: 'ack',
  },
  {
    doc: '§2 keys "a" and the atom a: different keys',
    at: 'first frame',
    send: argsRaw('82 a1 61 01 c7 01 01 61 02'),
    expect: 'ack',
  },
  {
    doc: '§2 keys 1 and 1.0: different keys',
    at: 'first frame',
    send: argsRaw('82 01 01 cb 3f f0 00 00 00 00 00 00 02'),
    expect: 'ack',
  },
  {
    doc: '§2 a map key "__proto__"',
    at: 'first frame',
    send: open({ args: h('81 a9 5f 5f 70 72 6f 74 6f 5f 5f 01') }),
    expect: 'ack',
  },
  {
    doc: '§4 TLS bytes on a plain port',
    at: 'first frame',
    send: h('16 03 01 00 a5 01 00 00 a1 03 03').bytes,
    expect: 'protocolError',
  },
]);

// In the session: nesting counted from the envelope, and what the server writes back (canonical forms).
rows([
  { doc: '§2 32 lists nested in a cast', at: 'session', send: msg('cast', nest(32, list)), expect: 'push' },
  { doc: '§2 33 lists nested in a cast', at: 'session', send: msg('cast', nest(33, list)), expect: 'protocolError' },
  { doc: '§2 32 tuples nested in a cast', at: 'session', send: msg('cast', nest(32, tup)), expect: 'push' },
  { doc: '§2 33 tuples nested in a cast', at: 'session', send: msg('cast', nest(33, tup)), expect: 'protocolError' },
  { doc: '§2 32 maps nested in a cast', at: 'session', send: msg('cast', nest(32, obj)), expect: 'push' },
  { doc: '§2 33 maps nested in a cast', at: 'session', send: msg('cast', nest(33, obj)), expect: 'protocolError' },
  {
    doc: '§2 a map keyed by 31 nested lists (the key at levels 2..32)',
    at: 'session',
    send: msg('cast', map([[nest(31, list), 1]])),
    expect: 'push',
  },
  {
    doc: '§2 a map keyed by 32 nested lists',
    at: 'session',
    send: msg('cast', map([[nest(32, list), 1]])),
    expect: 'protocolError',
  },
  {
    doc: '§2 atoms and binaries at level 32 take no level',
    at: 'session',
    send: msg('cast', nest(31, list, [parseTerm('joe'), Buffer.from('x')])),
    expect: 'push',
  },
  {
    doc: '§2 rpc 1 with 32 lists nested (the id takes no level)',
    at: 'session',
    send: msg('rpc', 1, nest(32, list)),
    expect: 'reply 1',
  },
  {
    doc: '§2 a key twice in a cast',
    at: 'session',
    send: msg('cast', h('82 c7 01 01 61 01 c7 01 01 61 02')),
    expect: 'protocolError',
  },
  {
    doc: '§2 a float 32 is read as a float and written back as float 64',
    at: 'session',
    send: msg('cast', h('ca 3f c0 00 00')),
    expect: 'push',
    check: (_m, fr) =>
      fr[0]?.toString('hex') === '92a470757368cb3ff8000000000000' ? undefined : fr[0]?.toString('hex'),
  },
  {
    doc: '§2 an integer in int 64 is written back in its shortest form',
    at: 'session',
    send: msg('cast', h('d3 00 00 00 00 00 00 00 05')),
    expect: 'push',
    check: (_m, fr) => (fr[0]?.toString('hex') === '92a47075736805' ? undefined : fr[0]?.toString('hex')),
  },
  {
    doc: '§2 an atom as fixext is written back as ext 8',
    at: 'session',
    send: msg('cast', h('d5 01 6f 6b')),
    expect: 'push',
    check: (_m, fr) => (fr[0]?.toString('hex') === '92a470757368c702016f6b' ? undefined : fr[0]?.toString('hex')),
  },
  {
    doc: '§2 a tuple as ext 16 is written back as ext 8',
    at: 'session',
    send: msg('cast', h('c8 00 01 02 90')),
    expect: 'push',
    check: (_m, fr) => (fr[0]?.toString('hex') === '92a470757368c7010290' ? undefined : fr[0]?.toString('hex')),
  },
  {
    doc: '§2 a float 64 1.0 stays a float (written back as float 64)',
    at: 'session',
    send: msg('cast', float64(1)),
    expect: 'push',
    check: (_m, fr) =>
      fr[0]?.toString('hex') === '92a470757368cb3ff0000000000000' ? undefined : fr[0]?.toString('hex'),
  },
]);

// ---------------------------------------------------------------------------------------------------------------------
// Section 3, messages: their shape and their fields.

const argsIs =
  (want: Term) =>
  (m: WireMessage[]): string | undefined => {
    const reply = m.find((x) => x.kind === 'reply');
    return reply?.kind === 'reply' && termEquals(reply.data, want)
      ? undefined
      : `the handler got ${JSON.stringify(reply)}`;
  };

rows([
  { doc: '§3 a payload that is not an array', at: 'first frame', send: f('startService'), expect: 'protocolError' },
  { doc: '§3 an empty array', at: 'first frame', send: f([]), expect: 'protocolError' },
  {
    doc: '§3 a word that is a binary',
    at: 'first frame',
    send: f(
      arr(
        Buffer.from('startService'),
        map([
          ['version', 1],
          ['service', 'open'],
        ]),
      ),
    ),
    expect: 'protocolError',
  },
  {
    doc: '§3 a word that is an atom',
    at: 'first frame',
    send: f(
      arr(
        parseTerm('startService'),
        map([
          ['version', 1],
          ['service', 'open'],
        ]),
      ),
    ),
    expect: 'protocolError',
  },
  { doc: '§3 an unknown word', at: 'first frame', send: msg('bogus', map([])), expect: 'protocolError' },
  {
    doc: '§3 words are case-sensitive',
    at: 'first frame',
    send: msg(
      'startservice',
      map([
        ['version', 1],
        ['service', 'open'],
      ]),
    ),
    expect: 'protocolError',
  },
  {
    doc: '§3 one element too many',
    at: 'first frame',
    send: msg(
      'startService',
      map([
        ['version', 1],
        ['service', 'open'],
      ]),
      1,
    ),
    expect: 'protocolError',
  },
  {
    doc: '§3 a startService whose second element is not a map',
    at: 'first frame',
    send: msg('startService', [1, 'open']),
    expect: 'protocolError',
  },
  {
    doc: '§3 a startService map with a key that is not a string',
    at: 'first frame',
    send: f(
      arr(
        'startService',
        map([
          ['version', 1],
          ['service', 'open'],
          [1, 'x'],
        ]),
      ),
    ),
    expect: 'protocolError',
  },
  {
    doc: '§3 keys in another order, and a key the protocol does not have',
    at: 'first frame',
    send: f(
      arr(
        'startService',
        map([
          ['future', 'x'],
          ['service', 'open'],
          ['version', 1],
        ]),
      ),
    ),
    expect: 'ack',
  },
  {
    doc: '§3 args left out: the handler gets nil',
    at: 'session',
    start: startService({ version: 1, service: 'open' }),
    send: msg('rpc', 1, parseTerm('{args}')),
    expect: 'reply 1',
    check: argsIs(null),
  },
  {
    doc: '§3 args given',
    at: 'session',
    start: open({ args: 'x' }),
    send: msg('rpc', 1, parseTerm('{args}')),
    expect: 'reply 1',
    check: argsIs('x'),
  },
  { doc: '§3 version missing', at: 'first frame', send: startService({ service: 'open' }), expect: 'protocolError' },
  { doc: '§3 version as a string', at: 'first frame', send: open({ version: '1' }), expect: 'protocolError' },
  { doc: '§3 version -1', at: 'first frame', send: open({ version: -1 }), expect: 'protocolError' },
  {
    doc: '§3 version 2^53 (out of range)',
    at: 'first frame',
    send: open({ version: h('cf 00 20 00 00 00 00 00 00') }),
    expect: 'protocolError',
  },
  {
    doc: '§3 version 1.0 (a float)',
    at: 'first frame',
    send: open({ version: float64(1) }),
    expect: 'protocolError',
  },
  { doc: '§3 version 2^53-1', at: 'first frame', send: open({ version: 2 ** 53 - 1 }), expect: 'badVersion' },
  { doc: '§3 service missing', at: 'first frame', send: startService({ version: 1 }), expect: 'protocolError' },
  {
    doc: '§3 service as an atom',
    at: 'first frame',
    send: open({ service: parseTerm('open') }),
    expect: 'protocolError',
  },
  {
    doc: '§3 scram that is not a string (before the service is looked at)',
    at: 'first frame',
    send: open({ scram: 1 }),
    expect: 'protocolError',
  },
  { doc: '§3 maxFrameSize 255', at: 'first frame', send: open({ maxFrameSize: 255 }), expect: 'protocolError' },
  { doc: '§3 maxFrameSize 256', at: 'first frame', send: open({ maxFrameSize: 256 }), expect: 'ack' },
  { doc: '§3 maxFrameSize 4294967295', at: 'first frame', send: open({ maxFrameSize: 4294967295 }), expect: 'ack' },
  {
    doc: '§3 maxFrameSize 4294967296',
    at: 'first frame',
    send: open({ maxFrameSize: 4294967296 }),
    expect: 'protocolError',
  },
  {
    doc: '§3 maxFrameSize as a string',
    at: 'first frame',
    send: open({ maxFrameSize: '1024' }),
    expect: 'protocolError',
  },
  {
    doc: '§3 maxFrameSize 1024.0 (a float)',
    at: 'first frame',
    send: open({ maxFrameSize: float64(1024) }),
    expect: 'protocolError',
  },
  {
    doc: '§3 maxFrameSize 255 for a service that does not exist (the shape first)',
    at: 'first frame',
    send: startService({ version: 1, service: 'nope', maxFrameSize: 255 }),
    expect: 'protocolError',
  },
  { doc: '§3 an rpc id of 0', at: 'session', send: msg('rpc', 0, 'x'), expect: 'protocolError' },
  { doc: '§3 an rpc id of 4294967295', at: 'session', send: msg('rpc', 4294967295, 'x'), expect: 'reply 4294967295' },
  { doc: '§3 an rpc id of 4294967296', at: 'session', send: msg('rpc', 4294967296, 'x'), expect: 'protocolError' },
  { doc: '§3 an rpc id as a string', at: 'session', send: msg('rpc', '1', 'x'), expect: 'protocolError' },
  {
    doc: '§3 an rpc id of 1.0 (a float)',
    at: 'session',
    send: msg('rpc', float64(1), 'x'),
    expect: 'protocolError',
  },
  { doc: '§3 an rpc id of 1.5', at: 'session', send: msg('rpc', 1.5, 'x'), expect: 'protocolError' },
  { doc: '§3 an rpc without its term', at: 'session', send: msg('rpc', 1), expect: 'protocolError' },
  { doc: '§3 a cast with two terms', at: 'session', send: msg('cast', 1, 2), expect: 'protocolError' },
  { doc: '§3 ping 0', at: 'session', send: msg('ping', 0), expect: 'pong 0' },
  { doc: '§3 ping 4294967295', at: 'session', send: msg('ping', 4294967295), expect: 'pong 4294967295' },
  { doc: '§3 ping 4294967296', at: 'session', send: msg('ping', 4294967296), expect: 'protocolError' },
  { doc: '§3 ping -1', at: 'session', send: msg('ping', -1), expect: 'protocolError' },
  { doc: '§3 ping 1.5', at: 'session', send: msg('ping', 1.5), expect: 'protocolError' },
  {
    doc: '§3 ping 2.0 (a float)',
    at: 'session',
    send: msg('ping', float64(2)),
    expect: 'protocolError',
  },
  { doc: '§3 ping "1"', at: 'session', send: msg('ping', '1'), expect: 'protocolError' },
  { doc: '§3 a ping without its number', at: 'session', send: msg('ping'), expect: 'protocolError' },
  {
    doc: '§3 a pong with a float',
    at: 'session',
    send: msg('pong', float64(3)),
    expect: 'protocolError',
  },
  {
    doc: '§3 a close reason of 64 characters, unknown to the server',
    at: 'session',
    send: msg('close', 'w'.repeat(64), 'x'),
    expect: 'nothing',
  },
  {
    doc: '§3 a close reason of 65 characters',
    at: 'session',
    send: msg('close', 'w'.repeat(65), 'x'),
    expect: 'protocolError',
  },
  { doc: '§3 a close reason that is not a string', at: 'session', send: msg('close', 1, 'x'), expect: 'protocolError' },
  {
    doc: '§3 a close text that is not a string',
    at: 'session',
    send: msg('close', 'normal', 1),
    expect: 'protocolError',
  },
  { doc: '§3 a close without its text', at: 'session', send: msg('close', 'normal'), expect: 'protocolError' },
  {
    doc: '§3 a close text of 5000 characters',
    at: 'session',
    send: msg('close', 'normal', 'x'.repeat(5000)),
    expect: 'nothing',
  },
]);

// ---------------------------------------------------------------------------------------------------------------------
// Section 4, the handshake: the server's checks in their order, and the SCRAM rules.

const cf = (user: string, nonce = 'fyko+d2lbbFgONRv9qkxdawL', header = 'n,,'): string =>
  `${header}n=${user},r=${nonce}`;
const toSecret = (scramText: string, more: Record<string, Part> = {}): Buffer =>
  startService({ version: 1, service: 'secret', args: null, scram: scramText, ...more });

/** The challenge answers the client's nonce, adds 24 characters of base64, a salt of 16 bytes, 4096 iterations. */
const goodChallenge =
  (cnonce: string) =>
  (m: WireMessage[]): string | undefined => {
    const c = m[0];
    if (c?.kind !== 'challenge') return 'no challenge';
    const sf = /^r=([^,]+),s=([A-Za-z0-9+/]+={0,2}),i=(\d+)$/.exec(c.scram);
    if (!sf) return `not r=,s=,i=: ${c.scram}`;
    const [, nonce = '', salt = '', iterations] = sf;
    if (!nonce.startsWith(cnonce) || !/^[A-Za-z0-9+/]{22}[A-Za-z0-9+/=]{2}$/.test(nonce.slice(cnonce.length)))
      return `the server nonce is not 24 characters of base64: ${nonce}`;
    if (Buffer.from(salt, 'base64').length !== 16) return 'the salt is not 16 bytes';
    return iterations === '4096' ? undefined : `iterations ${iterations}`;
  };

rows([
  {
    doc: '§4 version 2 for a service that does not exist',
    at: 'first frame',
    send: startService({ version: 2, service: 'nope' }),
    expect: 'badVersion',
  },
  {
    doc: '§4 version 2 with a malformed scram, for a service that does not exist',
    at: 'first frame',
    send: startService({ version: 2, service: 'nope', scram: 'y,,x' }),
    expect: 'badVersion',
  },
  { doc: '§4 version 0', at: 'first frame', send: open({ version: 0 }), expect: 'badVersion' },
  {
    doc: '§4 a service that does not exist, with a scram',
    at: 'first frame',
    send: startService({ version: 1, service: 'nope', scram: cf('nope') }),
    expect: 'badService',
  },
  {
    doc: '§4 service names are case-sensitive',
    at: 'first frame',
    send: startService({ version: 1, service: 'Open' }),
    expect: 'badService',
  },
  {
    doc: '§4 a service that is down, with version 2',
    at: 'first frame',
    send: startService({ version: 2, service: 'down' }),
    expect: 'badVersion',
  },
  {
    doc: '§4 a service that is down (before allow_cn and the secret)',
    at: 'first frame',
    send: startService({ version: 1, service: 'down' }),
    expect: 'serviceDown',
  },
  {
    doc: '§4 a service with allow_cn, without a certificate',
    at: 'first frame',
    send: startService({ version: 1, service: 'cn' }),
    expect: 'badCert',
  },
  {
    doc: '§4 a service with allow_cn, with version 2',
    at: 'first frame',
    send: startService({ version: 2, service: 'cn' }),
    expect: 'badVersion',
  },
  {
    doc: '§4 a service without a secret: ack with no scram, even when one is sent',
    at: 'first frame',
    send: open({ scram: cf('open') }),
    expect: 'ack',
    check: (m) =>
      m[0]?.kind === 'ack' &&
      m[0].scram === undefined &&
      m[0].version === 1 &&
      m[0].maxFrameSize === 1048576 &&
      m[0].heartbeatInterval === 15000
        ? undefined
        : JSON.stringify(m[0]),
  },
  {
    doc: '§4 a service with a secret, no scram',
    at: 'first frame',
    send: startService({ version: 1, service: 'secret' }),
    expect: 'authFail',
  },
  {
    doc: '§4 a client-first message',
    at: 'first frame',
    send: toSecret(cf('secret')),
    expect: 'challenge',
    check: goodChallenge('fyko+d2lbbFgONRv9qkxdawL'),
  },
  {
    doc: '§4 GS2 header y,,',
    at: 'first frame',
    send: toSecret(cf('secret', undefined, 'y,,')),
    expect: 'protocolError',
  },
  {
    doc: '§4 GS2 header p=tls-unique,,',
    at: 'first frame',
    send: toSecret(cf('secret', undefined, 'p=tls-unique,,')),
    expect: 'protocolError',
  },
  {
    doc: '§4 an authorization identity (n,a=secret,)',
    at: 'first frame',
    send: toSecret(cf('secret', undefined, 'n,a=secret,')),
    expect: 'protocolError',
  },
  { doc: '§4 no GS2 header', at: 'first frame', send: toSecret('n=secret,r=abc'), expect: 'protocolError' },
  {
    doc: '§4 a mandatory extension m= first',
    at: 'first frame',
    send: toSecret('n,,m=x,n=secret,r=abc'),
    expect: 'protocolError',
  },
  { doc: '§4 r= before n=', at: 'first frame', send: toSecret('n,,r=abc,n=secret'), expect: 'protocolError' },
  {
    doc: '§4 an extension after the nonce (ignored)',
    at: 'first frame',
    send: toSecret('n,,n=secret,r=abc,x=1'),
    expect: 'challenge',
  },
  {
    doc: '§4 a user name other than the service',
    at: 'first frame',
    send: toSecret(cf('open')),
    expect: 'protocolError',
  },
  { doc: '§4 an empty user name', at: 'first frame', send: toSecret(cf('')), expect: 'protocolError' },
  {
    doc: '§4 a user name escaped as a saslname (a,b=c as a=2Cb=3Dc)',
    at: 'first frame',
    send: startService({ version: 1, service: 'a,b=c', scram: cf('a=2Cb=3Dc') }),
    expect: 'challenge',
  },
  {
    doc: '§4 a user name with = and , not escaped',
    at: 'first frame',
    send: startService({ version: 1, service: 'a,b=c', scram: cf('a,b=c') }),
    expect: 'protocolError',
  },
  {
    doc: '§4 a user name with a bad escape (=2X)',
    at: 'first frame',
    send: startService({ version: 1, service: 'a,b=c', scram: cf('a=2Xb=3Dc') }),
    expect: 'protocolError',
  },
  { doc: '§4 an empty nonce', at: 'first frame', send: toSecret(cf('secret', '')), expect: 'protocolError' },
  {
    doc: '§4 a nonce of 256 characters',
    at: 'first frame',
    send: toSecret(cf('secret', 'n'.repeat(256))),
    expect: 'challenge',
    check: goodChallenge('n'.repeat(256)),
  },
  {
    doc: '§4 a nonce of 257 characters',
    at: 'first frame',
    send: toSecret(cf('secret', 'n'.repeat(257))),
    expect: 'protocolError',
  },
  {
    doc: '§4 a nonce of every allowed character',
    at: 'first frame',
    send: toSecret(cf('secret', '!"#$%&\'()*+-./09:;<=>?@AZ[\\]^_`az{|}~')),
    expect: 'challenge',
  },
  { doc: '§4 a nonce with a space', at: 'first frame', send: toSecret(cf('secret', 'ab cd')), expect: 'protocolError' },
  {
    doc: '§4 a nonce with a character past ASCII',
    at: 'first frame',
    send: toSecret(cf('secret', 'abcé')),
    expect: 'protocolError',
  },
  {
    doc: '§4 a nonce with a control character',
    at: 'first frame',
    send: toSecret(cf('secret', 'ab\tc')),
    expect: 'protocolError',
  },
  {
    doc: '§4 hello as the first frame',
    at: 'first frame',
    send: msg('hello', map([])),
    expect: 'hello, normal',
    check: (m) =>
      m[0]?.kind === 'hello' && m[0].version === 1 && typeof m[0].server === 'string'
        ? undefined
        : JSON.stringify(m[0]),
  },
  {
    doc: '§4 hello with a key the protocol does not have',
    at: 'first frame',
    send: msg('hello', map([['future', 1]])),
    expect: 'hello, normal',
  },
  {
    doc: '§4 hello whose version is not an integer',
    at: 'first frame',
    send: msg('hello', map([['version', 'x']])),
    expect: 'protocolError',
  },
  {
    doc: '§4 hello after a pong (ignored before the ack) is still the first message of the handshake',
    at: 'first frame',
    send: [msg('pong', 1), msg('hello', map([]))],
    expect: 'hello',
  },
  { doc: '§4 ping before the ack', at: 'first frame', send: msg('ping', 1), expect: 'protocolError' },
  { doc: '§4 a pong before the ack is ignored', at: 'first frame', send: [msg('pong', 1), open()], expect: 'ack' },
  { doc: '§4 a cast as the first frame', at: 'first frame', send: msg('cast', 1), expect: 'protocolError' },
  { doc: '§4 an rpc as the first frame', at: 'first frame', send: msg('rpc', 1, 1), expect: 'protocolError' },
  {
    doc: '§4 a response as the first frame',
    at: 'first frame',
    send: msg('response', map([['scram', 'c=biws,r=x,p=x']])),
    expect: 'protocolError',
  },
  {
    doc: '§4 an ack from the client',
    at: 'first frame',
    send: msg(
      'ack',
      map([
        ['version', 1],
        ['maxFrameSize', 1],
      ]),
    ),
    expect: 'protocolError',
  },
  {
    doc: '§4 a close as the first frame: no frame back',
    at: 'first frame',
    send: msg('close', 'normal', 'bye'),
    expect: 'nothing',
  },
  {
    doc: '§1/§9 maxFrameSize 256 holds for the refusal: its close frame fits, its text cut to 53 characters',
    at: 'first frame',
    send: startService({ version: 1, service: 'y'.repeat(100), maxFrameSize: 256 }),
    expect: 'badService',
    check: (m, fr) => {
      const c = m[0];
      if (c?.kind !== 'close') return 'no close';
      return (fr[0]?.length ?? 0) <= 256 && c.text.length === 53
        ? undefined
        : `${fr[0]?.length} bytes, ${c.text.length} characters`;
    },
  },
  {
    doc: '§9 a close text is at most 1024 characters',
    at: 'first frame',
    send: startService({ version: 1, service: 'y'.repeat(100) }),
    expect: 'badService',
    check: (m) => (m[0]?.kind === 'close' && m[0].text.length <= 1024 ? undefined : JSON.stringify(m[0])),
  },
]);

// After the challenge: the client-final message.
rows([
  {
    doc: '§4 the right proof: ack with v=, which checks',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final() }),
    expect: 'ack',
    check: (m, _fr, ch) => {
      const ack = m[0];
      if (ack?.kind !== 'ack' || !ch) return 'no ack';
      const auth = scram.authMessage(ch.clientFirstBare, ch.serverFirst, `c=biws,r=${ch.nonce}`);
      return scram.verifyServerFinal(ch.salted, auth, ack.scram ?? '') ? undefined : `v= does not check: ${ack.scram}`;
    },
  },
  {
    doc: '§4 an extension before the proof (ignored, part of the AuthMessage)',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ ext: ',x=1' }) }),
    expect: 'ack',
  },
  {
    doc: '§4 a wrong proof',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ proof: Buffer.alloc(32, 7).toString('base64') }) }),
    expect: 'authFail',
  },
  {
    doc: '§4 c=eSws (y,,)',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ c: 'eSws' }) }),
    expect: 'protocolError',
  },
  {
    doc: '§4 no c=',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final().replace(/^c=biws,/, '') }),
    expect: 'protocolError',
  },
  {
    doc: '§4 r= another nonce',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ nonce: `${ch.nonce}x` }) }),
    expect: 'protocolError',
  },
  {
    doc: "§4 r= the client's nonce alone",
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ nonce: ch.cnonce }) }),
    expect: 'protocolError',
  },
  {
    doc: '§4 a proof of 31 bytes',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ proof: Buffer.alloc(31).toString('base64') }) }),
    expect: 'protocolError',
  },
  {
    doc: '§4 a proof that is not base64',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final({ proof: '!'.repeat(44) }) }),
    expect: 'protocolError',
  },
  {
    doc: '§4 p= before r=',
    at: 'response',
    send: (ch) => wire({ kind: 'response', scram: ch.final().replace(/^(c=biws),(r=[^,]+),(p=.*)$/, '$1,$3,$2') }),
    expect: 'protocolError',
  },
  {
    doc: '§4 a response whose scram is not a string',
    at: 'response',
    send: msg('response', map([['scram', 1]])),
    expect: 'protocolError',
  },
  { doc: '§4 a cast instead of the response', at: 'response', send: msg('cast', 1), expect: 'protocolError' },
  {
    doc: '§4 a startService instead of the response',
    at: 'response',
    send: toSecret(cf('secret')),
    expect: 'protocolError',
  },
  { doc: '§4 a hello instead of the response', at: 'response', send: msg('hello', map([])), expect: 'protocolError' },
  { doc: '§4 a ping instead of the response', at: 'response', send: msg('ping', 1), expect: 'protocolError' },
  {
    doc: '§4 a pong before the response is ignored',
    at: 'response',
    send: (ch) => [msg('pong', 1), wire({ kind: 'response', scram: ch.final() })],
    expect: 'ack',
  },
]);

// ---------------------------------------------------------------------------------------------------------------------
// Sections 5 and 6, the session.

rows([
  {
    doc: '§5 a cast (echoed by the handler as a push)',
    at: 'session',
    send: msg('cast', parseTerm('{store, joe, "writing a book"}')),
    expect: 'push',
  },
  { doc: '§5 an rpc', at: 'session', send: msg('rpc', 1, parseTerm('{lookup, joe}')), expect: 'reply 1' },
  { doc: '§5 two rpcs', at: 'session', send: [msg('rpc', 2, 'a'), msg('rpc', 1, 'b')], expect: 'reply 2, reply 1' },
  {
    doc: '§5 an rpc id already waiting',
    at: 'session',
    start: startService({ version: 1, service: 'silent' }),
    send: [msg('rpc', 7, 'a'), msg('rpc', 7, 'b')],
    expect: 'protocolError',
  },
  { doc: '§5 a startService in the session', at: 'session', send: open(), expect: 'protocolError' },
  {
    doc: '§5 a response in the session',
    at: 'session',
    send: msg('response', map([['scram', 'x']])),
    expect: 'protocolError',
  },
  { doc: '§5 a hello in the session', at: 'session', send: msg('hello', map([])), expect: 'protocolError' },
  { doc: '§5 a reply from the client', at: 'session', send: msg('reply', 1, 'x'), expect: 'protocolError' },
  { doc: '§5 a push from the client', at: 'session', send: msg('push', 'x'), expect: 'protocolError' },
  {
    doc: '§5 a challenge from the client',
    at: 'session',
    send: msg('challenge', map([['scram', 'x']])),
    expect: 'protocolError',
  },
  {
    doc: '§5 an ack from the client',
    at: 'session',
    send: msg(
      'ack',
      map([
        ['version', 1],
        ['maxFrameSize', 1],
      ]),
    ),
    expect: 'protocolError',
  },
  { doc: '§5 an unknown word in the session', at: 'session', send: msg('bogus', 1), expect: 'protocolError' },
  {
    doc: "§5 an answer over the client's maxFrameSize: {error, {frameTooLarge, Text}}, and the connection carries on",
    at: 'session',
    start: open({ maxFrameSize: 256 }),
    send: [msg('rpc', 1, 'x'.repeat(300)), msg('rpc', 2, 'y')],
    expect: 'reply 1, reply 2',
    check: (m, fr) => {
      const r = m[0];
      if (r?.kind !== 'reply' || !isTuple(r.data, 'error', 2)) return JSON.stringify(r);
      const why = r.data.at(1);
      if (!isTuple(why, 'frameTooLarge', 2) || typeof why.at(1) !== 'string') return JSON.stringify(r.data);
      return fr.every((x) => x.length <= 256) ? undefined : 'a frame over 256 bytes';
    },
  },
  {
    doc: "§5 a push over the client's maxFrameSize is not sent: the handler fails, handlerError",
    at: 'session',
    start: open({ maxFrameSize: 256 }),
    send: msg('cast', parseTerm('{push, 1000}')),
    expect: 'handlerError',
    check: (m) => {
      const c = m[0];
      // The text is cut to fit the client's 256 bytes (53 characters).
      return c?.kind === 'close' && /^message of \d+ bytes is over the peer's max_frame/.test(c.text)
        ? undefined
        : JSON.stringify(c);
    },
  },
  {
    doc: '§6 the same ping number twice',
    at: 'session',
    send: [msg('ping', 7), msg('ping', 7)],
    expect: 'pong 7, pong 7',
  },
  {
    doc: '§6 ping numbers that go down',
    at: 'session',
    send: [msg('ping', 9), msg('ping', 3)],
    expect: 'pong 9, pong 3',
  },
  {
    doc: '§6 a pong that answers no ping is ignored',
    at: 'session',
    send: [msg('pong', 12345), msg('rpc', 1, 'x')],
    expect: 'reply 1',
  },
  {
    doc: '§9 a close from the client: no frame back',
    at: 'session',
    send: msg('close', 'normal', 'bye'),
    expect: 'nothing',
  },
  {
    doc: '§9 frames after a close are ignored',
    at: 'session',
    send: [msg('close', 'normal', 'bye'), msg('rpc', 1, 'x')],
    expect: 'nothing',
  },
]);

// ---------------------------------------------------------------------------------------------------------------------
// Section 4, throttling: what counts, and what a locked-out address gets, at which step. One server, steps in order.

interface Step4 {
  doc: string;
  /** What the step does on a fresh connection; returns the words the server answered with. */
  run: (port: number) => Promise<string>;
  expect: string | RegExp;
}

async function answer(port: number, ...frames: Buffer[]): Promise<string> {
  const c = await Peer.open(port);
  c.write(...frames);
  const got: string[] = [];
  for (let i = 0; ; i++) {
    const m = await c.at(i);
    if (!m) break;
    got.push(m.kind === 'close' ? `${m.reason}: ${m.text}` : describe(m));
    if (m.kind === 'close' || m.kind === 'challenge' || m.kind === 'ack') break;
  }
  c.destroy();
  return got.join(', ') || 'nothing';
}

async function wrongProof(port: number): Promise<string> {
  const c = await Peer.open(port);
  const ch = await challenged(c);
  c.write(wire({ kind: 'response', scram: ch.final({ proof: Buffer.alloc(32).toString('base64') }) }));
  const m = await c.at(1);
  c.destroy();
  return m ? describe(m) : 'nothing';
}

test('§4 throttling: only authFail counts, per address; a locked-out address gets authThrottled at startService and at response', async (t) => {
  const s = await testServer(SERVICES, {
    ...ROOMY,
    authMaxFailures: 2,
    authFailureWindow: 60_000,
    authLockout: 60_000,
  });
  t.teardown(() => s.close());
  // A connection challenged before the lockout, answering after it.
  const early = await Peer.open(s.port);
  const earlyChallenge = await challenged(early);
  const locked = /^authThrottled: too many failed handshakes from 127\.0\.0\.1; try again in \d+ s$/;
  const steps: Step4[] = [
    {
      doc: 'badService does not count',
      run: (p) => answer(p, startService({ version: 1, service: 'nope' })),
      expect: /^badService/,
    },
    {
      doc: 'badService does not count',
      run: (p) => answer(p, startService({ version: 1, service: 'nope' })),
      expect: /^badService/,
    },
    {
      doc: 'badVersion does not count',
      run: (p) => answer(p, toSecret(cf('secret'), { version: 2 })),
      expect: /^badVersion/,
    },
    {
      doc: 'badVersion does not count',
      run: (p) => answer(p, toSecret(cf('secret'), { version: 2 })),
      expect: /^badVersion/,
    },
    {
      doc: 'badCert does not count',
      run: (p) => answer(p, startService({ version: 1, service: 'cn' })),
      expect: /^badCert/,
    },
    {
      doc: 'badCert does not count',
      run: (p) => answer(p, startService({ version: 1, service: 'cn' })),
      expect: /^badCert/,
    },
    {
      doc: 'a malformed SCRAM message does not count',
      run: (p) => answer(p, toSecret(cf('secret', undefined, 'y,,'))),
      expect: /^protocolError/,
    },
    {
      doc: 'a malformed SCRAM message does not count',
      run: (p) => answer(p, toSecret(cf('other'))),
      expect: /^protocolError/,
    },
    { doc: 'so the right proof still gets in', run: (p) => answer(p, open()), expect: 'ack' },
    { doc: 'a wrong proof counts (1 of 2)', run: wrongProof, expect: 'authFail' },
    {
      doc: 'no scram for a service with a secret counts (2 of 2: the failure that locks is still authFail)',
      run: (p) => answer(p, startService({ version: 1, service: 'secret' })),
      expect: /^authFail/,
    },
    { doc: 'locked: startService', run: (p) => answer(p, open()), expect: locked },
    { doc: 'locked: before the version is looked at', run: (p) => answer(p, open({ version: 2 })), expect: locked },
    {
      doc: 'locked: a response as the first frame',
      run: (p) => answer(p, msg('response', map([['scram', 'x']]))),
      expect: locked,
    },
    { doc: 'locked: hello is still answered', run: (p) => answer(p, msg('hello', map([]))), expect: /^hello, normal/ },
    {
      doc: 'locked: a malformed frame is still protocolError',
      run: (p) => answer(p, f(h('c1'))),
      expect: /^protocolError/,
    },
    {
      doc: 'locked: a cast as the first frame is still protocolError',
      run: (p) => answer(p, msg('cast', 1)),
      expect: /^protocolError/,
    },
    {
      doc: 'locked: the response of a connection challenged before the lockout',
      run: async () => {
        early.write(wire({ kind: 'response', scram: earlyChallenge.final() }));
        const m = await early.at(1);
        return m?.kind === 'close' ? `${m.reason}: ${m.text}` : m ? describe(m) : 'nothing';
      },
      expect: locked,
    },
  ];
  for (const step of steps) {
    const got = await step.run(s.port);
    if (typeof step.expect === 'string') t.is(got, step.expect, step.doc);
    else t.regex(got, step.expect, step.doc);
  }
  early.destroy();
});

// ---------------------------------------------------------------------------------------------------------------------
// Section 4, handshake time: from TCP accept (TLS: from the TLS handshake's end) to the ack.

test('§4 handshake_timeout: a silent connection, and one that leaves its challenge unanswered, get timeout; an acked one does not', async (t) => {
  const s = await testServer(SERVICES, { ...ROOMY, handshakeTimeout: 400 });
  t.teardown(() => s.close());
  const started = Date.now();
  const silentPeer = await Peer.open(s.port);
  const challengedPeer = await Peer.open(s.port);
  await challenged(challengedPeer);
  const acked = await Peer.open(s.port);
  acked.write(open());
  t.is((await acked.at(0))?.kind, 'ack');
  const first = await silentPeer.at(0, 3000);
  t.is(first?.kind === 'close' ? first.reason : first?.kind, 'timeout');
  t.true(Date.now() - started >= 380, `closed after ${Date.now() - started} ms`);
  const second = await challengedPeer.at(1, 3000);
  t.is(second?.kind === 'close' ? second.reason : second?.kind, 'timeout');
  await new Promise((r) => setTimeout(r, 200));
  acked.write(msg('ping', 1));
  t.is(describe((await acked.at(1)) ?? { kind: 'push', data: null }), 'pong 1');
  for (const p of [silentPeer, challengedPeer, acked]) p.destroy();
});

// Serial, so that it runs first: making the TLS certificates blocks the process for a moment, which the rows must not
// count against their answers.
test.serial(
  '§4 handshake_timeout on a TLS port runs from the end of the TLS handshake, not from TCP accept',
  async (t) => {
    const s = await testServer(SERVICES, { ...ROOMY, handshakeTimeout: 400, tls: serverTls() });
    t.teardown(() => s.close());
    const raw = net.connect({ host: '127.0.0.1', port: s.port });
    await once(raw, 'connect');
    await new Promise((r) => setTimeout(r, 300)); // TCP accepted; no TLS yet
    const secure = tls.connect({ socket: raw, ca: fixtures().ca.certPem, servername: 'localhost' });
    await once(secure, 'secureConnect');
    const tlsDone = Date.now();
    const p = new Peer(secure);
    const m = await p.at(0, 3000);
    t.is(m?.kind === 'close' ? m.reason : m?.kind, 'timeout');
    const after = Date.now() - tlsDone;
    t.true(after >= 350, `closed ${after} ms after the TLS handshake (from TCP accept it would be about 100)`);
    p.destroy();
  },
);

// ---------------------------------------------------------------------------------------------------------------------
// Section 4, what a client must accept and refuse in the challenge and the ack (lib-chan's client, driven by hand).

interface ClientRow {
  doc: string;
  /** The server-first message to give the client (its nonce is given). */
  challenge: (cnonce: string) => string;
  /** An ack to give after the response (default: one without scram). */
  ack?: WireMessage;
  /** `response` when the client answered the challenge, else the code it refused the server with. */
  expect: string;
  failing?: string;
}

const CNONCE = 'fyko+d2lbbFgONRv9qkxdawL';
const SALT = 'QSXCR+Q6sek8bf92';

const clientRows: ClientRow[] = [
  { doc: 'a valid challenge', challenge: (n) => `r=${n}3rfcNHYJY1ZVvWVs7j,s=${SALT},i=4096`, expect: 'response' },
  { doc: 'an extension after the iterations', challenge: (n) => `r=${n}x,s=${SALT},i=4096,z=1`, expect: 'response' },
  {
    doc: "a nonce that does not start with the client's",
    challenge: () => `r=x${CNONCE},s=${SALT},i=4096`,
    expect: 'badServer',
  },
  { doc: "a nonce that is the client's alone", challenge: (n) => `r=${n},s=${SALT},i=4096`, expect: 'badServer' },
  { doc: '4095 iterations', challenge: (n) => `r=${n}x,s=${SALT},i=4095`, expect: 'badServer' },
  { doc: '1000000 iterations', challenge: (n) => `r=${n}x,s=${SALT},i=1000000`, expect: 'response' },
  { doc: '1000001 iterations', challenge: (n) => `r=${n}x,s=${SALT},i=1000001`, expect: 'badServer' },
  { doc: 'attributes in another order', challenge: (n) => `s=${SALT},r=${n}x,i=4096`, expect: 'badServer' },
  {
    doc: 'a server nonce of 256 characters',
    challenge: (n) => `r=${n}${'s'.repeat(256)},s=${SALT},i=4096`,
    expect: 'response',
  },
  {
    doc: 'an ack without scram after a challenge',
    challenge: (n) => `r=${n}x,s=${SALT},i=4096`,
    ack: { kind: 'ack', version: 1, maxFrameSize: 1024 },
    expect: 'badServer',
  },
  {
    doc: 'a salt of 1025 bytes',
    challenge: (n) => `r=${n}x,s=${Buffer.alloc(1025, 1).toString('base64')},i=4096`,
    expect: 'badServer',
  },
  {
    doc: 'a salt of 1024 bytes',
    challenge: (n) => `r=${n}x,s=${Buffer.alloc(1024, 1).toString('base64')},i=4096`,
    expect: 'response',
  },
  {
    doc: 'an ack with a wrong v=',
    challenge: (n) => `r=${n}x,s=${SALT},i=4096`,
    ack: { kind: 'ack', version: 1, maxFrameSize: 1024, scram: `v=${Buffer.alloc(32).toString('base64')}` },
    expect: 'badServer',
  },
];

for (const row of clientRows) {
  const name = `§4 a client given ${row.doc} -> ${row.expect}`;
  const body = async (t: import('ava').ExecutionContext): Promise<void> => {
    let responded = false;
    const replies: WireMessage[] = [];
    const io = {
      send(m: WireMessage): void {
        if (m.kind === 'startService') replies.push({ kind: 'challenge', scram: row.challenge(CNONCE) });
        if (m.kind === 'response') {
          responded = true;
          replies.push(row.ack ?? { kind: 'close', reason: 'normal', text: 'end of the row' });
        }
      },
      next: async (): Promise<WireMessage> => replies.shift() ?? { kind: 'close', reason: 'normal', text: 'nothing' },
    };
    const got = await clientHandshake(io, { service: 'secret', secret: SECRET, args: null, nonce: CNONCE }).then(
      () => 'accepted',
      (err: unknown) => (err instanceof ChanError ? err.code : String(err)),
    );
    t.is(row.expect === 'response' ? (responded ? 'response' : got) : got, row.expect);
  };
  if (row.failing) test.failing(`${name} (${row.failing})`, body);
  else test(name, body);
}

test('§3 a client refuses an ack of another version, or stating a frame limit under 256, with badServer', async (t) => {
  const acked = (ack: WireMessage): Promise<string> => {
    const io = { send(): void {}, next: async (): Promise<WireMessage> => ack };
    return clientHandshake(io, { service: 'open', secret: null, args: null }).then(
      () => 'accepted',
      (err: unknown) => (err instanceof ChanError ? err.code : String(err)),
    );
  };
  t.is(await acked({ kind: 'ack', version: 1, maxFrameSize: 256 }), 'accepted');
  t.is(await acked({ kind: 'ack', version: 1, maxFrameSize: 255 }), 'badServer');
  t.is(await acked({ kind: 'ack', version: 1, maxFrameSize: 0 }), 'badServer');
  t.is(await acked({ kind: 'ack', version: 2, maxFrameSize: 1024 }), 'badServer');
});

// ---------------------------------------------------------------------------------------------------------------------
// Section 2's tables: the canonical bytes of each term, and the widths by length.

/** The rows of the markdown table that follows `heading` in docs/PROTOCOL.md: first and second cells, unquoted. */
function docTable(heading: RegExp): [string, string][] {
  const lines = readFileSync('docs/PROTOCOL.md', 'utf8').split('\n');
  const start = lines.findIndex((l) => heading.test(l));
  const out: [string, string][] = [];
  let inTable = false;
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('|')) {
      inTable = true;
      const cells = line.split('|').map((c) => c.trim().replace(/^`|`$/g, ''));
      if (cells[1] && cells[2] && !cells[1].startsWith('---')) out.push([cells[1], cells[2]]);
    } else if (inTable) break;
  }
  return out.slice(1); // the header row
}

const termOf = (text: string): Term => (text === 'nil' ? null : parseTerm(text));
const INTEGRAL_FLOAT = /^-?\d+\.0$/;

test('§2 the canonical bytes of docs/PROTOCOL.md are what the encoder writes, and read back as the same terms', (t) => {
  const table = docTable(/These are the canonical bytes/);
  t.true(table.length > 30, `${table.length} rows`);
  for (const [text, hex] of table) {
    const term = termOf(text);
    t.is(encode(term, 33).toString('hex'), hex.replaceAll(' ', ''), text);
    t.true(termEquals(decode(Buffer.from(hex.replaceAll(' ', ''), 'hex'), 33), term), text);
  }
});

test('§2 an integral float (1.0) is a float 64, never an integer', (t) => {
  const rowsOfFloats = docTable(/These are the canonical bytes/).filter(
    ([text]) => INTEGRAL_FLOAT.test(text) && text !== '-0.0',
  );
  t.true(rowsOfFloats.length > 0);
  for (const [text, hex] of rowsOfFloats) {
    t.is(encode(termOf(text), 33).toString('hex'), hex.replaceAll(' ', ''), text);
    t.false(termEquals(decode(Buffer.from(hex.replaceAll(' ', ''), 'hex'), 33), Number.parseInt(text, 10)), text);
  }
});

test('§2 the widths by length: str, bin, array, map, atom and tuple headers', (t) => {
  const header = (term: Term, n: number): string => encode(term, 33).subarray(0, n).toString('hex');
  const cases: [string, Term, string][] = [
    ['str of 31 bytes: fixstr', 'a'.repeat(31), 'bf'],
    ['str of 32 bytes: str 8', 'a'.repeat(32), 'd920'],
    ['str of 255 bytes: str 8', 'a'.repeat(255), 'd9ff'],
    ['str of 256 bytes: str 16', 'a'.repeat(256), 'da0100'],
    ['str of 65535 bytes: str 16', 'a'.repeat(65535), 'daffff'],
    ['str of 65536 bytes: str 32', 'a'.repeat(65536), 'db00010000'],
    ['str of 16 characters, 32 bytes: str 8', 'é'.repeat(16), 'd920'],
    ['bin of 0 bytes: bin 8', Buffer.alloc(0), 'c400'],
    ['bin of 255 bytes: bin 8', Buffer.alloc(255), 'c4ff'],
    ['bin of 256 bytes: bin 16', Buffer.alloc(256), 'c50100'],
    ['bin of 65536 bytes: bin 32', Buffer.alloc(65536), 'c600010000'],
    ['array of 15: fixarray', Array(15).fill(0), '9f'],
    ['array of 16: array 16', Array(16).fill(0), 'dc0010'],
    ['array of 65536: array 32', Array(65536).fill(0), 'dd00010000'],
    ['map of 15: fixmap', Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, 0])), '8f'],
    ['map of 16: map 16', Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, 0])), 'de0010'],
    ['atom of 1 byte: ext 8, not fixext 1', parseTerm('a'), 'c70101'],
    ['atom of 16 bytes: ext 8, not fixext 16', parseTerm('abcdefghijklmnop'), 'c71001'],
    ['atom of 255 bytes: ext 8', parseTerm(`'${'a'.repeat(255)}'`), 'c7ff01'],
    ['atom of 200 characters, 400 bytes: ext 16', parseTerm(`'${'é'.repeat(200)}'`), 'c8019001'],
    ['tuple of 1 byte of payload: ext 8, not fixext 1', parseTerm('{}'), 'c70102'],
    ['tuple of 256 bytes of payload: ext 16', tuple('a'.repeat(253)), 'c8010002'],
    ['tuple of 65537 bytes of payload: ext 32', tuple('a'.repeat(65533)), 'c90001000102'],
  ];
  for (const [doc, term, want] of cases) t.is(header(term, want.length / 2), want, doc);
});

// ---------------------------------------------------------------------------------------------------------------------
// Section 9's table of words: every close reason the code has, and no other.

test('§9 the table of words names every close reason a peer can send, and only those', (t) => {
  const words = docTable(/Here is every word a peer can receive/).map(([w]) => w);
  const sendable = Object.keys(CLOSE_REASONS).filter((w) => w !== 'peerClosed');
  t.deepEqual([...words].sort(), [...sendable].sort());
});
