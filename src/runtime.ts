/**
 * The handler runtime: what a service's handler sees, and how its "process" runs.
 *
 * A handler is `startMeUp(mm, argsC, argsS, ctx)`, an async function whose lifetime is the process. Its mailbox
 * yields, in order, `{type: 'chan', mm, data}` for every message the client sent (lib_chan's `{chan, MM, X}`) and
 * then one `{type: 'chan_closed', mm, reason}` (lib_chan's `{chan_closed, MM}`). It answers with `mm.send(X)`
 * (lib_chan's `MM ! {send, X}`) and ends the conversation with `mm.close()` (`MM ! close`).
 *
 * lib_chan's rule holds: a client's rpc takes the handler's next `send`. Precisely: `send` answers the oldest rpc
 * the handler has received and not yet answered, and, when there is none, is a push. `reply(m, X)` answers the rpc
 * `m` itself, in any order; `push(X)` is never taken for an answer. When the handler returns, the connection ends with reason `normal`; when it
 * throws, with `handlerError` and the error's message (the stack goes to the log only). Nothing a handler does can
 * reach another connection.
 *
 * A handler may also be a behaviour ({@link behaviour}): callbacks whose loop the mailbox runs, as OTP runs a
 * gen_server's: the same process, without a suspended function per connection.
 */
import type { Account } from './budget.js';
import { ChanError, LimitError, type CloseInfo } from './errors.js';
import { HighWater } from './flow.js';
import { Inbox, TAKEN, type ReceiveOptions } from './inbox.js';
import type { Logger } from './log.js';
import type { MessageSink, MiddleMan } from './mm.js';
import type { Dialect, WireMessage } from './protocol.js';
import type { ServiceGroups } from './groups.js';
import type { Namespace } from './store/store.js';
import { RpcAnswers, sessionFault, waitingRpcsCharge, waitingStepCrossed } from './session.js';
import type { RpcClock } from './metrics.js';
import { Atom, Tuple, type Term } from './term/model.js';
import { settling, type Settling } from './settling.js';

/**
 * Where a mailbox sends what its handler says: the middle-man itself when the handler runs on the main thread, a
 * message port to it when the handler runs in a worker (see workers.ts).
 */
export type MailboxOutput = Pick<
  MiddleMan,
  'send' | 'close' | 'closed' | 'pauseReading' | 'resumeReading' | 'drain' | 'dialect'
>;

/** `{chan, MM, X}`: the client sent `data`; `requestId` is set when it was an rpc (it expects an answer). */
export interface ChanMessage {
  type: 'chan';
  mm: MM;
  data: Term;
  requestId?: number;
}

/** `{chan_closed, MM}`: the connection is gone, and why; nothing more will arrive. */
export interface ChanClosedMessage {
  type: 'chan_closed';
  mm: MM;
  reason: CloseInfo['reason'];
  text: string;
}

export type MailboxMessage = ChanMessage | ChanClosedMessage;

/** The handler's side of one connection (lib_chan's MM). */
export interface MM extends AsyncIterable<MailboxMessage> {
  /** This connection's number, as in the server's logs. */
  readonly id: number;
  readonly service: string;
  /** The client's address and port. */
  readonly peer: string;
  /** A logger that names the service, the peer and the connection. */
  readonly log: Logger;
  /**
   * What the client speaks: `lib-chan`, or `erlang` (the original lib_chan protocol, on the server's erlang_port). In
   * the original every message is a cast, and the client takes every term it is sent as the answer to its next rpc: a
   * handler should send nothing that answers no request (docs/ERLANG.md).
   */
  readonly protocol: Dialect['name'];
  /** Answers the oldest unanswered rpc, or pushes when none waits. False if the connection has ended. */
  send(x: unknown): boolean;
  /** Answers the rpc `to`. Throws `usage` if `to` was a cast or is already answered. */
  reply(to: ChanMessage, x: unknown): boolean;
  /** Sends X as a push, never an answer. */
  push(x: unknown): boolean;
  /** Ends the conversation (reason `normal`); the client sees its channel close. */
  close(): void;
  /**
   * Resolves once everything sent has been handed to the network (or the connection has ended). A handler that sends
   * much to a slow client awaits it, or the connection closes with `slowConsumer` past `send_buffer_limit`.
   */
  drain(): Promise<void>;
  /** The next message; rejects with a `timeout` ChanError after `timeout` ms. After the end: `chan_closed` again. */
  receive(options?: ReceiveOptions): Promise<MailboxMessage>;
  /**
   * Runs `fn` once the connection has ended (at once if it has): groups forget a member this way. Returns what takes
   * `fn` back (a member that leaves its group before the end).
   */
  onClose(fn: () => void): () => void;
}

