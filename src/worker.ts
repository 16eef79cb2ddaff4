/**
 * Worker isolation, the worker thread's side (see workers.ts for the main thread's): it imports the service's module,
 * runs its `start`, and runs one handler process per connection with the same Mailbox (which runs the handler and
 * ends its process) and the same contracts as on the main thread. What a handler sends is encoded here and posted as a frame; the main
 * thread's middle-man writes it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { decodedSizeLimit, etfCodec, msgpackCodec, type Codec } from './codec/index.js';
import type { CloseReason } from './errors.js';
import { FRAME_HEADER_BYTES, checkFrameSize } from './frame.js';
import type { CloseInfo } from './errors.js';
import { ModuleError, importServiceCode } from './modules.js';
import { LIB_CHAN, type Dialect, type WireMessage } from './protocol.js';
import { ORIGINAL_SERVER } from './original.js';
import { Mailbox, UNLIMITED_MAILBOX, type MailboxOutput, type ServiceContext } from './runtime.js';
import { Groups } from './groups.js';
import { openStore } from './store/index.js';
import { adoptGate } from './store/lmdb-gate.js';
import type { Namespace, Store } from './store/store.js';
import type { FromWorker, ToWorker, WorkerData } from './workers.js';

function noPort(): never {
  throw new Error('worker.js runs only as a worker thread');
}
const port = parentPort ?? noPort();
const data = workerData as WorkerData;
const post = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer ?? []);
const codec = msgpackCodec({ maxDepth: data.maxDepth });
/** How each protocol's connections are encoded: lib-chan's (the main port), the original's (the Erlang port). */
const SPOKEN: Record<Dialect['name'], { codec: Codec; dialect: Dialect }> = {
  'lib-chan': { codec, dialect: LIB_CHAN },
  erlang: { codec: etfCodec({ maxDepth: data.maxDepth }), dialect: ORIGINAL_SERVER },
};
const log = pino(
  { level: data.logLevel, base: { service: data.service } },
  { write: (line: string) => post({ t: 'log', line }) },
);
// As on the main thread under chan serve: a promise nobody awaits is logged, not fatal (docs/PROCESSES.md).
process.on('unhandledRejection', (err) =>
  log.error({ err }, 'a promise nobody awaited was rejected (from a handler?); carrying on'),
);

/** A mailbox's output: posted to the main thread, where the middle-man is. */
class PortOutput implements MailboxOutput {
  closed: CloseInfo | null = null;
  private drains = new Map<number, () => void>();
  private nextDrain = 1;
  mailbox: Mailbox | null = null;

  constructor(
    private readonly conn: number,
    private readonly peerMaxFrameSize: number,
    /** What the connection speaks. */
    readonly spoken: { codec: Codec; dialect: Dialect },
  ) {}

  get dialect(): Dialect {
    return this.spoken.dialect;
  }

  send(m: WireMessage): boolean {
    if (this.closed) return false;
    const t = this.spoken.dialect.toWire(m);
    if (t === undefined) return true;
    const buf = this.spoken.codec.encode(t, FRAME_HEADER_BYTES, decodedSizeLimit(this.peerMaxFrameSize));
    checkFrameSize(buf, this.peerMaxFrameSize);
    const frame = new Uint8Array(buf); // its own ArrayBuffer, which can be handed over without a copy
    // The optional fields only where they say something (no object spread per message on this path).
    const out: Extract<FromWorker, { t: 'out' }> = { t: 'out', conn: this.conn, frame };
    if (m.kind === 'reply') out.id = m.id;
    if (this.spoken.dialect.oneWay(m)) out.oneWay = true;
    post(out, [frame.buffer as ArrayBuffer]);
    return true;
  }

  close(reason: CloseReason, text: string): void {
    if (this.closed) return;
    post({ t: 'close', conn: this.conn, reason, text });
    this.end({ reason, text, by: 'local' });
  }

  end(info: CloseInfo): void {
    if (this.closed) return;
    this.closed = info;
    for (const done of this.drains.values()) done();
    this.drains.clear();
    this.mailbox?.onClosed(info);
  }

  // Back-pressure is counted on the main thread (messages sent here and not yet received).
  pauseReading(): void {}
  resumeReading(): void {}

