/**
 * Worker isolation, the main thread's side: a service's handlers run in worker threads (`{isolation, worker}`,
 * `{workers, N}`), so that a handler stuck in a CPU loop stops its own worker, not the server.
 *
 * The middle-man stays on the main thread (it owns the socket); each connection's frames go to the worker that runs
 * its handler, as the bytes they arrived as, and the worker's answers come back as encoded frames. A watchdog pings
 * every worker; one that has not answered for `handler_block_timeout` ms is terminated, its connections are closed
 * with `handlerTimeout`, and the supervisor replaces it. A worker that dies of an error closes its connections with
 * `handlerError`. Back-pressure is counted here: a connection with `mailbox_high_water` messages sent to its worker
 * and not yet received by the handler stops being read.
 *
 * Messages between the threads (t is the type):
 *   to a worker:   open {conn, argsC, peer, peerMaxFrameSize, protocol} | in {conn, payload} | closed {conn, reason, text, drop}
 *                  | drained {conn, id} | ping {seq} | stop
 *   from a worker: ready | startFailed {message, moduleError} | out {conn, frame} | close {conn, reason, text} | took {conn, n}
 *                  | drain {conn, id} | exit {conn, ok, text} | pong {seq} | fail {message} | log {line} | stopped
 */
import { Worker } from 'node:worker_threads';
import { msgpackCodec } from './codec/index.js';
import { deadline, startTimedOut } from './deadline.js';
import { HighWater, type FlowLimits } from './flow.js';
import { levelName, type Logger } from './log.js';
import { ModuleError, serviceLimits, type ServiceLimits, type WorkerModule } from './modules.js';
import type { HandlerExit } from './runtime.js';
import type { CloseReason } from './errors.js';
import type { Attachment, ProcessHandle, Runner, SupervisionSettings } from './runner.js';
import type { Term } from './term/model.js';
import type { Dialect, WireMessage } from './protocol.js';
import { RpcClock } from './metrics.js';
import { waitingRpcsCharge, waitingStepCrossed } from './session.js';
import { threadGate, type GateBuffers } from './store/lmdb-gate.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

export type ToWorker =
  | {
      t: 'open';
      conn: number;
      argsC: Uint8Array;
      peer: string;
      peerMaxFrameSize: number;
      /** What the connection speaks: its frames are encoded and decoded so in the worker. */
      protocol: Dialect['name'];
    }
  | { t: 'in'; conn: number; payload: Uint8Array }
  | { t: 'closed'; conn: number; reason: string; text: string; drop: boolean }
  | { t: 'drained'; conn: number; id: number }
  | { t: 'ping'; seq: number }
  | { t: 'stop' };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'startFailed'; message: string; moduleError: boolean }
  /**
   * `id`: the rpc the frame answers, if it is a reply (for the admin port's rpc times); `oneWay`: nobody waits on it
   * (the early flush does not count it).
   */
  | { t: 'out'; conn: number; frame: Uint8Array; id?: number; oneWay?: boolean }
  | { t: 'close'; conn: number; reason: CloseReason; text: string }
  | { t: 'took'; conn: number; n: number }
  | { t: 'drain'; conn: number; id: number }
  | { t: 'exit'; conn: number; ok: boolean; text?: string }
  | { t: 'pong'; seq: number }
  | { t: 'fail'; message: string }
  | { t: 'log'; line: string }
  | { t: 'stopped' };

/** What the pool tells its service. */
export interface PoolEvents {
  /** A worker died or hung: the supervisor decides whether to replace it. */
  failed(why: string): void;
  /** A handler process ended badly. */
  crashed(text: string): void;
}

/** One connection's handler, running in a worker. */
class WorkerLink extends HighWater implements ProcessHandle {
  /** Messages posted to the worker that its handler has not received yet, and what each holds (bytes), oldest first. */
  private inTransit = 0;
  private sizes: number[] = [];
  private sizesHead = 0;
  private bytes = 0;
  private dropped = false;
  private resolveDone!: (exit: HandlerExit) => void;
  readonly done = new Promise<HandlerExit>((resolve) => (this.resolveDone = resolve));
  private finished = false;
  /**
   * Its handler's crash has been counted, at the worker's handlerError close: its exit, or its worker dying, does not
   * count it again.
   */
  crashCounted = false;
  /** Times rpcs for the admin port's metrics (null: not timed). */
  private readonly clock: RpcClock | null;
  /**
   * Rpcs sent to the worker and not answered yet, and what the account is charged for them (as a mailbox charges its
   * own: the worker's mailbox has no account).
   */
  private waitingRpcs = 0;
  private waitingCharged = 0;

  constructor(
    private readonly thread: WorkerThread,
    private readonly a: Attachment,
    limits: FlowLimits,
  ) {
    super(limits, a.mm, a.account?.pressure ?? null);
    this.clock = RpcClock.for(a.observer, thread.pool.service);
  }

