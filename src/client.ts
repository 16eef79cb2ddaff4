/**
 * The client (lib_chan:connect/5, rpc/2, cast/2, disconnect/1).
 *
 *   const ch = await connect('localhost', 1234, 'nameServer', 'ABXy45');
 *   ch.cast(tuple(atom('store'), atom('joe'), 'writing a book'));
 *   await ch.rpc(tuple(atom('lookup'), atom('joe')));   // {ok, "writing a book"}
 *
 * `connect` rejects with a ChanError whose `code` is lib_chan's word: badService, authFail, econnrefused, timeout,
 * badServer, ... Every rpc carries a request id and a timeout (default 5000 ms), so an rpc that gave up can never
 * take a later answer meant for another. Messages the server sends that answer no rpc (pushes) are read with
 * `receive()` or `for await (const x of ch)`.
 *
 * With `reconnect`, a channel whose connection is lost dials again, with exponential back-off and jitter, and
 * authenticates again. While it does, `cast` and `rpc` fail at once with `disconnected` (nothing is queued: a message
 * is never sent twice or late without the caller knowing), rpcs that were waiting when the connection dropped reject
 * with `disconnected`, and pushes keep coming through the same iterator once it is back. The state changes
 * (`connected`, `reconnecting`, `closed`) are events and an async iterator.
 */
import { EventEmitter } from 'node:events';
import { prepareSecret } from './auth/scram.js';
import { ClientConnection } from './client-connection.js';
import {
  CLIENT_CLOSED,
  CLIENT_DEFAULTS,
  RECONNECT_DEFAULTS,
  type ConnectOptions,
  type ReconnectOptions,
  type Target,
} from './client-options.js';
import { ChanError, closedError, isCloseReason, type CloseInfo, type ErrorCode } from './errors.js';
import { HighWater } from './flow.js';
import { Inbox, TAKEN, abortedError, type ReceiveOptions } from './inbox.js';
import { silentLogger, type Logger } from './log.js';
import type { MessageSink, MMStats } from './mm.js';
import type { WireMessage } from './protocol.js';
import { PendingRpcs, sessionFault } from './session.js';
import type { Term } from './term/model.js';

export {
  CLIENT_DEFAULTS,
  RECONNECT_DEFAULTS,
  defaultSaltedPasswordCache,
  type ConnectOptions,
  type ReconnectOptions,
} from './client-options.js';

export interface RpcOptions {
  /** ms to wait for the answer (default: the channel's rpcTimeout, 5000). */
  timeout?: number;
  /** Gives up when aborted: the rpc rejects with `aborted`, and its answer, if it comes, is dropped. */
  signal?: AbortSignal;
}

export interface StateChange {
  state: ChannelState;
  /** Why the connection was lost or closed (for `reconnecting` and `closed`). */
  reason?: CloseInfo;
  /** For `reconnecting`: the attempt about to be made (1, 2, ...) and the delay before it, ms. */
  attempt?: number;
  delay?: number;
}

export interface ChannelStats extends MMStats {
  /** Round-trip time of the last answered heartbeat, ms. */
  rtt: number | undefined;
  /** Times the channel has reconnected. */
  reconnects: number;
}

/**
 * Connects to `service` on `host:port` and authenticates with `secret` (null or undefined for a service without one).
 * `argsC` reaches the handler as its second argument. The first connection is not retried, even with `reconnect`:
 * a wrong address or secret fails at once.
 */
export async function connect(
  host: string,
  port: number,
  service: string,
  secret: string | null | undefined,
  argsC: Term = null,
  options: ConnectOptions = {},
): Promise<Channel> {
  // A secret SASLprep refuses fails here, before a socket is opened: no server could accept it.
  if (typeof secret === 'string') prepareSecret(secret);
  const ch = new Channel({ host, port, service, secret: secret ?? null, argsC }, options);
  await ch.open();
  return ch;
}

function channelClosed(): ChanError {
  return new ChanError('closed', 'the channel is closed');
}

/** Close reasons after which reconnecting cannot help: the same attempt would fail the same way. */
const PERMANENT = new Set<string>([
  'authFail',
  'badService',
  'badServer',
  'badVersion',
  'badCert',
  'tlsFailed',
  'tlsRejected',
  'badConfig',
  'usage',
]);

