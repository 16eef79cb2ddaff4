/**
 * The servers' own work per message, without sockets: `npm run bench -- --inproc`.
 *
 * End to end on a small VM, a message's trip through the kernel (the reads, the writes, the wake-ups) costs about as
 * much as either server's JavaScript, and the VM's noise hides a change of a tenth of a microsecond; where system calls
 * are cheap and each side has a CPU of its own, the servers' own work is what bounds one-way and pipelined rates. Here
 * each server reads from one end of an in-memory pair of streams (src/memory-transport.ts) and frames encoded
 * beforehand are written straight into the other end, so the figure is the server's work per message (its stream,
 * framing, decoding, handler and store; for lookups, its answers encoded, gathered and written) and little else:
 *
 * - lib-chan: `startServer` on the memory transport, the name server on `memory:`, reached by the client library,
 *   which authenticates and then hands its end over (its own reading stopped, heartbeats off);
 * - the ceiling: bench/ceiling.ts's own server code (`serveConnection`) on one end of a pair;
 * - the null server: frames read (lib-chan's frame parser) and nothing done with them, but each lookup answered with
 *   bytes made beforehand, one write per chunk read: what the feeding end and the streams cost, which both figures
 *   above include (bringing a ratio of them nearer 1); its figure is given, and the ratio without it.
 *
 * Scenarios, on `chan bench`'s data (100-byte values, 10,000 keys):
 *
 *   cast      one-way stores in 64 KiB chunks; a lookup at the end, answered only after every store before it
 *   pipeline  lookups in batches of 64 (one chunk of 64 frames), each batch's 64 answers read before the next is
 *             written (`chan bench`'s pipeline keeps 64 in flight all the time: here the batches take turns)
 *   sequential  lookups one at a time, each answered before the next is written (`rpc -c 1` without the kernel)
 *
 * Each figure comes from a process of its own (`one`), pinned where `npm run bench` pins servers, rounds alternating
 * between the servers with the order reversed every other round; medians. A figure is wall time per message, the
 * feeding end's share included (writing a chunk; for lookups, counting the answers' frames).
 *
 *   node dist/bench/inproc.js [--rounds 5] [--ms 1000] [--scenario cast,pipeline,sequential]
 *   node dist/bench/inproc.js one lib-chan|ceiling|null SCENARIO MS      (one figure, as JSON: what the rounds run)
 */
import { execFile } from 'node:child_process';
import { cpus } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { connect } from '../src/client.js';
import { decode, encode } from '../src/codec/msgpack.js';
import { FRAME_HEADER_BYTES, FrameParser, sealFrame } from '../src/frame.js';
import { memoryTransport, duplexPair } from '../src/memory-transport.js';
import { startServer } from '../src/server.js';
import { Atom, Tuple, isTuple } from '../src/term/model.js';
import type { Transport } from '../src/transport.js';
import { frameOf, serveConnection, unpackFrame } from './ceiling.js';
import { PIN, ROOT, median, spread, taskset } from './common.js';

const KEYS = 10_000;
const VALUE = 'x'.repeat(100);
const WINDOW = 64;
const CHUNK = 64 * 1024;
const SCENARIOS = ['cast', 'pipeline', 'sequential'] as const;
type Scenario = (typeof SCENARIOS)[number];
type Kind = 'lib-chan' | 'ceiling' | 'null';
const KINDS: readonly Kind[] = ['null', 'ceiling', 'lib-chan'];

/** One server on one end of a pair, and what feeds it from the other. */
interface FedServer {
  /** The feeding end: what is written here, the server reads. */
  end: Duplex;
  /** Frames encoded for this server: a one-way store of the cast key i; a lookup (an rpc) of the key i, or of the
   * cast key i. */
  cast(i: number): Buffer;
  lookup(id: number, i: number, castKey?: boolean): Buffer;
  /** A store of the key i that is answered (an rpc): fills the store before the lookups. */
  store(id: number, i: number): Buffer;
  /** Whether an answer's payload is a lookup's that found the value. */
  found(payload: Buffer): boolean;
}

/** The keys looked up (`{k, N}`) and the keys cast to (`{c, N}`), as chan bench names them. */
const LOOKUP_KEY = new Atom('k');
const CAST_KEY = new Atom('c');
const STORE = new Atom('store');
const LOOKUP = new Atom('lookup');

