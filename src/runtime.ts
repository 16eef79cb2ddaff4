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
import { RpcAnswers, sessionFault } from './session.js';
import type { RpcClock } from './metrics.js';
import { Atom, Tuple, type Term } from './term/model.js';

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
  private readonly inbox = new Inbox<MailboxMessage>();
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
    /** The handler on this mailbox, called by {@link start} (a worker thread runs its own). */
    private run: ((mailbox: Mailbox) => unknown) | null = null,
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
    const run = this.run;
    this.run = null;
    if (!run) return;
    let result: unknown;
    try {
      result = run(this);
    } catch (err) {
      this.handlerEnded({ thrown: err });
      return;
    }
    // Callbacks on the handler's own promise, not an async function awaiting it: an idle connection keeps one
    // suspended function (the handler's), not two.
    Promise.resolve(result).then(
      () => this.handlerEnded(null),
      (err: unknown) => this.handlerEnded({ thrown: err }),
    );
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
      this.exitWaiter?.(exit);
      this.exitWaiter = null;
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
  /** Settles {@link done}'s promise (made only when someone waits: at shutdown, or a worker thread's open). */
  private exitWaiter: ((exit: HandlerExit) => void) | null = null;
  private exitPromise: Promise<HandlerExit> | null = null;

  /** The handler process's end (settled after the connection's close and the watcher). */
  get done(): Promise<HandlerExit> {
    if (this.exit) return Promise.resolve(this.exit);
    this.exitPromise ??= new Promise<HandlerExit>((resolve) => (this.exitWaiter = resolve));
    return this.exitPromise;
  }

  /** Called each time the handler takes a message (worker isolation counts them there). */
  onReceive: (() => void) | null = null;
  /** Times rpcs for the admin port's metrics (null: not timed). */
  clock: RpcClock | null = null;

  /** A message from the client (the middle-man's sink); `size`: its decoded size. */
  onMessage(m: WireMessage, size = 0): void {
    if (m.kind === 'cast') {
      this.enqueued(this.inbox.put({ type: 'chan', mm: this, data: m.data }, size));
    } else if (m.kind === 'rpc') {
      const fault = this.rpcs.arrived(m.id);
      if (fault) {
        this.middleMan.close('protocolError', fault);
        return;
      }
      this.clock?.arrived(m.id);
      this.enqueued(this.inbox.put({ type: 'chan', mm: this, data: m.data, requestId: m.id }, size));
    } else {
      this.middleMan.close('protocolError', sessionFault('server', m) ?? `unexpected ${m.kind}`);
    }
  }

  /** A message was put in: counts what it holds, and stops the reading when the mailbox is full. */
  private enqueued(weight: number): void {
    if (weight > 0) this.report();
    this.added(this.inbox.size, this.inbox.bytes);
  }

  private report(): void {
    const now = this.inbox.bytes;
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
    this.inbox.drop();
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
    const watchers = this.closeWatchers ?? [];
    this.closeWatchers = null;
    for (const fn of watchers) fn();
    this.inbox.end({ last: { type: 'chan_closed', mm: this, reason: info.reason, text: info.text } });
  }

  /** Messages waiting in the mailbox. */
  get queued(): number {
    return this.inbox.size;
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
    this.rpcs.answered(id);
    this.clock?.answered(id);
    return sent;
  }

  close(): void {
    this.middleMan.close('normal', 'the handler closed the connection');
  }

  receive(options?: ReceiveOptions): Promise<MailboxMessage> {
    return this.inbox.receive(options).then((m) => this[TAKEN](m));
  }

  [Symbol.asyncIterator](): AsyncIterator<MailboxMessage> {
    return this.inbox.iterate(this);
  }

  /** @internal The handler has taken `m` (receive, or its `for await`): its place and bytes are free. */
  [TAKEN](m: MailboxMessage): MailboxMessage {
    if (m.type === 'chan') {
      if (m.requestId !== undefined) this.rpcs.taken(m.requestId);
      this.onReceive?.();
    }
    this.report();
    this.taken(this.inbox.size, this.inbox.bytes);
    return m;
  }

  /** Resolves once what was sent has left for the network (or the connection ended): pace a large stream with it. */
  drain(): Promise<void> {
    return this.middleMan.drain();
  }
}

/** Who is told when a handler process ends (the service's supervisor counts crashes). */
export interface HandlerWatcher {
  exited(exit: HandlerExit): void;
}

/** How a handler process ended: it returned, or it threw (text: the error's message). */
export type HandlerExit = { ok: true } | { ok: false; text: string };
