/**
 * One connection of a client: dial, handshake, then the session. It owns its middle-man; the Channel asks it for
 * what it needs (send, flush, drain, pause, close, stats) and never reaches past it. At activation the middle-man's
 * messages are handed to the session's sink (the Channel) with setController, so in the session nothing here relays
 * them. A channel that reconnects has one connection after another; a connection is never reused.
 */
import type { Duplex } from 'node:stream';
import { etfCodec, msgpackCodec } from './codec/index.js';
import {
  CLIENT_CLOSED,
  CLIENT_DEFAULTS,
  defaultSaltedPasswordCache,
  type ConnectOptions,
  type Target,
} from './client-options.js';
import { ChanError, closedError, isCloseReason, type CloseInfo, type CloseReason } from './errors.js';
import { clientHandshake } from './handshake.js';
import { Inbox } from './inbox.js';
import type { Logger } from './log.js';
import { MiddleMan, type ConnectionOwner, type MessageSink, type MMStats } from './mm.js';
import type { WireMessage } from './protocol.js';
import { ORIGINAL_CLIENT, originalClientHandshake } from './original.js';
import { describeTlsError, tlsClientTransport } from './tls.js';
import { tcp } from './transport.js';

type Phase =
  /** Until the server's ack: messages are the handshake's. */
  | { at: 'handshake'; inbox: Inbox<WireMessage> }
  /** Acked, until {@link ClientConnection.activate}: what arrived meanwhile (with its decoded size), and a close. */
  | { at: 'acked'; early: [WireMessage, number][]; closed: CloseInfo | null }
  /** The session's sink has the middle-man. */
  | { at: 'active' };

export class ClientConnection implements MessageSink, ConnectionOwner {
  private readonly mm: MiddleMan;
  private phase: Phase = { at: 'handshake', inbox: new Inbox<WireMessage>() };
  private readonly overTls: boolean;
  /** Resolves when the socket has closed (its resources are free). */
  readonly socketClosed: Promise<void>;
  private resolveSocketClosed!: () => void;

  private constructor(socket: Duplex, options: ConnectOptions, log: Logger) {
    this.socketClosed = new Promise((resolve) => (this.resolveSocketClosed = resolve));
    const maxDepth = options.maxDepth ?? CLIENT_DEFAULTS.maxDepth;
    const original = options.protocol === 'erlang';
    this.mm = new MiddleMan(
      socket,
      {
        codec: original ? etfCodec({ maxDepth }) : msgpackCodec({ maxDepth }),
        ...(original ? { dialect: ORIGINAL_CLIENT } : {}),
        maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
        sendBufferLimit: options.sendBufferLimit ?? CLIENT_DEFAULTS.sendBufferLimit,
        log,
      },
      this,
      this,
    );
    this.overTls = options.tls !== undefined;
  }