/** A lib-chan frame as the client library sends it: the message, encoded with room for the length, sealed. */
function chanFrame(m: unknown): Buffer {
  return Buffer.from(sealFrame(encode(m, 64, FRAME_HEADER_BYTES)));
}

async function libChan(): Promise<FedServer> {
  const memory = memoryTransport();
  let end: Duplex | null = null;
  // The client library connects and authenticates as it would over TCP; its end of the pair is kept.
  const transport: Transport = {
    name: memory.name,
    listen: memory.listen,
    connect: async (host, port, timeout, localAddress) => {
      const c = await memory.connect(host, port, timeout, localAddress);
      end = c.socket;
      return c;
    },
  };
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    store: 'memory:',
    // No pings: the feeder answers none, and counts every frame that comes back as an answer.
    heartbeatInterval: 0,
    transport,
    services: [{ name: 'nameServer', secret: 'bench', module: 'mod_name_server', function: 'start_me_up' }],
  });
  await connect('127.0.0.1', server.port, 'nameServer', 'bench', null, { transport, heartbeatInterval: 0 });
  const socket = end as Duplex | null;
  if (!socket) throw new Error('the client library connected without the memory transport');
  // From here on this end is the feeder's: the client library no longer reads it.
  socket.removeAllListeners('data');
  return {
    end: socket,
    cast: (i) => chanFrame(['cast', new Tuple([STORE, new Tuple([CAST_KEY, i]), VALUE])]),
    lookup: (id, i, castKey) =>
      chanFrame(['rpc', id, new Tuple([LOOKUP, new Tuple([castKey ? CAST_KEY : LOOKUP_KEY, i])])]),
    store: (id, i) => chanFrame(['rpc', id, new Tuple([STORE, new Tuple([LOOKUP_KEY, i]), VALUE])]),
    found: (payload) => {
      const m = decode(payload, 64);
      return Array.isArray(m) && m[0] === 'reply' && isTuple(m[2], 'ok', 2) && m[2].at(1) === VALUE;
    },
  };
}

/** The ceiling's frames, for its server and for the null server. */
function ceilingFrames(end: Duplex): FedServer {
  return {
    end,
    cast: (i) => frameOf([0, 'set', `c:${i}`, VALUE]),
    lookup: (id, i, castKey) => frameOf([id, 'get', `${castKey ? 'c' : 'k'}:${i}`]),
    store: (id, i) => frameOf([id, 'set', `k:${i}`, VALUE]),
    found: (payload) => {
      const m = unpackFrame(payload);
      return Array.isArray(m) && m[1] === VALUE;
    },
  };
}

function ceiling(): FedServer {
  const [end, serverEnd] = duplexPair();
  serveConnection(serverEnd, new Map());
  return ceilingFrames(end);
}

/**
 * Reads frames and does nothing with them, but answers each that asks for an answer (the ceiling's frames: an array
 * whose first element, its id, is not 0, the byte after the array's) with `[1, VALUE]` made beforehand, in one write
 * per chunk read (as the servers gather a turn's answers). What is left: the feeding end and the streams.
 */
function nullServer(): FedServer {
  const [end, serverEnd] = duplexPair();
  const answer = frameOf([1, VALUE]);
  let owed = 0;
  const parser = new FrameParser(Number.POSITIVE_INFINITY, {
    onFrameRange: (bytes, start) => {
      if (bytes[start + 1] !== 0) owed++;
    },
  });
  // Answers side by side, made once (and again only when a chunk owes more): a write is a view of them.
  let answers = Buffer.concat(Array.from({ length: WINDOW }, () => answer));
  serverEnd.on('data', (chunk: Buffer) => {
    parser.push(chunk);
    if (owed === 0) return;
    const bytes = owed * answer.length;
    if (bytes > answers.length) answers = Buffer.concat(Array.from({ length: owed }, () => answer));
    serverEnd.write(answers.subarray(0, bytes));
    owed = 0;
  });
  return ceilingFrames(end);
}

/** Counts the frames that come back on the feeding end; `until(n)` resolves once n more have come. */
class Answers {
  private seen = 0;
  private goal = 0;
  private wake: (() => void) | null = null;
  /** The last answer's frame: where it lies (kept without a view made per frame). */
  private lastBytes: Buffer = Buffer.alloc(0);
  private lastStart = 0;
  private lastEnd = 0;