/** The server's limits that a service's code may need to respect (what it may send, what it may keep). */
export interface ServiceLimits {
  /** `max_depth`: the deepest nesting a message may have (an answer wrapped in a tuple takes one level more). */
  maxDepth: number;
  /** `max_frame_size`: the largest frame the server accepts, and (unless a client asks for less) sends. */
  maxFrameSize: number;
  /** `store_max_bytes`: what a store of the service may keep. */
  storeMaxBytes: number;
}

/** What a handler shares with the other handlers of its service. */
export interface ServiceContext<S = unknown> {
  service: string;
  /** The server's limits (max_depth, max_frame_size, store_max_bytes). */
  readonly limits: ServiceLimits;
  /**
   * What the service module's `start(argsS)` returned (the book's `kvs:start()`); undefined without one. After the
   * supervisor restarts the service, this is the new state.
   */
  readonly state: S;
  log: Logger;
  /** The service's own part of the server's store (the `store` option): durable keys and values, both terms. */
  readonly store: Namespace;
  /** Named groups of the service's connections, across the server's processes and the servers sharing its Redis. */
  readonly groups: ServiceGroups;
}

export type Handler<S = unknown> = (mm: MM, argsC: Term, argsS: Term, ctx: ServiceContext<S>) => unknown;

/**
 * A handler written as callbacks, as an Erlang gen_server is: lib-chan runs the process's loop and calls `handle` with
 * each of the client's messages, in order. The process is the same as an async function's (one per connection, its
 * messages one at a time, a throw ends only its own connection), but an idle one holds no suspended function, no
 * promise and no iterator: about 1 KB less per connection (docs/PROCESSES.md). Make the service's handler with
 * {@link behaviour}.
 *
 * `S` is the service's state (ctx.state), `P` the connection's own (what `init` returned).
 */
export interface Behaviour<S = unknown, P = undefined> {
  /**
   * Runs first, with the handler's arguments; what it returns (or resolves with) is the connection's state, handed to
   * every later call. Messages that arrive before it has settled wait in the mailbox. A throw ends the process.
   */
  init?(mm: MM, argsC: Term, argsS: Term, ctx: ServiceContext<S>): P | PromiseLike<P>;
  /**
   * One message from the client (`requestId` set for an rpc: answer it with `mm.send` or `mm.reply`). The next message
   * waits until a promise returned here settles; a throw or a rejection ends the process (`handlerError`).
   */
  handle(m: ChanMessage, mm: MM, ctx: ServiceContext<S>, state: P): unknown;
  /**
   * The connection has ended (lib_chan's `{chan_closed, MM}`): the process ends once this returns, or once a promise
   * returned here settles. Optional.
   */
  closed?(m: ChanClosedMessage, mm: MM, ctx: ServiceContext<S>, state: P): unknown;
}

/**
 * The property of a behaviour's handler that holds its callbacks: a registered symbol, so that a service module that
 * imports another copy of lib-chan than the server's still makes a handler the server knows for one.
 */
const BEHAVIOUR = Symbol.for('lib-chan.behaviour');

/** The callbacks of a handler made by {@link behaviour}, or undefined. */
function behaviourOf(handler: Handler): Behaviour<unknown, unknown> | undefined {
  return (handler as Handler & { [BEHAVIOUR]?: Behaviour<unknown, unknown> })[BEHAVIOUR];
}

/**
 * The handler of a {@link Behaviour}, to name in a service's mfa (or give as its `handler`). On the server's runtime
 * the mailbox calls the callbacks itself; called as a plain function (from a handler of your own, say) it is the
 * equivalent async function: init, then a `for await` over the mailbox that calls `handle` and awaits it, then
 * `closed`.
 */
