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
 */
import type { Duplex } from 'node:stream';
import { msgpackCodec } from './codec/index.js';
import { DEFAULTS } from './config/options.js';
import { ChanError, isCloseReason } from './errors.js';
import { SaltedPasswordCache } from './auth/scram.js';
import { clientHandshake } from './handshake.js';
import { describeTlsError, tlsClientTransport, type TlsClientOptions } from './tls.js';
import { Inbox, type ReceiveOptions } from './inbox.js';
import { silentLogger, type Logger } from './log.js';
import { MiddleMan, type CloseInfo, type MMController, type MMStats } from './mm.js';
import { MAX_REQUEST_ID, type WireMessage } from './protocol.js';
import type { Term } from './term/model.js';
import { tcp, type Transport } from './transport.js';

/** Client defaults; every one can be changed per connection in {@link ConnectOptions}. */
export const CLIENT_DEFAULTS = {
  /** Connecting plus the handshake must finish within this many ms. */
  connectTimeout: 10_000,
  /** An rpc with no answer after this many ms rejects with `timeout`. */
  rpcTimeout: 5000,
  maxFrameSize: DEFAULTS.maxFrameSize,
  maxDepth: DEFAULTS.maxDepth,
  heartbeatMaxMissed: DEFAULTS.heartbeatMaxMissed,
  mailboxHighWater: DEFAULTS.mailboxHighWater,
  sendBufferLimit: DEFAULTS.sendBufferLimit,
} as const;

export interface ConnectOptions {
  /** ms for the TCP connection and the handshake together (default 10000). */
  connectTimeout?: number;
  /** Default timeout of `rpc`, ms (default 5000). */
  rpcTimeout?: number;
  /** Largest frame accepted from the server, bytes (default 1 MiB). */
  maxFrameSize?: number;
  /** Deepest nesting accepted and sent (default 32). */
  maxDepth?: number;
  /** Heartbeat interval, ms: the server's (from its ack) unless given; 0 turns the client's heartbeats off. */
  heartbeatInterval?: number;
  /** A server silent for this many intervals is dead: the channel closes with `timeout` (default 4). */
  heartbeatMaxMissed?: number;
  /** Unread pushes at which the client stops reading the socket (default 1024); it reads again below half. */
  mailboxHighWater?: number;
  /** Bytes queued for a server that does not read before the channel closes with `slowConsumer` (default 8 MiB). */
  sendBufferLimit?: number;
  /** Connect over TLS: `{}` trusts the public CAs; `{ ca }` a CA of your own (chan certs makes one). */
  tls?: TlsClientOptions;
  /**
   * Where salted passwords are remembered between connects (PBKDF2 is the slow part of a handshake): a process-wide
   * cache unless given; `false` derives every time.
   */
  saltedPasswordCache?: SaltedPasswordCache | false;
  /** The local address to connect from (on a host with several). */
  localAddress?: string;
  logger?: Logger;
  transport?: Transport;
}

/** The cache every connect uses unless told otherwise. */
export const defaultSaltedPasswordCache = new SaltedPasswordCache();

export interface RpcOptions {
  /** ms to wait for the answer (default: the channel's rpcTimeout, 5000). */
  timeout?: number;
}

