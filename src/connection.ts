/**
 * One client connection on the server (lib_chan_cs's per-connection process), in one of three phases:
 *
 *   handshake  the middle-man's messages go to the handshake machine (handshake.ts), within `handshake_timeout` and
 *              `max_frame_size_unauth`, holding a place among unauthenticated connections (admission.ts);
 *   session    the handshake accepted: the middle-man is handed to the service's handler process (setController),
 *              and the client's messages go straight to it; this object no longer sees them;
 *   closed     the connection has ended; the socket may still be closing.
 *
 * A connection's faults stay in that connection.
 */
import type { Ticket } from './admission.js';
import type { AuthThrottle } from './auth/throttle.js';
import { Account, type QueueBudget, type Shed } from './budget.js';
import type { Codec } from './codec/index.js';
import type { ServerSettings } from './config/load.js';
import type { DirectoryEntry } from './directory.js';
import { ServerHandshake, type HandshakeOutcome } from './handshake.js';
import { monotonicMs } from './heartbeat.js';
import { escapeControl, type Logger } from './log.js';
import { ChanError, type CloseInfo } from './errors.js';
import { MiddleMan, type ConnectionOwner, type MessageSink, type MMStats } from './mm.js';
import type { Observer } from './metrics.js';
import { LIB_CHAN, type Dialect, type WireMessage } from './protocol.js';
import type { ProcessHandle } from './runner.js';
import type { Term } from './term/model.js';
import type { Duplex } from 'node:stream';
import { settling, type Settling } from './settling.js';
import type { PeerInfo } from './transport.js';

/** The handshake of one connection, in either protocol: fed each message, it says what to do. */
export interface HandshakeMachine {
  step(m: WireMessage): HandshakeOutcome<DirectoryEntry>;
  /** The service asked for, once known (for logs). */
  readonly service: string | undefined;
}

/** What a port speaks: lib-chan's protocol (the main port), or the original lib_chan's (the Erlang port). */
export interface PortProtocol {
  readonly codec: Codec;
  readonly dialect: Dialect;
  /** A handshake for a new connection from `peer`. */
  handshake(host: ConnectionHost, peer: PeerInfo): HandshakeMachine;
  /** Whether the session has heartbeats (the original protocol has none). */
  readonly heartbeats: boolean;
  /** The largest frame the peer takes, when the protocol does not let it say (the original): the server's own. */
  readonly peerMaxFrameSize?: number;
}

/** lib-chan's protocol, on a server whose settings are `settings`. */
export function libChanPort(codec: Codec): PortProtocol {
  return {
    codec,
    dialect: LIB_CHAN,
    heartbeats: true,
    handshake: (host, peer) =>
      new ServerHandshake({
        lookup: (name) => host.auth(name),
        maxFrameSize: host.settings.maxFrameSize,
        heartbeatInterval: host.settings.heartbeatInterval,
        peer: peer.certCn === undefined ? { address: peer.address } : { address: peer.address, certCn: peer.certCn },
        throttle: host.throttle,
      }),
  };
}

/** What a connection needs of its server. */
export interface ConnectionHost {
  readonly settings: ServerSettings;
  readonly log: Logger;
  /** What all connections may hold together (max_queued_bytes). */
  readonly budget: QueueBudget;
  readonly throttle: AuthThrottle;
  /** Told of handshakes and closes (the admin port's metrics). */
  readonly observer: Observer;
  /** What a handshake starting now reads of that service (a reload swaps it whole), and the service to attach to. */
  auth(name: string): DirectoryEntry | undefined;
  /** The connection's socket has closed: it is no longer the server's. */
  forget(c: ServerConnection): void;
}

/** A connection's yes/no state, bits of one field. */
const SOCKET_CLOSED = 1; // the socket has closed
const OUTCOME_TOLD = 2; // the handshake's outcome has been told to the observer
const ENDED = 4; // the connection has ended: the metrics no longer count it as open (its socket may linger a while)

/** What the handshake phase holds, let go when it ends. */
interface Handshaking {
  handshake: HandshakeMachine;
  timer: NodeJS.Timeout;
  ticket: Ticket | null;
}

export class ServerConnection implements MessageSink, ConnectionOwner, Shed {
  private readonly mm: MiddleMan;
  /** What this connection makes the server hold. */
  private readonly account: Account;
  /** The handshake phase's machine, timer and ticket; null once it has ended (accepted or closed). */
  private handshaking: Handshaking | null;
  /** The handler process, from the session's start. (Fields, not a phase object: an idle connection keeps less.) */
  private process: ProcessHandle | null = null;
  /** The service, once the handshake has accepted it. */
  private service: string | null = null;
  private childLog: Logger | null = null;
  private readonly openedAt = monotonicMs();
  /** SOCKET_CLOSED, OUTCOME_TOLD, ENDED. */
  private flags = 0;
  /**
   * What the connection carried in its handshake (told to the observer as such at accept; zero before), in fields of
   * its own rather than an object (an idle connection keeps 32 bytes less).
   */
  private handshakeFramesIn = 0;
  private handshakeFramesOut = 0;
  private handshakeBytesIn = 0;
  private handshakeBytesOut = 0;
  /** What {@link done} returned, and how it is resolved (made only when someone waits). */
  private closing: Settling<void> | null = null;