/** The delay before reconnect attempt `attempt` (1, 2, ...): exponential, capped, and cut by a random share. */
export function backoff(attempt: number, o: Required<ReconnectOptions>, random: () => number = Math.random): number {
  const base = Math.min(o.maxDelay, o.initialDelay * 2 ** (attempt - 1));
  return Math.round(base * (1 - o.jitter * random()));
}

/** One state, one arm: what the channel holds in each. */
type State =
  | { state: 'connecting' }
  /** `attempt`: the reconnect attempt that made this connection (0 for the first); `since`: when (performance.now). */
  | { state: 'connected'; conn: ClientConnection; attempt: number; since: number }
  /** Waiting `timer` before attempt `attempt`, or dialling it (`dialing`, to be cut short by close()). */
  | {
      state: 'reconnecting';
      attempt: number;
      lost: CloseInfo;
      timer: NodeJS.Timeout | null;
      dialing: AbortController | null;
    }
  | { state: 'closed'; info: CloseInfo };

/**
 * Where a channel is: `connecting` (only inside {@link connect}, which resolves once connected), `connected`, or
 * (with reconnect) `reconnecting` after a loss, or `closed` for good.
 */
export type ChannelState = State['state'];

/** A connection to one service (lib_chan's client-side MM). Make one with {@link connect}. */
export class Channel extends EventEmitter implements AsyncIterable<Term>, MessageSink {
  /** Resolves, never rejects, when the channel has closed for good, with the reason. */
  readonly closed: Promise<CloseInfo>;
  private resolveClosed!: (info: CloseInfo) => void;
  private s: State = { state: 'connecting' };
  private readonly pushes = new Inbox<Term>();
  private readonly rpcs = new PendingRpcs();
  /** Made by the first stateChanges() call: nobody asked, nothing is kept. */
  private changes: Inbox<StateChange> | null = null;
  private reconnects = 0;
  /** close() was called: whatever happens next, the channel ends. */
  private closing = false;
  /** Unread pushes stop the reading of the socket (of whichever connection is current). */
  private readonly flow: HighWater;
  private readonly rpcTimeout: number;
  private readonly reconnect: Required<ReconnectOptions> | null;
  private readonly log: Logger;
  /** The server speaks the original lib_chan protocol (no request ids). */
  private readonly original: boolean;