export function behaviour<S = unknown, P = undefined>(b: Behaviour<S, P>): Handler<S> {
  const handler = async (mm: MM, argsC: Term, argsS: Term, ctx: ServiceContext<S>): Promise<void> => {
    const state = (b.init ? await b.init(mm, argsC, argsS, ctx) : undefined) as P;
    const messages = mm[Symbol.asyncIterator]();
    for (;;) {
      const next = await messages.next();
      if (next.done) return;
      const m = next.value;
      if (m.type === 'chan_closed') {
        await b.closed?.(m, mm, ctx, state);
        return;
      }
      await b.handle(m, mm, ctx, state);
    }
  };
  Object.defineProperty(handler, BEHAVIOUR, { value: b });
  return handler;
}

/** How a handler process starts: its handler, its arguments and its ctx. */
export interface HandlerStart {
  handler: Handler;
  argsC: Term;
  argsS: Term;
  ctx: ServiceContext;
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return typeof (x as PromiseLike<unknown> | null)?.then === 'function';
}

/** A service's limits on its handlers' mailboxes (one object for every connection of the service). */
export interface MailboxLimits {
  /** With this many messages waiting, the socket is no longer read. */
  readonly highWater: number;
  /** With this many bytes of messages (their decoded size) waiting, the socket is no longer read. */
  readonly highWaterBytes: number;
}

/** Limits that never pause (a worker thread's mailboxes: the main thread counts for them). */
export const UNLIMITED_MAILBOX: MailboxLimits = Object.freeze({
  highWater: Number.POSITIVE_INFINITY,
  highWaterBytes: Number.POSITIVE_INFINITY,
});

const ERROR = new Atom('error');

/** Shared by every mailbox nobody has asked to be told of its end (never pushed to: replaced on first use). */
const NO_WATCHERS: (() => void)[] = [];

/** `{error, {Why, Detail}}`: how lib-chan's own services and the runtime answer what they refuse. */
export function errorTerm(why: string, detail: Term): Tuple {
  return new Tuple([ERROR, new Tuple([new Atom(why), detail])]);
}

/**
 * What an rpc is answered with when the handler's answer is over a limit (`badTerm`: nested deeper than max_depth;
 * `frameTooLarge`: over the client's frame or decoded-size limit): `{error, {Code, Text}}`. The rpc fails; the
 * connection carries on. (An answer that is not a term at all, a function say, still throws to the handler.)
 */
export function unsendableAnswer(err: ChanError): Tuple {
  return errorTerm(err.code, err.message);
}

/**
 * The MM given to a handler: a mailbox in front of the middle-man. It is the middle-man's message sink for the whole
 * session (the connection hands it over at accept, as lib_chan's setController does): client messages come straight in.
 */
export class Mailbox extends HighWater implements MM, MessageSink {
  /**
   * The messages waiting for the handler, made with the first that must wait (a behaviour that keeps up, or is idle,
   * never needs one).
   */
  private box: Inbox<MailboxMessage> | null = null;

  private get inbox(): Inbox<MailboxMessage> {
    this.box ??= new Inbox<MailboxMessage>();
    return this.box;
  }
  /** The rpcs waiting for an answer (made with the first rpc or answer: an idle connection has none). */
  private answers: RpcAnswers | null = null;

  private get rpcs(): RpcAnswers {
    this.answers ??= new RpcAnswers();
    return this.answers;
  }
  /** The mailbox's bytes as last told to the account. */
  private reported = 0;

  constructor(
    private readonly middleMan: MailboxOutput,
    readonly id: number,
    readonly service: string,
    readonly peer: string,
    /** Where the logger comes from (made when first needed). */
    private readonly logs: { readonly log: Logger },
    /** Inbound back-pressure: when the socket is no longer read. */
    limits: MailboxLimits,
    /** Where the bytes waiting here are counted (the server's connections; none in a worker thread). */
    private readonly account: Account | null = null,
    /** The handler on this mailbox and its arguments, run by {@link start}. */
    private starting: HandlerStart | null = null,
    /** Told when the handler run by {@link start} has ended (the service's supervisor). */
    private readonly watcher: HandlerWatcher | null = null,
  ) {
    super(limits, middleMan, account?.pressure ?? null);
  }