  get queued(): number {
    return this.inTransit;
  }

  start(): void {
    try {
      this.thread.open(this.a);
    } catch (err) {
      // Its ArgsC could not be posted (a term the worker's codec cannot carry): the connection ends, and so does this
      // link, which no worker will ever report on.
      const text = `the handler could not be started: ${err instanceof Error ? err.message : String(err)}`;
      this.a.mm.close('handlerError', text);
      this.exit({ ok: false, text });
    }
  }

  /** A frame the worker encoded for the client; `id`: the rpc it answers, if it is a reply. */
  out(frame: Uint8Array, id: number | undefined, oneWay: boolean): void {
    this.a.mm.sendEncoded(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), oneWay);
    if (id === undefined) return;
    this.clock?.answered(id);
    if (this.waitingRpcs > 0 && waitingStepCrossed(--this.waitingRpcs, false)) this.chargeWaiting();
  }

  /** Tells the account a step more or fewer of waiting rpcs (see {@link waitingRpcsCharge}). */
  private chargeWaiting(): void {
    const now = waitingRpcsCharge(this.waitingRpcs);
    if (now === this.waitingCharged) return;
    this.a.account?.inbound(now - this.waitingCharged);
    this.waitingCharged = now;
  }

  close(reason: CloseReason, text: string): void {
    this.a.mm.close(reason, text);
  }

  drain(): Promise<void> {
    return this.a.mm.drain();
  }

  /** A message from the client (the middle-man's sink): its bytes go to the worker, which decodes them again. */
  onMessage(m: WireMessage, size: number, bytes: Buffer, start: number, end: number): void {
    if (m.kind === 'rpc') {
      this.clock?.arrived(m.id);
      if (waitingStepCrossed(++this.waitingRpcs, true)) this.chargeWaiting();
    }
    // A copy of the frame's bytes (they are the socket's chunk's, valid only during this call).
    this.thread.post({ t: 'in', conn: this.a.id, payload: new Uint8Array(bytes.subarray(start, end)) });
    // Held twice over for a while: the bytes on their way, then the decoded message in the worker's mailbox.
    const held = size + (end - start);
    this.sizes.push(held);
    this.bytes += held;
    this.a.account?.inbound(held);
    this.added(++this.inTransit, this.bytes);
  }

  took(n: number): void {
    let released = 0;
    for (let i = 0; i < n && this.sizesHead < this.sizes.length; i++)
      released += this.sizes[this.sizesHead++] as number;
    if (this.sizesHead > 1024 && this.sizesHead * 2 > this.sizes.length) {
      this.sizes = this.sizes.slice(this.sizesHead);
      this.sizesHead = 0;
    }
    this.release(released);
    this.inTransit = Math.max(0, this.inTransit - n);
    this.taken(this.inTransit, this.bytes);
  }

  private release(bytes: number): void {
    this.bytes -= bytes;
    this.a.account?.inbound(-bytes);
  }

  shed(): void {
    // The worker drops them when told of the close (closed, drop): they are no longer counted from now.
    this.dropped = true;
    this.sizes = [];
    this.sizesHead = 0;
    this.release(this.bytes);
  }

  onClosed(info: { reason: string; text: string }): void {
    this.stopWatching();
    this.waitingRpcs = 0; // nothing is answered after the end
    this.chargeWaiting();
    this.thread.post({ t: 'closed', conn: this.a.id, reason: info.reason, text: info.text, drop: this.dropped });
  }

  exit(exit: HandlerExit): void {
    if (this.finished) return;
    this.finished = true;
    this.thread.links.delete(this.a.id);
    // Whatever the handler had not taken is gone with it.
    this.sizes = [];
    this.sizesHead = 0;
    this.release(this.bytes);
    this.resolveDone(exit);
  }
}

/** What a worker thread is started with. */
export interface WorkerData extends WorkerModule {
  service: string;
  /** The service's argsS, encoded. */
  args: Uint8Array;
  maxDepth: number;
  limits: ServiceLimits;
  logLevel: string;
  /** The server's store, which each worker opens for itself. */
  storeUrl: string;
  /** The process's LMDB write gate (store/lmdb-gate.ts), which the thread's writes pass as the main thread's do. */
  storeGate: GateBuffers;
}

/** One worker thread and the connections it serves. */
class WorkerThread {
  readonly links = new Map<number, WorkerLink>();
  private readonly worker: Worker;
  private seq = 0;
  private watchdog: NodeJS.Timeout | null = null;
  /** Why it is being ended on purpose (watchdog or stop), so that its exit is reported right. */
  private ending: { reason: 'handlerTimeout' | 'shutdown'; text: string } | null = null;
  private error: Error | null = null;
  dead = false;
  private wasReady = false;
  readonly ready: Promise<void>;
  private stopped: (() => void) | null = null;