  constructor(end: Duplex) {
    const parser = new FrameParser(Number.POSITIVE_INFINITY, {
      onFrameRange: (bytes, start, end) => {
        this.lastBytes = bytes;
        this.lastStart = start;
        this.lastEnd = end;
        if (++this.seen >= this.goal && this.wake) {
          const w = this.wake;
          this.wake = null;
          w();
        }
      },
    });
    end.on('data', (chunk: Buffer) => parser.push(chunk));
    // A server that ends the connection (a frame it refused) would leave the feeder waiting: it fails instead.
    end.once('close', () => {
      process.stderr.write('inproc: the server closed the connection\n');
      process.exit(1);
    });
  }

  /** The last answer's payload (a copy). */
  last(): Buffer {
    return Buffer.from(this.lastBytes.subarray(this.lastStart, this.lastEnd));
  }

  /** How many answers have come. */
  get count(): number {
    return this.seen;
  }

  until(n: number): Promise<void> {
    this.goal = this.seen + n;
    if (this.seen >= this.goal) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }
}

/** Writes `chunk`, waiting for the reader when the pair's buffer is full. */
function write(end: Duplex, chunk: Buffer): Promise<void> | undefined {
  return end.write(chunk) ? undefined : new Promise((resolve) => end.once('drain', () => resolve()));
}

/** Chunks of at most {@link CHUNK} bytes, each of whole frames. */
function chunks(frames: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let batch: Buffer[] = [];
  let bytes = 0;
  for (const f of frames) {
    if (bytes + f.length > CHUNK && batch.length > 0) {
      out.push(Buffer.concat(batch));
      batch = [];
      bytes = 0;
    }
    batch.push(f);
    bytes += f.length;
  }
  if (batch.length > 0) out.push(Buffer.concat(batch));
  return out;
}

/** Runs `scenario` against a fresh server of `kind` for `ms` after as long a warm-up; ns per message. */
async function measureOne(kind: Kind, scenario: Scenario, ms: number): Promise<number> {
  const fed = kind === 'lib-chan' ? await libChan() : kind === 'ceiling' ? ceiling() : nullServer();
  const answers = new Answers(fed.end);
  // The store filled as the end-to-end scenarios fill it: every key looked up or cast to is there.
  // Ids 1 to 10,000, each used once: every store may still wait for its answer when the next arrives.
  const fill = chunks(Array.from({ length: KEYS }, (_, i) => fed.store(i + 1, i)));
  const filled = answers.until(KEYS);
  for (const c of fill) await write(fed.end, c);
  await filled;
  let round: () => Promise<number>;
  const window = scenario === 'sequential' ? 1 : WINDOW;
  if (scenario === 'cast') {
    const casts = chunks(Array.from({ length: KEYS }, (_, i) => fed.cast(i)));
    // The last key cast to, looked up: one connection keeps order, so its answer comes after every store.
    const last = fed.lookup(1, KEYS - 1, true);
    round = async () => {
      for (const c of casts) await write(fed.end, c);
      const answered = answers.until(1);
      await write(fed.end, last);
      await answered;
      return KEYS;
    };
  } else {
    // Lookups of keys spread over the store, `window` to a batch, ids 1 to `window` (each answered before it is used
    // again).
    const batches = Array.from({ length: (KEYS / window) | 0 }, (_, b) =>
      Buffer.concat(Array.from({ length: window }, (_, j) => fed.lookup(j + 1, (b * 7919 + j * 104_729) % KEYS))),
    );
    round = async () => {
      for (const b of batches) {
        const answered = answers.until(window);
        await write(fed.end, b);
        await answered;
      }
      return batches.length * window;
    };
  }
  // Every answer counted: the fill's, then a round's (one for the casts, one a lookup), no more and no fewer.
  let expected = KEYS;
  const perRound = scenario === 'cast' ? 1 : ((KEYS / window) | 0) * window;
  const fail = (why: string): never => {
    process.stderr.write(`inproc: ${kind} ${scenario}: ${why}\n`);
    process.exit(1);
  };
  const timed = async (budget: number): Promise<number> => {
    let n = 0;
    const t0 = process.hrtime.bigint();
    let elapsed = 0;
    while (elapsed < budget * 1e6) {
      n += await round();
      elapsed = Number(process.hrtime.bigint() - t0);
      expected += perRound;
      // Each round's last answer is checked, and the count (outside the time that counts would be better; its share
      // is tiny).
      if (!fed.found(answers.last())) fail("a lookup's answer did not carry the value stored");
      if (answers.count !== expected) fail(`${answers.count} answers where ${expected} were asked for`);
    }
    return elapsed / n;
  };
  await timed(ms / 2);
  const figure = await timed(ms);
  // An answer too many would have come by now.
  await new Promise((resolve) => setImmediate(resolve));
  if (answers.count !== expected) fail(`${answers.count} answers where ${expected} were asked for`);
  return figure;
}