  /**
   * Runs the handler (until its first await, at once). Its connection calls it once the middle-man's messages come
   * here: whatever the handler does first, a close or a throw included, reaches this mailbox as its own end.
   */
  start(): void {
    const s = this.starting;
    this.starting = null;
    if (!s) return;
    const b = behaviourOf(s.handler);
    if (b) {
      this.behave(b, s);
      return;
    }
    let result: unknown;
    try {
      result = s.handler(this, s.argsC, s.argsS, s.ctx);
    } catch (err) {
      this.handlerEnded({ thrown: err });
      return;
    }
    // Callbacks on the handler's own promise, not an async function awaiting it: an idle connection keeps one
    // suspended function (the handler's), not two.
    this.endWhenSettled(result);
  }

  /** The process ends when `result` settles: normally, or as a crash if it rejects. */
  private endWhenSettled(result: unknown): void {
    Promise.resolve(result).then(
      () => this.handlerEnded(null),
      (err: unknown) => this.handlerEnded({ thrown: err }),
    );
  }

  /** A behaviour's callbacks, while its process runs (null for an async function's process, and once ended). */
  private behaving: Behaviour<unknown, unknown> | null = null;
  /** The behaviour's ctx, and the connection's state (what its init returned). */
  private ctx: ServiceContext | null = null;
  private state: unknown = undefined;
  /** The behaviour is in a call (init, a handle, closed), or waits for one's promise: messages wait in the inbox. */
  private busy = false;

  /** Runs a behaviour's process: its init, then each message as it comes (see {@link pump}). */
  private behave(b: Behaviour<unknown, unknown>, s: HandlerStart): void {
    this.behaving = b;
    this.ctx = s.ctx;
    if (!b.init) return;
    this.busy = true;
    try {
      const state = b.init(this, s.argsC, s.argsS, s.ctx);
      if (isThenable(state)) {
        // Promise.resolve: a thenable of the handler's own settles once, and never within this call.
        Promise.resolve(state).then(
          (settled) => {
            this.state = settled;
            this.resume();
          },
          (err: unknown) => this.behaviourCrashed(err),
        );
        return;
      }
      this.state = state;
    } catch (err) {
      this.behaviourCrashed(err);
      return;
    }
    this.resume();
  }

  /** The behaviour's call has returned: the messages that waited meanwhile go to it. */
  private resume(): void {
    this.busy = false;
    this.pump(undefined);
  }

  private behaviourCrashed(err: unknown): void {
    this.behaving = null;
    this.handlerEnded({ thrown: err });
  }

  /**
   * Hands the behaviour `first` (a message that never waited), then what waits in the inbox, one at a time: a handle
   * that returns a promise holds the rest until it settles. Called with each message and at the end; a call within
   * a call (a handle that closes its connection, say) only queues.
   */
  private pump(first: MailboxMessage | undefined): void {
    const b = this.behaving;
    if (b === null || this.busy) return;
    this.busy = true;
    let m = first;
    try {
      for (;;) {
        if (m === undefined) {
          m = this.box?.shift();
          if (m === undefined) break;
          this[TAKEN](m);
        } else {
          this.received(m);
        }
        if (m.type === 'chan_closed') {
          this.behaving = null;
          const last = b.closed?.(m, this, this.ctx as ServiceContext, this.state);
          if (isThenable(last)) this.endWhenSettled(last);
          else this.handlerEnded(null);
          return;
        }
        const r = b.handle(m, this, this.ctx as ServiceContext, this.state);
        if (isThenable(r)) {
          Promise.resolve(r).then(
            () => this.resume(),
            (err: unknown) => this.behaviourCrashed(err),
          );
          return;
        }
        m = undefined;
      }
    } catch (err) {
      this.behaviourCrashed(err);
      return;
    }
    this.busy = false;
  }