  constructor(
    readonly pool: WorkerPool,
    workerData: Omit<WorkerData, 'storeGate'>,
  ) {
    // The thread's own count in the process's LMDB gate, forgotten once it has exited (whatever it left counted).
    const gate = threadGate();
    this.worker = new Worker(WORKER_URL, { workerData: { ...workerData, storeGate: gate.buffers } });
    this.worker.once('exit', gate.forget);
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          this.wasReady = true;
          this.startWatchdog();
          resolve();
        } else if (m.t === 'startFailed') {
          // It will never serve: out of the rotation now, and ended (a timer its start left would keep it alive).
          this.dead = true;
          void this.worker.terminate();
          reject(m.moduleError ? new ModuleError(m.message) : new Error(m.message));
        } else {
          this.onMessage(m);
        }
      });
      this.worker.on('error', (err) => {
        this.error = err;
        reject(err);
      });
      this.worker.on('exit', (code) => {
        // A thread that ends on its own (code 0) before it was ready had nothing left to run (its start waits on a
        // promise that nothing can settle any more), or its module called process.exit. Said at once, rather than
        // after start_timeout.
        reject(
          new Error(
            code === 0
              ? 'its start did not return: its worker thread ended first, with code 0 (nothing left to run: a promise that can never settle, or process.exit in the module)'
              : `the worker exited with code ${code} before it was ready`,
          ),
        );
        this.onExit(code);
      });
    });
  }

  post(m: ToWorker): void {
    if (!this.dead) this.worker.postMessage(m);
  }

  /**
   * Pings the worker every quarter of handler_block_timeout (at most every second). A ping answered late means the
   * worker's event loop was blocked at least from that ping on; one unanswered for handler_block_timeout ends it. So a
   * worker is terminated after being blocked for between handler_block_timeout and a quarter of it more.
   */
  private startWatchdog(): void {
    const block = this.pool.settings.handlerBlockTimeout;
    this.watchdog = setInterval(
      () => {
        const now = Date.now();
        if (this.unansweredSince !== null && now - this.unansweredSince > block) {
          this.ending = {
            reason: 'handlerTimeout',
            text: `a handler of this service ran for over handler_block_timeout (${block} ms) without yielding`,
          };
          void this.worker.terminate();
          return;
        }
        this.unansweredSince ??= now;
        this.post({ t: 'ping', seq: ++this.seq });
      },
      Math.max(10, Math.min(1000, block >> 2)),
    );
    this.watchdog.unref();
  }

  /** When the oldest ping not answered yet was sent, or null. */
  private unansweredSince: number | null = null;

  private onMessage(m: FromWorker): void {
    const link = 'conn' in m ? this.links.get(m.conn) : undefined;
    switch (m.t) {
      case 'out':
        link?.out(m.frame, m.id, m.oneWay === true);
        return;
      case 'close':
        // A crash is counted here, before its client can hear of it, so that stats() never lags behind the client.
        if (m.reason === 'handlerError') {
          this.pool.events.crashed(m.text);
          if (link) link.crashCounted = true;
        }
        link?.close(m.reason, m.text);
        return;
      case 'took':
        link?.took(m.n);
        return;
      case 'drain':
        if (link) void link.drain().then(() => this.post({ t: 'drained', conn: m.conn, id: m.id }));
        return;
      case 'exit':
        // A crash that closed nothing (the connection had already ended): counted here, as the inline runner's
        // watcher counts it. (A client may close with any word, handlerError included: only the worker's own close
        // counted a crash.)
        if (!m.ok && link && !link.crashCounted) this.pool.events.crashed(m.text ?? '');
        link?.exit(m.ok ? { ok: true } : { ok: false, text: m.text ?? '' });
        return;
      case 'pong':
        this.unansweredSince = null;
        return;
      case 'fail':
        this.pool.events.failed(m.message);
        return;
      case 'log':
        this.pool.relayLog(m.line);
        return;
      case 'stopped':
        this.stopped?.();
        return;
      case 'ready':
      case 'startFailed':
        return;
    }
  }

  private onExit(code: number): void {
    this.dead = true;
    if (this.watchdog) clearInterval(this.watchdog);
    const ending = this.ending ?? {
      reason: 'handlerError' as const,
      text: this.error
        ? `the service's worker failed: ${this.error.message}`
        : `the service's worker exited (code ${code})`,
    };
    for (const link of [...this.links.values()]) {
      link.close(ending.reason, ending.text);
      if (ending.reason !== 'shutdown' && !link.crashCounted) this.pool.events.crashed(ending.text);
      link.exit({ ok: false, text: ending.text });
    }
    this.stopped?.();
    // A worker that never got ready has failed its start, which is reported where it was awaited.
    if (ending.reason !== 'shutdown' && this.wasReady) {
      this.pool.log.error({ err: this.error ?? undefined, code }, ending.text);
      this.pool.events.failed(ending.text);
    }
  }

  attach(a: Attachment): WorkerLink {
    const link = new WorkerLink(this, a, this.pool.flowLimits);
    this.links.set(a.id, link);
    return link;
  }

  /** The handler of connection `a` starts in the worker. */
  open(a: Attachment): void {
    this.post({
      t: 'open',
      conn: a.id,
      argsC: this.pool.encodeTerm(a.argsC),
      peer: a.peer,
      peerMaxFrameSize: a.mm.peerMaxFrameSize,
      protocol: a.mm.dialect.name,
    });
  }

  /** Ends a worker that is not ready yet (its start failed elsewhere, or took too long). */
  abort(): void {
    if (this.wasReady || this.dead) return;
    this.dead = true;
    void this.worker.terminate();
  }

  /** Runs the module's stop in the worker, then ends it; after `timeout` ms it is ended anyway. */
  async stop(timeout: number): Promise<void> {
    if (this.dead) return;
    this.ending = { reason: 'shutdown', text: 'the server is shutting down' };
    const stopped = new Promise<void>((resolve) => (this.stopped = resolve));
    this.post({ t: 'stop' });
    const timer = setTimeout(() => this.stopped?.(), timeout);
    await stopped;
    clearTimeout(timer);
    await this.worker.terminate();
  }
}