  constructor(
    private readonly host: ConnectionHost,
    socket: Duplex,
    private readonly peer: PeerInfo,
    private readonly id: number,
    /** Its place among connections in the handshake, until the handshake ends. */
    ticket: Ticket | null,
    /** What its port speaks. */
    private readonly protocol: PortProtocol,
  ) {
    const s = host.settings;
    this.account = new Account(host.budget, this);
    this.mm = new MiddleMan(
      socket,
      {
        codec: protocol.codec,
        dialect: protocol.dialect,
        maxFrameSize: s.maxFrameSizeUnauth,
        sendBufferLimit: s.sendBufferLimit,
        log: host.log,
        account: this.account,
      },
      this,
      this,
    );
    if (protocol.peerMaxFrameSize !== undefined) this.mm.peerMaxFrameSize = protocol.peerMaxFrameSize;
    const handshake = protocol.handshake(host, peer);
    // The timer runs from the moment the connection is handed over: TCP accept, or the end of the TLS handshake.
    const timer = setTimeout(handshakeTimedOut, s.handshakeTimeout, this);
    this.handshaking = { handshake, timer, ticket };
    ticket?.onEvict((text) => this.mm.close('tooManyConnections', text));
  }

  /** Resolves when the socket is closed (made only when someone waits: at shutdown). */
  get done(): Promise<void> {
    if (this.flags & SOCKET_CLOSED) return Promise.resolve();
    this.closing ??= settling<void>();
    return this.closing.promise;
  }

  /** A logger for this connection (made on first use: most connections never need their own). */
  get log(): Logger {
    this.childLog ??= this.host.log.child(this.fields());
    return this.childLog;
  }

  /**
   * What every log line of this connection carries (made when a line is written, not kept; a caller may add to it).
   * Built by assignment: spreading optional parts made an object per part and a slow one in the end.
   */
  private fields(): Record<string, unknown> {
    const { peer, protocol } = this;
    const f: Record<string, unknown> = { conn: this.id, peer: peer.name };
    if (protocol.dialect !== LIB_CHAN) f.protocol = protocol.dialect.name;
    if (peer.certCn !== undefined) f.cn = escapeControl(peer.certCn);
    if (this.service !== null) f.service = this.service;
    return f;
  }

  /** @internal */
  handshakeTimedOut(): void {
    this.mm.close(
      'timeout',
      `handshake not completed within handshake_timeout (${this.host.settings.handshakeTimeout} ms)`,
    );
  }

  shutdown(): void {
    this.mm.close('shutdown', 'the server is shutting down');
  }

  /** The server is over max_queued_bytes and this connection holds the most: drop what it holds, and close. */
  shed(reason: 'slowConsumer' | 'overloaded', text: string): boolean {
    const open = this.mm.closed === null;
    const held = this.account.held;
    this.process?.shed();
    this.mm.close(reason, text);
    if (open || this.account.held < held) this.log.warn({ reason, held }, text);
    return open || this.account.held < held;
  }

  /** At the end of shutdown_timeout: the socket goes, whether or not the peer has closed its side. */
  destroy(): void {
    this.mm.destroy();
  }

  get queuedMessages(): number {
    return this.process?.queued ?? 0;
  }

  /** The handler process's end, once one runs. */
  get handlerDone(): Promise<unknown> | null {
    return this.process?.done ?? null;
  }

  get queuedBytes(): number {
    return this.mm.queuedBytes;
  }

  /** A message of the handshake phase (the session's go to the handler process). */
  onMessage(m: WireMessage): void {
    if (!this.handshaking) return;
    const handshake = this.handshaking.handshake;
    const out = handshake.step(m);
    // The client's own frame limit holds from its startService on (a refusal's close frame must fit it too).
    if (out.peerMaxFrameSize !== undefined) this.mm.peerMaxFrameSize = out.peerMaxFrameSize;
    switch (out.kind) {
      case 'send':
        this.sendInHandshake(m, handshake, out.message);
        return;
      case 'close': {
        this.tellOutcome(out.reason === 'normal' ? 'hello' : out.reason, handshake.service ?? null);
        if (out.answer) this.mm.send(out.answer);
        if (out.reason !== 'normal') this.logRefusal(m, handshake, out.reason, out.text, out.lockedOut);
        this.mm.close(out.reason, out.text);
        return;
      }
      case 'accept':
        this.accept(out.service, out.args, out.ack);
        return;
    }
  }

