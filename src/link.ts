/**
 * One authenticated connection of a client: dial, handshake, then a middle-man whose messages go to its owner (the
 * Channel). A channel that reconnects has one link after another; a link is never reused.
 */
import type { Duplex } from 'node:stream';
import { SaltedPasswordCache } from './auth/scram.js';
import { msgpackCodec } from './codec/index.js';
import { DEFAULTS } from './config/options.js';
import { ChanError, isCloseReason } from './errors.js';
import { clientHandshake } from './handshake.js';
import { Inbox } from './inbox.js';
import type { Logger } from './log.js';
import { MiddleMan, closedError, type CloseInfo, type MMController } from './mm.js';
import type { WireMessage } from './protocol.js';
import type { Term } from './term/model.js';
import { describeTlsError, tlsClientTransport, type TlsClientOptions } from './tls.js';
import { tcp, type Transport } from './transport.js';

/** The close text a server sees when the client closes its channel. */
export const CLIENT_CLOSED = 'the client closed the channel';

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
  mailboxHighWaterBytes: DEFAULTS.mailboxHighWaterBytes,
  sendBufferLimit: DEFAULTS.sendBufferLimit,
} as const;

export interface ReconnectOptions {
  /** Attempts after a connection is lost before the channel gives up and closes (default 10). */
  retries?: number;
  /** The delay before the first attempt, ms (default 100); each later one doubles it... */
  initialDelay?: number;
  /** ...up to this, ms (default 10000). */
  maxDelay?: number;
  /**
   * How much of each delay is random, 0 to 1 (default 0.5): the delay is cut by up to this fraction, so that
   * clients that lost the same server do not all come back at the same moment.
   */
  jitter?: number;
}

export const RECONNECT_DEFAULTS = { retries: 10, initialDelay: 100, maxDelay: 10_000, jitter: 0.5 } as const;

export interface ConnectOptions {
  /** ms for the TCP (or TLS) connection and the handshake together (default 10000). */
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
  /** Unread pushes' decoded size, bytes, at which the client stops reading the socket (default 4 MiB); again below half. */
  mailboxHighWaterBytes?: number;
  /** Bytes queued for a server that does not read before the channel closes with `slowConsumer` (default 8 MiB). */
  sendBufferLimit?: number;
  /** Connect over TLS: `{}` trusts the public CAs; `{ ca }` a CA of your own (chan certs makes one). */
  tls?: TlsClientOptions;
  /**
   * Where salted passwords are remembered between connects (PBKDF2 is the slow part of a handshake): a process-wide
   * cache unless given; `false` derives every time.
   */
  saltedPasswordCache?: SaltedPasswordCache | false;
  /**
   * Reconnect when the connection is lost (off by default, as in lib_chan): re-dial and re-authenticate with
   * exponential back-off and jitter. `true` takes the defaults of {@link RECONNECT_DEFAULTS}.
   */
  reconnect?: ReconnectOptions | boolean;
  /** The local address to connect from (on a host with several). */
  localAddress?: string;
  logger?: Logger;
  transport?: Transport;
}

/** The cache every connect uses unless told otherwise. */
export const defaultSaltedPasswordCache = new SaltedPasswordCache();

/** Where to connect, and as what. */
export interface Target {
  host: string;
  port: number;
  service: string;
  secret: string | null;
  argsC: Term;
}

/** Where to connect, and with what (a command line's HOST PORT SERVICE SECRET and options). */
export interface Destination extends Omit<Target, 'argsC'> {
  options: ConnectOptions;
}

export interface LinkOwner {
  /** `size`: the message's decoded size, bytes. */
  linkMessage(link: Link, m: WireMessage, size: number): void;
  linkClosed(link: Link, info: CloseInfo): void;
}

export class Link implements MMController {
  readonly mm: MiddleMan;
  /** The server's ack has arrived: messages from here on belong to the owner. */
  private acked = false;
  private readonly handshakeInbox = new Inbox<WireMessage>();
  /** After the ack, until {@link activate}: what arrived (with its decoded size), and whether the connection closed meanwhile. */
  private early: [WireMessage, number][] | null = [];
  private earlyClose: CloseInfo | null = null;
  private readonly overTls: boolean;
  /** Resolves when the socket has closed (its resources are free). */
  readonly socketClosed: Promise<void>;
  private resolveSocketClosed!: () => void;

  private constructor(
    socket: Duplex,
    private readonly owner: LinkOwner,
    options: ConnectOptions,
    log: Logger,
  ) {
    this.socketClosed = new Promise((resolve) => (this.resolveSocketClosed = resolve));
    this.mm = new MiddleMan(
      socket,
      {
        codec: msgpackCodec({ maxDepth: options.maxDepth ?? CLIENT_DEFAULTS.maxDepth }),
        maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
        sendBufferLimit: options.sendBufferLimit ?? CLIENT_DEFAULTS.sendBufferLimit,
        log,
      },
      this,
    );
    this.overTls = options.tls !== undefined;
  }