  /**
   * Connects and authenticates. Rejects with a ChanError named by lib_chan's words; the connection is closed then.
   * Messages that arrive with or after the ack (a push may share its chunk) wait for {@link activate}.
   */
  static async dial(t: Target, options: ConnectOptions, log: Logger, signal?: AbortSignal): Promise<ClientConnection> {
    const timeout = options.connectTimeout ?? CLIENT_DEFAULTS.connectTimeout;
    const deadline = Date.now() + timeout;
    if (options.protocol === 'erlang' && options.tls)
      throw new ChanError('usage', 'the original lib_chan protocol (protocol: erlang) has no TLS');
    const transport = options.transport ?? (options.tls ? tlsClientTransport(options.tls) : tcp);
    const connecting = transport.connect(t.host, t.port, timeout, options.localAddress);
    const { socket } = signal ? await untilAborted(connecting, signal) : await connecting;
    if (signal?.aborted) {
      socket.destroy();
      throw new ChanError('closed', 'the channel was closed while connecting');
    }
    const conn = new ClientConnection(socket, options, log);
    const onAbort = (): void => conn.close('normal', CLIENT_CLOSED);
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
      const ack = await Promise.race([conn.handshake(t, options), expired]);
      conn.mm.peerMaxFrameSize = ack.maxFrameSize;
      conn.mm.beginSession(
        options.protocol === 'erlang' ? 0 : (options.heartbeatInterval ?? ack.heartbeatInterval ?? 0),
        options.heartbeatMaxMissed ?? CLIENT_DEFAULTS.heartbeatMaxMissed,
      );
      return conn;
    } catch (err) {
      conn.close(
        err instanceof ChanError && isCloseReason(err.code) ? err.code : 'protocolError',
        err instanceof Error ? err.message : String(err),
      );
      throw err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async handshake(t: Target, options: ConnectOptions): ReturnType<typeof clientHandshake> {
    const inbox = this.phase.at === 'handshake' ? this.phase.inbox : new Inbox<WireMessage>();
    const io = { send: (m: WireMessage) => void this.mm.send(m), next: () => inbox.receive() };
    if (options.protocol === 'erlang') {
      await originalClientHandshake(io, { service: t.service, secret: t.secret, args: t.argsC });
      // The original states no limits and has no heartbeats: the server is sent nothing larger than we accept.
      return {
        kind: 'ack',
        version: 0,
        maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
        heartbeatInterval: 0,
      };
    }
    return clientHandshake(io, {
      service: t.service,
      secret: t.secret,
      args: t.argsC,
      maxFrameSize: options.maxFrameSize ?? CLIENT_DEFAULTS.maxFrameSize,
      ...(options.saltedPasswordCache === false
        ? {}
        : { saltedPassword: (options.saltedPasswordCache ?? defaultSaltedPasswordCache).get }),
    });
  }

  /**
   * Hands the session to `session` (setController): what arrived after the ack while the handshake was being checked
   * (what shared the ack's chunk; no I/O happens in between) is delivered first, in order, then everything else comes
   * straight from the middle-man.
   */
  activate(session: MessageSink): void {
    if (this.phase.at !== 'acked') throw new Error('activate() before the handshake ended');
    const { early, closed } = this.phase;
    this.phase = { at: 'active' };
    this.mm.setController(session);
    for (const [m, size] of early) session.onMessage(m, size, EMPTY, 0, 0);
    if (closed) session.onClosed(closed);
  }

  /** The handshake's messages, and those that arrive before activation (in the session the sink is the Channel). */
  onMessage(m: WireMessage, size: number): void {
    if (this.phase.at === 'handshake') {
      if (this.mm.dialect.isAck(m)) {
        const inbox = this.phase.inbox;
        this.phase = { at: 'acked', early: [], closed: null };
        inbox.put(m);
      } else if (this.phase.inbox.size >= MAX_BEFORE_ACK) {
        // Before its ack a server sends its challenge and nothing else: a peer sending more is not one. What it sent
        // is dropped, so that the handshake reads why it ended.
        this.phase.inbox.drop();
        this.mm.close('protocolError', `the server sent more than ${MAX_BEFORE_ACK} messages before its ack`);
      } else {
        this.phase.inbox.put(m);
      }
    } else if (this.phase.at === 'acked') {
      this.phase.early.push([m, size]);
    }
  }

  onClosed(info: CloseInfo): void {
    if (this.phase.at === 'handshake') this.phase.inbox.end({ error: this.handshakeError(info) });
    else if (this.phase.at === 'acked') this.phase.closed = info;
  }

  onSocketClosed(): void {
    this.resolveSocketClosed();
  }

  /** Sends a session message; false once the connection has ended. Throws badTerm or frameTooLarge. */
  send(m: WireMessage): boolean {
    return this.mm.send(m);
  }

  /** Resolves once the server has read everything sent before (a ping and its pong). */
  flush(timeout: number): Promise<void> {
    return this.mm.flush(timeout);
  }

  /** Resolves once what was sent has been handed to the network (or the connection ended). */
  drain(): Promise<void> {
    return this.mm.drain();
  }

  pauseReading(): void {
    this.mm.pauseReading();
  }

  resumeReading(): void {
    this.mm.resumeReading();
  }

  /** Ends the connection, telling the server why. */
  close(reason: CloseReason, text: string): void {
    this.mm.close(reason, text);
  }

  /** Why the connection ended, or null while it is open. */
  get closed(): CloseInfo | null {
    return this.mm.closed;
  }

  get stats(): MMStats {
    return this.mm.stats;
  }

  /** Round-trip time of the last answered heartbeat, ms. */
  get rtt(): number | undefined {
    return this.mm.rtt;
  }

  /** Why the handshake ended, in the words a person connecting needs. */
  private handshakeError(info: CloseInfo): ChanError {
    if (info.by === 'peer' && isCloseReason(info.reason) && info.reason !== 'peerClosed')
      return new ChanError(info.reason, info.text);
    // This side cut the handshake for the server's fault (a frame over our limit, a message out of place): that is
    // the error, not a bare `closed`.
    if (info.by === 'local' && (info.reason === 'protocolError' || info.reason === 'frameTooLarge'))
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
            'the server closed the connection without answering startService; if its port speaks TLS, connect with TLS (--tls, and --ca for your own CA)',
            { reason: info.reason },
          );
    }
    return closedError(info);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * `connecting`, or a rejection as soon as `signal` is aborted (the socket it then makes is destroyed as it comes).
 */
function untilAborted<T extends { socket: Duplex }>(connecting: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      connecting.then(
        ({ socket }) => socket.destroy(),
        () => {},
      );
      reject(new ChanError('closed', 'the channel was closed while connecting'));
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    connecting.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Messages a server may send before its ack (its challenge), kept while the client works out its proof. */
const MAX_BEFORE_ACK = 2;