function runOne(kind: Kind, scenario: Scenario, ms: number): Promise<number> {
  const argv = [
    ...taskset(PIN?.server),
    process.execPath,
    path.join(ROOT, 'dist/bench/inproc.js'),
    'one',
    kind,
    scenario,
    String(ms),
  ];
  return new Promise((resolve, reject) =>
    execFile(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: 20 * ms + 15_000 }, (err, out, errOut) =>
      err ? reject(new Error(`${kind} ${scenario}: ${errOut || err.message}`)) : resolve(JSON.parse(out) as number),
    ),
  );
}

function usage(why: string): never {
  process.stderr.write(`inproc: ${why}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'one') {
    const [kind, scenario, ms] = rest;
    if (!KINDS.includes(kind as Kind) || !SCENARIOS.includes(scenario as Scenario) || !(Number(ms) > 0))
      usage('one lib-chan|ceiling|null cast|pipeline|sequential MS');
    process.stdout.write(`${JSON.stringify(await measureOne(kind as Kind, scenario as Scenario, Number(ms)))}\n`);
    process.exit(0);
  }
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: 'string', default: '5' },
      ms: { type: 'string', default: '1000' },
      scenario: { type: 'string', default: SCENARIOS.join(',') },
    },
  });
  const rounds = Number(values.rounds);
  const ms = Number(values.ms);
  const scenarios = values.scenario.split(',');
  for (const s of scenarios) {
    if (!SCENARIOS.includes(s as Scenario)) usage(`--scenario: ${s} is not one of ${SCENARIOS.join(', ')}`);
  }
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 1000))
    usage(`--rounds ${values.rounds}: a whole number from 1 to 1000`);
  if (!(Number.isInteger(ms) && ms >= 10 && ms <= 60_000))
    usage(`--ms ${values.ms}: a whole number of milliseconds from 10 to 60000`);
  const rows: string[] = [];
  for (const s of scenarios as Scenario[]) {
    const ns: Record<Kind, number[]> = { 'lib-chan': [], ceiling: [], null: [] };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? KINDS : [...KINDS].reverse();
      for (const kind of order) {
        ns[kind].push(await runOne(kind, s, ms));
        process.stderr.write(`${s} round ${r + 1}/${rounds}: ${kind}\n`);
      }
    }
    const libChanNs = median(ns['lib-chan']);
    const ceilingNs = median(ns.ceiling);
    const nullNs = median(ns.null);
    const ratios = ns.ceiling.map((c, i) => c / (ns['lib-chan'][i] as number));
    const beyond = ns.ceiling.map(
      (c, i) => (c - (ns.null[i] as number)) / ((ns['lib-chan'][i] as number) - (ns.null[i] as number)),
    );
    const range = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
    rows.push(
      `| ${s} | ${nullNs.toFixed(0)} (${spread(ns.null)}) | ${ceilingNs.toFixed(0)} (${spread(ns.ceiling)}) | ${libChanNs.toFixed(0)} (${spread(ns['lib-chan'])}) | **${(ceilingNs / libChanNs).toFixed(2)}** (${range(ratios)}) | **${((ceilingNs - nullNs) / (libChanNs - nullNs)).toFixed(2)}** (${range(beyond)}) |`,
    );
  }
  const pinned = PIN ? `pinned to CPU ${PIN.server}` : 'unpinned (one CPU)';
  process.stdout.write(
    [
      `${cpus()[0]?.model ?? '?'}, Node ${process.version}; each figure a process of its own, ${pinned}; ${rounds} round${rounds === 1 ? '' : 's'} of ${ms} ms (after ${ms / 2} ms of warm-up), alternating, medians (range)`,
      '',
      '| scenario | null server ns/message | ceiling ns/message | lib-chan ns/message | rate ratio (rounds) | ratio beyond the null server (rounds) |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows,
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`inproc: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