  /** Use {@link connect}. */
  constructor(
    private readonly target: Target,
    private readonly options: ConnectOptions,
  ) {
    super();
    this.rpcTimeout = options.rpcTimeout ?? CLIENT_DEFAULTS.rpcTimeout;
    this.flow = new HighWater(
      {
        highWater: options.mailboxHighWater ?? CLIENT_DEFAULTS.mailboxHighWater,
        highWaterBytes: options.mailboxHighWaterBytes ?? CLIENT_DEFAULTS.mailboxHighWaterBytes,
      },
      {
        pauseReading: () => this.connection()?.pauseReading(),
        resumeReading: () => this.connection()?.resumeReading(),
      },
    );
    this.reconnect = options.reconnect
      ? { ...RECONNECT_DEFAULTS, ...(options.reconnect === true ? {} : options.reconnect) }
      : null;
    this.log = options.logger ?? silentLogger;
    this.original = options.protocol === 'erlang';
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** The current connection, while connected. */
  private connection(): ClientConnection | null {
    return this.s.state === 'connected' ? this.s.conn : null;
  }

  /** @internal The first connection: given up when the options' signal is aborted. */
  async open(): Promise<void> {
    const signal = this.options.signal;
    try {
      if (signal?.aborted) throw abortedError(signal);
      this.use(await ClientConnection.dial(this.target, this.options, this.log, signal), 0);
    } catch (caught) {
      const err = signal?.aborted ? abortedError(signal) : caught;
      this.s = { state: 'closed', info: { reason: 'closed', text: String(err), by: 'local' } };
      this.pushes.end({ error: err as Error });
      throw err;
    }
  }

  private use(conn: ClientConnection, attempt: number): void {
    this.s = { state: 'connected', conn, attempt, since: performance.now() };
    this.emitChange({ state: 'connected' });
    conn.activate(this);
    if (this.flow.readerPaused) conn.pauseReading();
  }

  private emitChange(change: StateChange): void {
    this.changes?.put(change);
    this.emit('state', change);
    if (change.state === 'closed') this.changes?.end({ error: channelClosed });
  }

  /** `connected`, `reconnecting` or `closed`. */
  get state(): ChannelState {
    return this.s.state;
  }

  /** True once the channel has closed for good (see {@link closed} for why). */
  get isClosed(): boolean {
    return this.s.state === 'closed';
  }

  /**
   * State changes from now on, as they happen: `for await (const c of ch.stateChanges())`; ends when the channel
   * closes. (The same inbox each call; one reader at a time.)
   */
  stateChanges(): AsyncIterable<StateChange> {
    if (!this.changes) {
      this.changes = new Inbox<StateChange>();
      if (this.s.state === 'closed') this.changes.end({ error: channelClosed });
    }
    return this.changes;
  }

  /** Frames and bytes of the current connection, the heartbeat's last round-trip time (ms), and the reconnects. */
  stats(): ChannelStats {
    const conn = this.connection();
    const s = conn?.stats ?? { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
    return { ...s, rtt: conn?.rtt, reconnects: this.reconnects };
  }

  /**
   * Resolves once the server has read every message sent before this call (a ping after them, and its pong): a cast
   * is known to have arrived, not only to have left. Rejects with `timeout` (default: the rpc timeout), `closed`, or
   * `disconnected`.
   */
  flush(options: RpcOptions = {}): Promise<void> {
    if (this.original)
      return Promise.reject(new ChanError('usage', "flush() needs lib-chan's protocol: the original has no pings"));
    try {
      return this.usable().flush(options.timeout ?? this.rpcTimeout);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Resolves once what was sent has been handed to the network (or the connection ended). */
  drain(): Promise<void> {
    return this.connection()?.drain() ?? Promise.resolve();
  }

  /**
   * Sends X without waiting for anything (lib_chan:cast/2). Throws `closed`, `disconnected` (while reconnecting),
   * `badTerm` or `frameTooLarge`.
   */
  cast(x: unknown): void {
    this.usable().send({ kind: 'cast', data: x as Term });
  }

  /**
   * Sends X and resolves with the handler's answer (lib_chan:rpc/2). Rejects with `timeout`, `closed`, or
   * `disconnected` (the connection was lost, or is being re-established).
   */
  rpc(x: unknown, options?: RpcOptions): Promise<Term> {
    let conn: ClientConnection;
    try {
      conn = this.usable();
    } catch (err) {
      return Promise.reject(err);
    }
    const answer = this.rpcs.start(options?.timeout ?? this.rpcTimeout, conn, x as Term, options?.signal);
    return this.original ? answer.catch((err: unknown) => this.gaveUp(conn, err)) : answer;
  }

  /**
   * An rpc of the original protocol failed. After a timeout the connection closes: without request ids, its answer,
   * arriving late, would be taken as the answer to the next rpc.
   */
  private gaveUp(conn: ClientConnection, err: unknown): never {
    if (err instanceof ChanError && (err.code === 'timeout' || err.code === 'aborted') && !conn.closed) {
      conn.close(
        'timeout',
        `${err.message}; the original protocol cannot match a late answer to its rpc, so the connection is closed`,
      );
    }
    throw err;
  }

  /**
   * The next push from the server. Rejects with `closed` once the channel has closed and no push is left. Read your
   * pushes: at `mailboxHighWater` unread ones (or `mailboxHighWaterBytes` of them) the channel stops reading, and rpc
   * answers wait behind them.
   */
  receive(options?: ReceiveOptions): Promise<Term> {
    return this.pushes.receive(options).then(this.taken);
  }

  /** Pushes from the server, until the channel closes. */
  [Symbol.asyncIterator](): AsyncIterator<Term> {
    return this.pushes.iterate({ [TAKEN]: this.taken });
  }

  /** Closes the channel (reason `normal`); resolves when the connection is fully closed. No reconnect follows. */
  async close(): Promise<void> {
    this.closing = true;
    const s = this.s;
    if (s.state === 'reconnecting') {
      if (s.timer) clearTimeout(s.timer);
      s.dialing?.abort();
    }
    if (s.state === 'connected' && !s.conn.closed) {
      s.conn.close('normal', CLIENT_CLOSED);
      await s.conn.socketClosed;
    } else if (s.state !== 'closed') {
      this.finish({ reason: 'normal', text: CLIENT_CLOSED, by: 'local' });
    }
  }

  private usable(): ClientConnection {
    const s = this.s;
    if (s.state === 'connected' && !s.conn.closed) return s.conn;
    if (s.state === 'reconnecting' && !this.closing) {
      throw new ChanError('disconnected', 'the connection was lost and is being re-established; try again');
    }
    if (s.state === 'connected' && s.conn.closed) throw closedError(s.conn.closed);
    throw s.state === 'closed' ? closedError(s.info) : channelClosed();
  }

  private readonly taken = (x: Term): Term => {
    this.flow.taken(this.pushes.size, this.pushes.bytes);
    return x;
  };

  /** @internal A message of the session, straight from the current connection's middle-man. */
  onMessage(m: WireMessage, size: number): void {
    if (m.kind === 'cast' && this.original) {
      // The original protocol: a term answers the oldest rpc waiting, or else it is a push.
      if (!this.rpcs.settleOldest(m.data)) this.pushed(m.data, size);
    } else if (m.kind === 'reply') {
      if (!this.rpcs.settle(m.id, m.data)) this.log.debug({ id: m.id }, 'dropped an answer to an rpc that gave up');
    } else if (m.kind === 'push') {
      this.pushed(m.data, size);
    } else {
      this.connection()?.close('protocolError', sessionFault('client', m) ?? `unexpected ${m.kind}`);
    }
  }

  private pushed(x: Term, size: number): void {
    this.pushes.put(x, size);
    this.flow.added(this.pushes.size, this.pushes.bytes);
  }

  /** @internal The current connection has ended. */
  onClosed(info: CloseInfo): void {
    const s = this.s;
    if (s.state !== 'connected') return;
    // Not after our own close, nor after the server ended the conversation on purpose, nor when it would fail again.
    const retry =
      this.reconnect !== null &&
      !this.closing &&
      !(info.by === 'peer' && info.reason === 'normal') &&
      !PERMANENT.has(info.reason);
    if (this.rpcs.size > 0) {
      this.rpcs.rejectAll(
        retry
          ? new ChanError(
              'disconnected',
              `the connection was lost (${info.reason}: ${info.text}); the channel is reconnecting`,
              { reason: info.reason },
            )
          : closedError(info),
      );
    }
    if (!this.reconnect || !retry) {
      this.finish(info);
      return;
    }
    // A connection that stayed up for a while starts the count again; one that died at once (a handler that crashes
    // on every new connection) counts as another failed attempt, so the back-off grows and the retries run out.
    const stable = performance.now() - s.since >= this.reconnect.maxDelay;
    this.retry(this.reconnect, stable ? 1 : s.attempt + 1, info);
  }

  private retry(r: Required<ReconnectOptions>, attempt: number, lost: CloseInfo): void {
    if (attempt > r.retries) {
      this.finish({ ...lost, text: `${lost.text}; gave up after ${r.retries} reconnect attempts` });
      return;
    }
    const delay = backoff(attempt, r);
    const waiting: Extract<State, { state: 'reconnecting' }> = {
      state: 'reconnecting',
      attempt,
      lost,
      timer: null,
      dialing: null,
    };
    this.s = waiting;
    this.emitChange({ state: 'reconnecting', reason: lost, attempt, delay });
    if (this.closing || this.s !== waiting) return; // a state listener closed the channel
    this.log.info({ attempt, delay, reason: lost.reason }, 'reconnecting');
    waiting.timer = setTimeout(() => {
      waiting.timer = null;
      waiting.dialing = new AbortController();
      ClientConnection.dial(this.target, this.options, this.log, waiting.dialing.signal).then(
        (conn) => {
          waiting.dialing = null;
          if (this.closing) {
            conn.close('normal', CLIENT_CLOSED);
            return;
          }
          this.reconnects++;
          this.use(conn, attempt);
        },
        (err: unknown) => {
          waiting.dialing = null;
          if (this.closing) return;
          const code = err instanceof ChanError ? err.code : 'socketError';
          const text = err instanceof Error ? err.message : String(err);
          if (PERMANENT.has(code)) this.finish({ reason: code, text, by: 'peer' });
          else this.retry(r, attempt + 1, { reason: isCloseReason(code) ? code : lost.reason, text, by: 'peer' });
        },
      );
    }, delay);
  }

  private finish(info: CloseInfo): void {
    if (this.s.state === 'closed') return;
    this.rpcs.rejectAll(() => closedError(info)); // also lets go of its timer
    this.pushes.end({ error: () => closedError(info) });
    this.s = { state: 'closed', info };
    this.emitChange({ state: 'closed', reason: info });
    this.resolveClosed(info);
  }
}

export type { ErrorCode };