  /**
   * Ends the handler process: the connection is closed (`normal` if the handler returned, `handlerError` with the
   * message if it threw; the crash is logged with its stack), what is left in the mailbox is dropped, and the
   * watcher and {@link done} are told, whatever fails on the way. (A fault of lib-chan's own here becomes an
   * unhandled rejection, as it did when an async function ran the handler: logged, the server carries on.)
   */
  private handlerEnded(crash: { thrown: unknown } | null): void {
    let exit: HandlerExit = { ok: true };
    try {
      if (!crash) {
        try {
          this.middleMan.close('normal', 'the handler returned');
        } catch (err) {
          crash = { thrown: err };
        }
      }
      if (crash) {
        const err = crash.thrown;
        const text = err instanceof Error ? err.message : String(err);
        exit = { ok: false, text };
        this.log.error({ err }, 'handler crashed');
        this.middleMan.close('handlerError', text);
      }
    } catch (fault) {
      void Promise.reject(fault);
    } finally {
      // Nobody will take what is left in the mailbox: it is dropped, and no longer counted against the server's
      // budget.
      this.shed();
      this.exit = exit;
      try {
        this.watcher?.exited(exit);
      } catch (fault) {
        void Promise.reject(fault);
      }
      this.exitWait?.resolve(exit);
    }
  }

  get log(): Logger {
    return this.logs.log;
  }

  get protocol(): Dialect['name'] {
    return this.middleMan.dialect.name;
  }

  /** How the handler ended, once it has. */
  private exit: HandlerExit | null = null;
  /** {@link done}'s promise and what settles it (made only when someone waits: at shutdown, or a worker's open). */
  private exitWait: Settling<HandlerExit> | null = null;

  /** The handler process's end (settled after the connection's close and the watcher). */
  get done(): Promise<HandlerExit> {
    if (this.exit) return Promise.resolve(this.exit);
    this.exitWait ??= settling<HandlerExit>();
    return this.exitWait.promise;
  }

  /** Called each time the handler takes a message (worker isolation counts them there). */
  onReceive: (() => void) | null = null;
  /** Times rpcs for the admin port's metrics (null: not timed). */
  clock: RpcClock | null = null;

  /** A message from the client (the middle-man's sink); `size`: its decoded size. */
  onMessage(m: WireMessage, size = 0): void {
    if (m.kind === 'cast') {
      this.arrived({ type: 'chan', mm: this, data: m.data }, size);
    } else if (m.kind === 'rpc') {
      const fault = this.rpcs.arrived(m.id);
      if (fault) {
        this.middleMan.close('protocolError', fault);
        return;
      }
      this.clock?.arrived(m.id);
      if (waitingStepCrossed(this.rpcs.waiting, true)) this.report(); // another step of waiting rpcs is counted
      this.arrived({ type: 'chan', mm: this, data: m.data, requestId: m.id }, size);
    } else {
      this.middleMan.close('protocolError', sessionFault('server', m) ?? `unexpected ${m.kind}`);
    }
  }

  /** A message for the handler: straight to a behaviour that waits for one, else into the inbox. */
  private arrived(m: ChanMessage, size: number): void {
    if (this.behaving !== null && !this.busy && (this.box === null || this.box.size === 0)) {
      this.pump(m);
      return;
    }
    this.enqueued(this.inbox.put(m, size));
    this.pump(undefined);
  }

  /** A message was put in: counts what it holds, and stops the reading when the mailbox is full. */
  private enqueued(weight: number): void {
    if (weight > 0) this.report();
    this.added(this.inbox.size, this.inbox.bytes);
  }

  /** Tells the account what the mailbox holds: its messages' bytes, and the rpcs waiting for an answer. */
  private report(): void {
    const waiting = this.answers?.waiting ?? 0;
    const now = (this.box?.bytes ?? 0) + waitingRpcsCharge(waiting);
    if (now !== this.reported) {
      this.account?.inbound(now - this.reported);
      this.reported = now;
    }
  }

  /**
   * Drops what the handler has not received yet: the connection is being cut for holding too much, or the handler has
   * ended and will take nothing more.
   */
  shed(): void {
    this.box?.drop();
    this.report();
  }

  /** Who wants to know when the connection has ended (groups); null once it has. (Shared and empty until used.) */
  private closeWatchers: (() => void)[] | null = NO_WATCHERS;