  /**
   * Sends the handshake's next message (the challenge). One that would be over the limit the client stated (a long
   * nonce under a small maxFrameSize, both the client's choice) refuses the client with protocolError: the frame is
   * not sent, and the fault named is the client's.
   */
  private sendInHandshake(m: WireMessage, handshake: HandshakeMachine, message: WireMessage): void {
    try {
      this.mm.send(message);
    } catch (err) {
      if (!(err instanceof ChanError && err.code === 'frameTooLarge')) throw err;
      // (The start of the text says it: under a small limit the close frame keeps only its first fifty characters.)
      const text = `nonce too long for the maxFrameSize stated: the ${message.kind} would not fit (${err.message}); state a larger limit or send a shorter nonce`;
      this.tellOutcome('protocolError', handshake.service ?? null);
      this.logRefusal(m, handshake, 'protocolError', text);
      this.mm.close('protocolError', text);
    }
  }

  private logRefusal(m: WireMessage, h: HandshakeMachine, reason: string, text: string, lockedOut?: boolean): void {
    // The service name comes from the peer: cut it, so a hostile client cannot fill the log, and escape it (and the
    // text that quotes it), so that it cannot drive the terminal of an operator reading the log.
    const service = escapeControl(m.kind === 'startService' ? m.service.slice(0, 100) : (h.service ?? ''));
    if (reason === 'authFail') this.log.warn({ reason, service, lockedOut }, escapeControl(text));
    else this.log.info({ reason, service }, escapeControl(text));
  }

  private tellOutcome(outcome: string, service: string | null): void {
    if (this.flags & OUTCOME_TOLD) return;
    this.flags |= OUTCOME_TOLD;
    this.host.observer.handshake(outcome, service);
  }

  private accept(entry: DirectoryEntry, argsC: Term, ack: WireMessage): void {
    this.tellOutcome('ack', entry.name);
    // The handshake's frames stay counted as the handshake's: the service's count starts here.
    const h = this.mm.stats;
    this.handshakeFramesIn = h.framesIn;
    this.handshakeFramesOut = h.framesOut;
    this.handshakeBytesIn = h.bytesIn;
    this.handshakeBytesOut = h.bytesOut;
    this.host.observer.carried(null, h);
    this.leaveHandshake();
    this.service = entry.name;
    this.childLog = null;
    const s = this.host.settings;
    this.mm.setMaxFrameSize(s.maxFrameSize);
    this.mm.send(ack);
    // Sending can itself end the connection (slowConsumer): then there is no process to start.
    if (this.mm.closed) return;
    this.mm.beginSession(this.protocol.heartbeats ? s.heartbeatInterval : 0, s.heartbeatMaxMissed);
    this.host.log.info(this.fields(), 'connection opened');
    const process = entry.service.attach({
      mm: this.mm,
      id: this.id,
      peer: this.peer.name,
      logs: this,
      argsC,
      account: this.account,
      observer: this.host.observer,
    });
    // The handler's messages, and its end, come to it from now on; only then does it run (it may close at once).
    this.process = process;
    this.mm.setController(process);
    process.start();
  }

  /** Leaves the handshake phase (accepted or closed): its timer and its place among unauthenticated connections go. */
  private leaveHandshake(): void {
    const h = this.handshaking;
    if (!h) return;
    clearTimeout(h.timer);
    h.ticket?.release();
    this.handshaking = null;
  }

  /** The connection ended during the handshake (the sink's end; in the session the handler process gets it). */
  onClosed(info: CloseInfo): void {
    if (this.handshaking) this.tellOutcome(info.reason, this.handshaking.handshake.service ?? null);
    this.leaveHandshake();
  }

  /**
   * The service (null in the handshake), the protocol, and what the connection has carried for it so far (since its
   * handshake, once in the session); null once it has ended.
   */
  get snapshot(): { service: string | null; protocol: string; stats: MMStats } | null {
    if (this.flags & ENDED) return null;
    return {
      service: this.service,
      protocol: this.protocol.dialect.name,
      stats: this.sinceHandshake(),
    };
  }

  private sinceHandshake(): MMStats {
    const s = this.mm.stats;
    return {
      framesIn: s.framesIn - this.handshakeFramesIn,
      framesOut: s.framesOut - this.handshakeFramesOut,
      bytesIn: s.bytesIn - this.handshakeBytesIn,
      bytesOut: s.bytesOut - this.handshakeBytesOut,
    };
  }

  onEnded(info: CloseInfo): void {
    const s = this.mm.stats;
    this.host.observer.closed(info.reason, this.service, this.sinceHandshake());
    this.flags |= ENDED;
    const f = this.fields();
    f.reason = info.by === 'peer' ? escapeControl(info.reason) : info.reason;
    f.by = info.by;
    f.ms = monotonicMs() - this.openedAt;
    f.framesIn = s.framesIn;
    f.framesOut = s.framesOut;
    f.bytesIn = s.bytesIn;
    f.bytesOut = s.bytesOut;
    this.host.log.info(f, 'connection closed');
  }

  onSocketClosed(): void {
    this.flags |= SOCKET_CLOSED;
    this.closing?.resolve();
    this.host.forget(this);
  }
}

function handshakeTimedOut(c: ServerConnection): void {
  c.handshakeTimedOut();
}