interface Pending {
  resolve(x: Term): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Connects to `service` on `host:port` and authenticates with `secret` (null or undefined for a service without one).
 * `argsC` reaches the handler as its second argument.
 */
export async function connect(
  host: string,
  port: number,
  service: string,
  secret: string | null | undefined,
  argsC: Term = null,
  options: ConnectOptions = {},
): Promise<Channel> {
  const timeout = options.connectTimeout ?? CLIENT_DEFAULTS.connectTimeout;
  const deadline = Date.now() + timeout;
  const transport = options.transport ?? (options.tls ? tlsClientTransport(options.tls) : tcp);
  const { socket, peer } = await transport.connect(host, port, timeout, options.localAddress);
  const log = (options.logger ?? silentLogger).child({ peer, service });
  const ch = new Channel(socket, log, options, options.tls !== undefined);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new ChanError('timeout', `no answer to the handshake from ${host}:${port} within ${timeout} ms`);
      ch.abort('timeout', err.message);
      reject(err);
    }, Math.max(0, deadline - Date.now()));
  });
  try {
    const ack = await Promise.race([
      clientHandshake(ch.handshakeIO, {
        service,
        secret: secret ?? null,
        args: argsC,
        maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
        ...(options.saltedPasswordCache === false ? {} : { saltedPassword: (options.saltedPasswordCache ?? defaultSaltedPasswordCache).get }),
      }),
      expired,
    ]);
    ch.opened(ack.maxFrameSize, options.heartbeatInterval ?? ack.heartbeatInterval ?? 0);
    return ch;
  } catch (err) {
    ch.abort(err instanceof ChanError && isCloseReason(err.code) ? err.code : 'protocolError', err instanceof Error ? err.message : String(err));
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** A connection to one service. */
export class Channel implements AsyncIterable<Term> {
  /** Resolves, never rejects, when the channel has closed, with the reason. */
  readonly closed: Promise<CloseInfo>;
  private resolveClosed!: (info: CloseInfo) => void;
  private readonly mm: MiddleMan;
  private readonly pushes = new Inbox<Term>();
  private readonly handshakeInbox = new Inbox<WireMessage>();
  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  /** The server's ack has arrived (messages after it are the channel's). */
  private acked = false;
  /** The handshake is complete and verified: the channel may send. */
  private open = false;
  private readonly rpcTimeout: number;
  private readonly socketClosed: Promise<void>;

  /** Use {@link connect}. */
  constructor(
    socket: Duplex,
    private readonly log: Logger,
    options: ConnectOptions,
    private readonly overTls = false,
  ) {
    this.rpcTimeout = options.rpcTimeout ?? CLIENT_DEFAULTS.rpcTimeout;
    this.heartbeatMaxMissed = options.heartbeatMaxMissed ?? CLIENT_DEFAULTS.heartbeatMaxMissed;
    this.highWater = options.mailboxHighWater ?? CLIENT_DEFAULTS.mailboxHighWater;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    const controller: MMController = { onMessage: this.mmOnMessage, onClosed: this.mmOnClosed };
    this.mm = new MiddleMan(
      socket,
      {
        codec: msgpackCodec({ maxDepth: options.maxDepth ?? CLIENT_DEFAULTS.maxDepth }),
        maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
        sendBufferLimit: options.sendBufferLimit ?? CLIENT_DEFAULTS.sendBufferLimit,
        log,
      },
      controller,
    );
  }

  private readonly heartbeatMaxMissed: number;
  private readonly highWater: number;
  /** True while the socket is not read because too many pushes are unread. */
  private full = false;

  /** @internal The handshake's view of the connection. */
  readonly handshakeIO = {
    send: (m: WireMessage): void => {
      this.mm.send(m);
    },
    next: (): Promise<WireMessage> => this.handshakeInbox.receive(),
  };

  /** @internal */
  opened(peerMaxFrameSize: number, heartbeatInterval: number): void {
    this.mm.peerMaxFrameSize = peerMaxFrameSize;
    this.mm.beginSession(heartbeatInterval, this.heartbeatMaxMissed);
    this.open = true;
  }

  /** @internal Ends a connection whose handshake failed. */
  abort(reason: Parameters<MiddleMan['close']>[0], text: string): void {
    this.mm.close(reason, text);
  }

  /** True once the channel has closed (see {@link closed} for why). */
  get isClosed(): boolean {
    return this.mm.closed !== null;
  }

  /** Frames and bytes sent and received so far, and the heartbeat's last round-trip time (ms). */
  stats(): MMStats & { rtt: number | undefined } {
    return { ...this.mm.stats, rtt: this.mm.rtt };
  }

  /** Resolves once what was sent has been handed to the network (or the channel closed). */
  drain(): Promise<void> {
    return this.mm.drain();
  }

  /** Sends X without waiting for anything (lib_chan:cast/2). Throws `closed`, `badTerm` or `frameTooLarge`. */
  cast(x: unknown): void {
    this.ensureOpen();
    this.mm.send({ kind: 'cast', data: x as Term });
  }

  /** Sends X and resolves with the handler's answer (lib_chan:rpc/2). Rejects with `timeout` or `closed`. */
  rpc(x: unknown, options: RpcOptions = {}): Promise<Term> {
    try {
      this.ensureOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.nextId();
    const timeout = options.timeout ?? this.rpcTimeout;
    return new Promise<Term>((resolve, reject) => {
      const timer = setTimeout(() => {
        // The id is forgotten: a late answer is dropped, never given to another rpc.
        this.pending.delete(id);
        reject(new ChanError('timeout', `no answer within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.mm.send({ kind: 'rpc', id, data: x as Term });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  /**
   * The next push from the server. Rejects with `closed` once the channel has closed and no push is left. Read your
   * pushes: at `mailboxHighWater` unread ones the channel stops reading, and rpc answers wait behind them.
   */
  receive(options?: ReceiveOptions): Promise<Term> {
    return this.pushes.receive(options).then(this.afterTake);
  }

  /** Pushes from the server, until the channel closes. */
  async *[Symbol.asyncIterator](): AsyncIterator<Term> {
    for await (const x of this.pushes) yield this.afterTake(x);
  }

  private readonly afterTake = (x: Term): Term => {
    if (this.full && this.pushes.size <= this.highWater >> 1) {
      this.full = false;
      this.mm.resumeReading();
    }
    return x;
  };

  /** Closes the channel (reason `normal`); resolves when the connection is fully closed. */
  async close(): Promise<void> {
    this.mm.close('normal', 'the client closed the channel');
    await this.socketClosed;
  }

  /** Why the handshake ended, in the words a person connecting needs. */
  private handshakeError(info: CloseInfo): ChanError {
    if (info.by === 'peer' && isCloseReason(info.reason) && info.reason !== 'peerClosed') return new ChanError(info.reason, info.text);
    if (info.error) {
      // Under TLS 1.3 a rejected client certificate shows only now, after the client believed it was connected.
      const { code, text } = describeTlsError(info.error);
      if (code === 'tlsRejected' || code === 'tlsFailed') return new ChanError(code, text, { cause: info.error });
    }
    if (info.reason === 'peerClosed' && this.mm.stats.framesIn === 0 && this.overTls) {
      // A lib-chan server always answers startService; under TLS, silence means the TLS layer turned us away.
      return new ChanError(
        'tlsRejected',
        'the server closed the TLS connection before answering: it rejected our client certificate (missing, or not signed by its CA; see --cert, --key)',
        { reason: info.reason },
      );
    }
    if (info.reason === 'peerClosed' && this.mm.stats.framesIn === 0) {
      return new ChanError('closed', 'the server closed the connection without answering startService; if its port speaks TLS, connect with TLS (chan --tls)', { reason: info.reason });
    }
    return closedError(info);
  }

  private ensureOpen(): void {
    const c = this.mm.closed;
    if (c) throw closedError(c);
    if (!this.open) throw new ChanError('closed', 'the channel is not open yet');
  }

  private nextId(): number {
    do {
      this.lastId = this.lastId >= MAX_REQUEST_ID ? 1 : this.lastId + 1;
    } while (this.pending.has(this.lastId));
    return this.lastId;
  }

  private readonly mmOnMessage = (m: WireMessage): void => {
    if (!this.acked) {
      // The ack may share a chunk with the first pushes: from the ack on, messages belong to the channel.
      if (m.kind === 'ack') this.acked = true;
      this.handshakeInbox.put(m);
      return;
    }
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
        this.pushes.put(m.data);
        if (!this.full && this.pushes.size >= this.highWater) {
          this.full = true;
          this.mm.pauseReading();
        }
        return;
      default:
        this.mm.close('protocolError', `a server may not send ${m.kind} after the handshake`);
    }
  };

  private readonly mmOnClosed = (info: CloseInfo): void => {
    const err = closedError(info);
    if (!this.acked) this.handshakeInbox.end({ error: this.handshakeError(info) });
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
    this.pushes.end({ error: err });
    this.log.debug({ reason: info.reason, by: info.by }, 'channel closed');
    this.resolveClosed(info);
  };
}

function closedError(info: CloseInfo): ChanError {
  return new ChanError('closed', `channel closed (${info.reason}): ${info.text}`, { reason: info.reason });
}
