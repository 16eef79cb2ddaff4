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
import { ChanError, isCloseReason, type ErrorCode } from './errors.js';
import { HighWater } from './flow.js';
import { Inbox, MAX_TIMER_MS, type ReceiveOptions } from './inbox.js';
import {
  CLIENT_DEFAULTS,
  Link,
  CLIENT_CLOSED,
  RECONNECT_DEFAULTS,
  type ConnectOptions,
  type LinkOwner,
  type ReconnectOptions,
  type Target,
} from './link.js';
import { silentLogger, type Logger } from './log.js';
import { closedError, type CloseInfo, type MMStats } from './mm.js';
import { MAX_REQUEST_ID, type WireMessage } from './protocol.js';
import type { Term } from './term/model.js';

export {
  CLIENT_DEFAULTS,
  RECONNECT_DEFAULTS,
  defaultSaltedPasswordCache,
  type ConnectOptions,
  type ReconnectOptions,
} from './link.js';

export interface RpcOptions {
  /** ms to wait for the answer (default: the channel's rpcTimeout, 5000). */
  timeout?: number;
}

/** Where a channel is: `connected`, or (with reconnect) `reconnecting` after a loss, or `closed` for good. */
export type ChannelState = 'connected' | 'reconnecting' | 'closed';

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

interface Pending {
  resolve(x: Term): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
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

/** A connection to one service (lib_chan's client-side MM). Make one with {@link connect}. */
export class Channel extends EventEmitter implements AsyncIterable<Term>, LinkOwner {
  /** Resolves, never rejects, when the channel has closed for good, with the reason. */
  readonly closed: Promise<CloseInfo>;
  private resolveClosed!: (info: CloseInfo) => void;
  private link: Link | null = null;
  private current: ChannelState = 'reconnecting';
  private readonly pushes = new Inbox<Term>();
  private readonly pending = new Map<number, Pending>();
  /** Made by the first stateChanges() call: nobody asked, nothing is kept. */
  private changes: Inbox<StateChange> | null = null;
  private lastId = 0;
  private reconnects = 0;
  private userClosed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** A reconnect being dialled, to be cut short by close(). */
  private dialing: AbortController | null = null;
  /** The reconnect attempt that made the current connection (0 for the first), and when it was made. */
  private attempt = 0;
  private connectedAt = 0;
  /** Unread pushes stop the reading of the socket (of whichever connection is current). */
  private readonly flow: HighWater;
  private readonly rpcTimeout: number;
  private readonly reconnect: Required<ReconnectOptions> | null;
  private readonly log: Logger;