  /**
   * Connects and authenticates. Rejects with a ChanError named by lib_chan's words; the link is closed then. Messages
   * that arrive with or after the ack (a push may share its chunk) go to `owner` as soon as this resolves.
   */
  static async dial(
    t: Target,
    options: ConnectOptions,
    owner: LinkOwner,
    baseLog: Logger,
    signal?: AbortSignal,
  ): Promise<Link> {
    const timeout = options.connectTimeout ?? CLIENT_DEFAULTS.connectTimeout;
    const deadline = Date.now() + timeout;
    const transport = options.transport ?? (options.tls ? tlsClientTransport(options.tls) : tcp);
    const { socket } = await transport.connect(t.host, t.port, timeout, options.localAddress);
    if (signal?.aborted) {
      socket.destroy();
      throw new ChanError('closed', 'the channel was closed while connecting');
    }
    const link = new Link(socket, owner, options, baseLog);
    const onAbort = (): void => link.mm.close('normal', CLIENT_CLOSED);
    signal?.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new ChanError('timeout', `no answer to the handshake from ${t.host}:${t.port} within ${timeout} ms`)),
        Math.max(0, deadline - Date.now()),
      );
    });
    try {
      const ack = await Promise.race([
        clientHandshake(
          { send: (m) => void link.mm.send(m), next: () => link.handshakeInbox.receive() },
          {
            service: t.service,
            secret: t.secret,
            args: t.argsC,
            maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
            ...(options.saltedPasswordCache === false
              ? {}
              : { saltedPassword: (options.saltedPasswordCache ?? defaultSaltedPasswordCache).get }),
          },
        ),
        expired,
      ]);
      link.mm.peerMaxFrameSize = ack.maxFrameSize;
      link.mm.beginSession(
        options.heartbeatInterval ?? ack.heartbeatInterval ?? 0,
        options.heartbeatMaxMissed ?? CLIENT_DEFAULTS.heartbeatMaxMissed,
      );
      return link;
    } catch (err) {
      link.mm.close(
        err instanceof ChanError && isCloseReason(err.code) ? err.code : 'protocolError',
        err instanceof Error ? err.message : String(err),
      );
      throw err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Hands the link to its owner: what arrived after the ack while the handshake was being checked (what shared the
   * ack's chunk; no I/O happens in between) is delivered now, in order, then everything else as it comes.
   */
  activate(): void {
    const early = this.early ?? [];
    this.early = null;
    for (const [m, size] of early) this.owner.linkMessage(this, m, size);
    if (this.earlyClose) this.owner.linkClosed(this, this.earlyClose);
  }

  onMessage(m: WireMessage, _payload: Buffer, size: number): void {
    if (!this.acked) {
      if (m.kind === 'ack') this.acked = true;
      this.handshakeInbox.put(m);
    } else if (this.early) {
      this.early.push([m, size]);
    } else {
      this.owner.linkMessage(this, m, size);
    }
  }

  onSocketClosed(): void {
    this.resolveSocketClosed();
  }

  onClosed(info: CloseInfo): void {
    if (!this.acked) this.handshakeInbox.end({ error: this.handshakeError(info) });
    else if (this.early) this.earlyClose = info;
    else this.owner.linkClosed(this, info);
  }

  /** Why the handshake ended, in the words a person connecting needs. */
  private handshakeError(info: CloseInfo): ChanError {
    if (info.by === 'peer' && isCloseReason(info.reason) && info.reason !== 'peerClosed')
      return new ChanError(info.reason, info.text);
    if (info.error) {
      // Under TLS 1.3 a rejected client certificate shows only now, after the client believed it was connected.
      const { code, text } = describeTlsError(info.error);
      if (code === 'tlsRejected' || code === 'tlsFailed') return new ChanError(code, text, { cause: info.error });
    }
    if (info.reason === 'peerClosed' && this.mm.stats.framesIn === 0) {
      // A lib-chan server always answers startService; under TLS, silence means the TLS layer turned us away.
      return this.overTls
        ? new ChanError(
            'tlsRejected',
            'the server closed the TLS connection before answering: it rejected our client certificate (missing, or not signed by its CA; see --cert, --key)',
            { reason: info.reason },
          )
        : new ChanError(
            'closed',
            'the server closed the connection without answering startService; if its port speaks TLS, connect with TLS (chan --tls)',
            { reason: info.reason },
          );
    }
    return closedError(info);
  }
}