  onClose(fn: () => void): () => void {
    if (!this.closeWatchers) {
      fn();
      return () => {};
    }
    if (this.closeWatchers === NO_WATCHERS) this.closeWatchers = [];
    this.closeWatchers.push(fn);
    return () => {
      const i = this.closeWatchers?.indexOf(fn) ?? -1;
      if (i >= 0) this.closeWatchers?.splice(i, 1);
    };
  }

  /** The connection has ended (the middle-man's sink). */
  onClosed(info: CloseInfo): void {
    this.stopWatching();
    this.answers?.clear();
    this.report();
    const watchers = this.closeWatchers ?? [];
    this.closeWatchers = null;
    for (const fn of watchers) fn();
    this.inbox.end({ last: { type: 'chan_closed', mm: this, reason: info.reason, text: info.text } });
    this.pump(undefined);
  }

  /** Messages waiting in the mailbox. */
  get queued(): number {
    return this.box?.size ?? 0;
  }

  send(x: unknown): boolean {
    const oldest = this.answers?.oldestReceived();
    if (oldest === undefined) return this.middleMan.send({ kind: 'push', data: x as Term });
    return this.answer(oldest, x);
  }

  reply(to: ChanMessage, x: unknown): boolean {
    const id = to.requestId;
    const fault = this.rpcs.replyFault(id);
    if (fault === null && id !== undefined) return this.answer(id, x);
    // After the end nothing waits: a late reply is not the handler's mistake.
    if (id !== undefined && this.middleMan.closed) return false;
    throw new ChanError('usage', fault ?? 'reply(): not an rpc');
  }

  push(x: unknown): boolean {
    return this.middleMan.send({ kind: 'push', data: x as Term });
  }

  private answer(id: number, x: unknown): boolean {
    let sent: boolean;
    try {
      sent = this.middleMan.send({ kind: 'reply', id, data: x as Term });
    } catch (err) {
      if (!(err instanceof LimitError)) throw err;
      // The answer cannot be sent: this one rpc fails with the reason, and the connection carries on.
      this.log.warn(
        { err: { code: err.code, message: err.message }, request: id },
        'an answer could not be sent; the rpc gets {error, {Code, Text}}',
      );
      sent = this.middleMan.send({ kind: 'reply', id, data: unsendableAnswer(err) });
    }
    // Only once sent: a value that cannot be encoded leaves the request waiting.
    const rpcs = this.rpcs;
    rpcs.answered(id);
    this.clock?.answered(id);
    if (waitingStepCrossed(rpcs.waiting, false)) this.report(); // a step fewer is counted
    return sent;
  }

  close(): void {
    this.middleMan.close('normal', 'the handler closed the connection');
  }

  receive(options?: ReceiveOptions): Promise<MailboxMessage> {
    if (this.behaving) return Promise.reject(behaviourReads());
    return this.inbox.receive(options).then((m) => this[TAKEN](m));
  }

  [Symbol.asyncIterator](): AsyncIterator<MailboxMessage> {
    if (this.behaving) throw behaviourReads();
    return this.inbox.iterate(this);
  }

  /** The handler has `m` (and never queued it). */
  private received(m: MailboxMessage): void {
    if (m.type === 'chan') {
      if (m.requestId !== undefined) this.rpcs.taken(m.requestId);
      this.onReceive?.();
    }
  }

  /** @internal The handler has taken `m` (receive, or its `for await`): its place and bytes are free. */
  [TAKEN](m: MailboxMessage): MailboxMessage {
    this.received(m);
    this.report();
    this.taken(this.box?.size ?? 0, this.box?.bytes ?? 0);
    return m;
  }

  /** Resolves once what was sent has left for the network (or the connection ended): pace a large stream with it. */
  drain(): Promise<void> {
    return this.middleMan.drain();
  }
}

function behaviourReads(): ChanError {
  return new ChanError(
    'usage',
    "a behaviour's messages come to its handle(); receive() and for await are for handlers written as async functions",
  );
}

/** Who is told when a handler process ends (the service's supervisor counts crashes). */
export interface HandlerWatcher {
  exited(exit: HandlerExit): void;
}

/** How a handler process ended: it returned, or it threw (text: the error's message). */
export type HandlerExit = { ok: true } | { ok: false; text: string };