  /** Use {@link connect}. */
  constructor(
    private readonly target: Target,
    private readonly options: ConnectOptions,
  ) {
    super();
    this.rpcTimeout = options.rpcTimeout ?? CLIENT_DEFAULTS.rpcTimeout;
    this.flow = new HighWater(
      options.mailboxHighWater ?? CLIENT_DEFAULTS.mailboxHighWater,
      {
        pauseReading: () => this.link?.mm.pauseReading(),
        resumeReading: () => this.link?.mm.resumeReading(),
      },
      options.mailboxHighWaterBytes ?? CLIENT_DEFAULTS.mailboxHighWaterBytes,
    );
    this.reconnect = options.reconnect
      ? { ...RECONNECT_DEFAULTS, ...(options.reconnect === true ? {} : options.reconnect) }
      : null;
    this.log = options.logger ?? silentLogger;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** @internal The first connection. */
  async open(): Promise<void> {
    try {
      this.use(await Link.dial(this.target, this.options, this, this.log));
    } catch (err) {
      this.current = 'closed';
      this.pushes.end({ error: err as Error });
      throw err;
    }
  }

  private use(link: Link): void {
    this.link = link;
    this.connectedAt = performance.now();
    this.setState({ state: 'connected' });
    link.activate();
    if (this.flow.readerPaused) link.mm.pauseReading();
  }

  private setState(change: StateChange): void {
    this.current = change.state;
    this.changes?.put(change);
    this.emit('state', change);
    if (change.state === 'closed') this.changes?.end({ error: channelClosed });
  }

  /** `connected`, `reconnecting` or `closed`. */
  get state(): ChannelState {
    return this.current;
  }

  /** True once the channel has closed for good (see {@link closed} for why). */
  get isClosed(): boolean {
    return this.current === 'closed';
  }

  /**
   * State changes from now on, as they happen: `for await (const c of ch.stateChanges())`; ends when the channel
   * closes. (The same inbox each call; one reader at a time.)
   */
  stateChanges(): AsyncIterable<StateChange> {
    if (!this.changes) {
      this.changes = new Inbox<StateChange>();
      if (this.current === 'closed') this.changes.end({ error: channelClosed });
    }
    return this.changes;
  }

  /** Frames and bytes of the current connection, the heartbeat's last round-trip time (ms), and the reconnects. */
  stats(): ChannelStats {
    const mm = this.link?.mm;
    const s = mm?.stats ?? { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
    return { ...s, rtt: mm?.rtt, reconnects: this.reconnects };
  }

  /**
   * Resolves once the server has read every message sent before this call (a ping after them, and its pong): a cast
   * is known to have arrived, not only to have left. Rejects with `timeout` (default: the rpc timeout), `closed`, or
   * `disconnected`.
   */
  flush(options: RpcOptions = {}): Promise<void> {
    let mm;
    try {
      mm = this.usable();
    } catch (err) {
      return Promise.reject(err);
    }
    return mm.flush(options.timeout ?? this.rpcTimeout);
  }

  /** Resolves once what was sent has been handed to the network (or the connection ended). */
  drain(): Promise<void> {
    return this.link?.mm.drain() ?? Promise.resolve();
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
  rpc(x: unknown, options: RpcOptions = {}): Promise<Term> {
    let mm;
    try {
      mm = this.usable();
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.nextId();
    const timeout = options.timeout ?? this.rpcTimeout;
    return new Promise<Term>((resolve, reject) => {
      // A timeout too long for a timer (Infinity, over 24.8 days) means no timeout.
      const timer =
        timeout <= MAX_TIMER_MS
          ? setTimeout(() => {
              // The id is forgotten: a late answer is dropped, never given to another rpc.
              this.pending.delete(id);
              reject(new ChanError('timeout', `no answer within ${timeout} ms`));
            }, timeout)
          : undefined;
      this.pending.set(id, { resolve, reject, timer });
      try {
        mm.send({ kind: 'rpc', id, data: x as Term });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      }
    });
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
    return this.pushes.iterate(this.taken);
  }

  /** Closes the channel (reason `normal`); resolves when the connection is fully closed. No reconnect follows. */
  async close(): Promise<void> {
    this.userClosed = true;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.dialing?.abort();
    const link = this.link;
    if (link && !link.mm.closed) {
      link.mm.close('normal', CLIENT_CLOSED);
      await link.socketClosed;
    } else if (this.current !== 'closed') {
      this.finish({ reason: 'normal', text: CLIENT_CLOSED, by: 'local' });
    }
  }

  private usable(): Link['mm'] {
    const mm = this.link?.mm;
    if (this.current === 'connected' && mm && !mm.closed) return mm;
    if (this.current === 'reconnecting' && !this.userClosed) {
      throw new ChanError('disconnected', 'the connection was lost and is being re-established; try again');
    }
    throw this.link?.mm.closed ? closedError(this.link.mm.closed) : channelClosed();
  }

  private nextId(): number {
    do {
      this.lastId = this.lastId >= MAX_REQUEST_ID ? 1 : this.lastId + 1;
    } while (this.pending.has(this.lastId));
    return this.lastId;
  }

  private readonly taken = (x: Term): Term => {
    this.flow.taken(this.pushes.size, this.pushes.bytes);
    return x;
  };

  /** @internal */
  linkMessage(link: Link, m: WireMessage, size: number): void {
    if (link !== this.link) return;
    switch (m.kind) {
      case 'reply': {
        const p = this.pending.get(m.id);
        if (!p) {
          this.log.debug({ id: m.id }, 'dropped an answer to an rpc that already gave up');
          return;
        }
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        p.resolve(m.data);
        return;
      }
      case 'push':
        this.pushes.put(m.data, size);
        this.flow.added(this.pushes.size, this.pushes.bytes);
        return;
      default:
        link.mm.close('protocolError', `a server may not send ${m.kind} after the handshake`);
    }
  }

  /** @internal */
  linkClosed(link: Link, info: CloseInfo): void {
    if (link !== this.link) return;
    // Not after our own close, nor after the server ended the conversation on purpose, nor when it would fail again.
    const retry =
      this.reconnect !== null &&
      !this.userClosed &&
      !(info.by === 'peer' && info.reason === 'normal') &&
      !PERMANENT.has(info.reason);
    if (this.pending.size > 0) {
      this.rejectPending(
        retry
          ? new ChanError(
              'disconnected',
              `the connection was lost (${info.reason}: ${info.text}); the channel is reconnecting`,
              { reason: info.reason },
            )
          : closedError(info),
      );
    }
    if (!retry) {
      this.finish(info);
      return;
    }
    // A connection that stayed up for a while starts the count again; one that died at once (a handler that crashes
    // on every new connection) counts as another failed attempt, so the back-off grows and the retries run out.
    const stable = performance.now() - this.connectedAt >= (this.reconnect as Required<ReconnectOptions>).maxDelay;
    this.retry(stable ? 1 : this.attempt + 1, info);
  }

  private rejectPending(err: ChanError): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
  }

  private retry(attempt: number, lost: CloseInfo): void {
    const r = this.reconnect as Required<ReconnectOptions>;
    if (attempt > r.retries) {
      this.finish({ ...lost, text: `${lost.text}; gave up after ${r.retries} reconnect attempts` });
      return;
    }
    const delay = backoff(attempt, r);
    this.setState({ state: 'reconnecting', reason: lost, attempt, delay });
    if (this.userClosed) return; // a state listener closed the channel
    this.log.info({ attempt, delay, reason: lost.reason }, 'reconnecting');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      const abort = new AbortController();
      this.dialing = abort;
      Link.dial(this.target, this.options, this, this.log, abort.signal).then(
        (link) => {
          this.dialing = null;
          if (this.userClosed) {
            link.mm.close('normal', CLIENT_CLOSED);
            return;
          }
          this.reconnects++;
          this.attempt = attempt;
          this.use(link);
        },
        (err: unknown) => {
          this.dialing = null;
          if (this.userClosed) return;
          const code = err instanceof ChanError ? err.code : 'socketError';
          const text = err instanceof Error ? err.message : String(err);
          if (PERMANENT.has(code)) this.finish({ reason: code, text, by: 'peer' });
          else this.retry(attempt + 1, { reason: isCloseReason(code) ? code : lost.reason, text, by: 'peer' });
        },
      );
    }, delay);
  }

  private finish(info: CloseInfo): void {
    if (this.current === 'closed') return;
    if (this.pending.size > 0) this.rejectPending(closedError(info));
    this.pushes.end({ error: () => closedError(info) });
    this.setState({ state: 'closed', reason: info });
    this.resolveClosed(info);
  }
}

export type { ErrorCode };