export class WorkerPool implements Runner {
  private threads: WorkerThread[] = [];
  private next = 0;
  private readonly codec;
  /** What each worker is started with (the same for every one, and for replacements). */
  private readonly workerData: Omit<WorkerData, 'storeGate'>;
  /** Where every connection's messages in transit stop the reading (mailbox_high_water, ..._bytes). */
  readonly flowLimits: FlowLimits;

  constructor(
    readonly service: string,
    code: WorkerModule,
    args: Term,
    private readonly size: number,
    readonly settings: SupervisionSettings,
    readonly log: Logger,
    readonly events: PoolEvents,
  ) {
    this.codec = msgpackCodec({ maxDepth: settings.maxDepth });
    this.flowLimits = { highWater: settings.mailboxHighWater, highWaterBytes: settings.mailboxHighWaterBytes };
    this.workerData = {
      ...code,
      service,
      args: this.encodeTerm(args),
      maxDepth: settings.maxDepth,
      limits: serviceLimits(settings),
      logLevel: settings.logLevel,
      storeUrl: settings.storeUrl,
    };
  }

  encodeTerm(t: Term): Uint8Array {
    return new Uint8Array(this.codec.encode(t, 0));
  }

  private spawn(): WorkerThread {
    return new WorkerThread(this, this.workerData);
  }

  /** Starts every worker and waits until each has run the module's start (within start_timeout). */
  async start(): Promise<void> {
    this.threads = Array.from({ length: this.size }, () => this.spawn());
    try {
      await this.ready(this.threads);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
  }

  /** Waits for `threads` to be ready, within start_timeout; past it, the ones not ready are ended. */
  private ready(threads: WorkerThread[]): Promise<void> {
    const ms = this.settings.startTimeout;
    return deadline(
      Promise.all(threads.map((t) => t.ready)).then(() => undefined),
      ms,
      () => startTimedOut(ms),
      () => {
        for (const t of threads) t.abort();
      },
    );
  }

  /**
   * Replaces dead workers with new ones (the supervisor's restart); resolves once they are ready, rejects (with the
   * fresh ones ended) if one fails to start or does not start within start_timeout.
   */
  replaceDead(): Promise<void> {
    const fresh: WorkerThread[] = [];
    this.threads = this.threads.map((t) => {
      if (!t.dead) return t;
      const f = this.spawn();
      fresh.push(f);
      return f;
    });
    return this.ready(fresh).catch((err: unknown) => {
      for (const t of fresh) t.abort();
      throw err;
    });
  }

  attach(a: Attachment): ProcessHandle {
    const live = this.threads.filter((t) => !t.dead);
    const thread = live[this.next++ % Math.max(1, live.length)];
    if (!thread) {
      a.mm.close('serviceDown', `service ${this.service} has no worker running`);
      return {
        onMessage: () => {},
        onClosed: () => {},
        start: () => {},
        shed: () => {},
        queued: 0,
        done: Promise.resolve({ ok: false, text: 'no worker' }),
      };
    }
    return thread.attach(a);
  }

  relayLog(line: string): void {
    try {
      const { level, msg, time: _t, pid: _p, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
      this.log[levelName(level as number) ?? 'info'](rest, String(msg ?? ''));
    } catch {
      this.log.info(line);
    }
  }

  async stop(timeout: number): Promise<void> {
    await Promise.all(this.threads.map((t) => t.stop(timeout)));
  }
}