  drain(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const id = this.nextDrain++;
    return new Promise((resolve) => {
      this.drains.set(id, resolve);
      post({ t: 'drain', conn: this.conn, id });
    });
  }

  drained(id: number): void {
    this.drains.get(id)?.();
    this.drains.delete(id);
  }
}

/** Counts messages the handler has received, reported to the main thread once per turn of the event loop. */
class TookCounter {
  private n = 0;
  constructor(private readonly conn: number) {}
  add(): void {
    if (this.n++ === 0) {
      queueMicrotask(() => {
        post({ t: 'took', conn: this.conn, n: this.n });
        this.n = 0;
      });
    }
  }
}

async function main(): Promise<void> {
  let code;
  let state: unknown;
  try {
    code = await importServiceCode(data.url, data.module, data.function, data.from);
  } catch (err) {
    post({
      t: 'startFailed',
      message: err instanceof Error ? err.message : String(err),
      moduleError: err instanceof ModuleError,
    });
    return;
  }
  const args = codec.decode(data.args);
  let store: Namespace;
  let opened: Store | null = null;
  try {
    // The worker's own handle on the server's store (LMDB and Redis are shared with the main thread; memory: is not:
    // each worker thread keeps its own, as docs/SCALING.md says).
    adoptGate(data.storeGate);
    opened = await openStore(data.storeUrl);
    store = await opened.namespace(data.service);
    state = await code.start?.(args, {
      service: data.service,
      log,
      limits: data.limits,
      store,
      fail: (err: unknown) => post({ t: 'fail', message: err instanceof Error ? err.message : String(err) }),
    });
  } catch (err) {
    await opened?.close().catch(() => {});
    post({ t: 'startFailed', message: err instanceof Error ? err.message : String(err), moduleError: false });
    return;
  }
  const handler = code.handler;
  const groups = new Groups(null, log, data.limits).of(data.service);
  const conns = new Map<number, { out: PortOutput; mailbox: Mailbox }>();
  const ctx = (connLog: typeof log): ServiceContext => ({
    service: data.service,
    limits: data.limits,
    state,
    log: connLog,
    store,
    // Within this worker thread only: groups do not reach other workers or processes from here.
    groups,
  });

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'open': {
        const connLog = log.child({ conn: m.conn, peer: m.peer });
        const out = new PortOutput(m.conn, m.peerMaxFrameSize, SPOKEN[m.protocol]);
        const argsC = codec.decode(m.argsC);
        const mailbox = new Mailbox(out, m.conn, data.service, m.peer, { log: connLog }, UNLIMITED_MAILBOX, null, {
          handler,
          argsC,
          argsS: args,
          ctx: ctx(connLog),
        });
        out.mailbox = mailbox;
        const took = new TookCounter(m.conn);
        mailbox.onReceive = () => took.add();
        conns.set(m.conn, { out, mailbox });
        mailbox.start();
        void mailbox.done.then((exit) => {
          conns.delete(m.conn);
          post(
            exit.ok ? { t: 'exit', conn: m.conn, ok: true } : { t: 'exit', conn: m.conn, ok: false, text: exit.text },
          );
        });
        return;
      }
      case 'in': {
        const c = conns.get(m.conn);
        if (!c) return;
        let msg: WireMessage;
        try {
          const spoken = c.out.spoken;
          msg = spoken.dialect.fromWire(spoken.codec.decode(m.payload));
        } catch {
          return; // the main thread decoded it already; it cannot fail here
        }
        c.mailbox.onMessage(msg);
        return;
      }
      case 'closed': {
        const c = conns.get(m.conn);
        if (m.drop) c?.mailbox.shed(); // cut for holding too much: what the handler has not taken is dropped
        c?.out.end({ reason: m.reason, text: m.text, by: 'peer' });
        return;
      }
      case 'drained':
        conns.get(m.conn)?.out.drained(m.id);
        return;
      case 'ping':
        post({ t: 'pong', seq: m.seq });
        return;
      case 'stop':
        void (async () => {
          try {
            await code.stop?.(state);
          } catch (err) {
            log.error({ err }, 'service stop failed');
          }
          // What the thread's handlers stored is committed, and its connections let go, before it is ended.
          await opened?.close().catch((err: unknown) => log.error({ err }, 'the store did not close cleanly'));
          post({ t: 'stopped' });
        })();
        return;
    }
  });
  post({ t: 'ready' });
}

void main();
