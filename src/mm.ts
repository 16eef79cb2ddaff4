/**
 * The middle-man (lib_chan_mm): the only code that touches a socket. It turns bytes into messages for its
 * controller, one {@link MessageSink} (frame -> codec -> protocol), and messages into bytes (protocol -> codec ->
 * frame), and it owns the end of the connection: a close frame that tells the peer why, then FIN, then the socket is
 * destroyed if the peer lingers. Both sides use it. Its connection is its sink during the handshake, and hands the
 * sink over when the session starts (lib_chan's setController): to the handler process on a server, to the Channel on
 * a client. Pings, pongs and close frames are the middle-man's own: they never reach a sink.
 *
 * Contract with the sink: `onMessage` for every message but `close`, `ping` and `pong`, in order; then exactly one
 * `onClosed`, after which nothing more arrives; then the owner's `onEnded`, and `onSocketClosed` once the socket is
 * gone. Bad bytes from the peer never reach the sink: they close the connection with `frameTooLarge` or
 * `protocolError`, and the peer is told so.
 *
 * Back-pressure, both ways. Inbound: the controller calls `pauseReading()` when it is full, and no more frames arrive
 * (not even from the chunk being parsed) until `resumeReading()`. Outbound: the socket never refuses a write, so the
 * middle-man keeps what the socket has not taken in a queue of its own (the socket is given at most
 * `SOCKET_SHARE` bytes more at a time); past `sendBufferLimit` bytes the peer is not reading and the connection closes
 * with `slowConsumer`: the queue is dropped and the close frame goes next, so a peer that reads late still learns why.
 * `drain()` resolves when the queue has been handed to the kernel.
 *
 * Memory: every frame is decoded within a budget of its decoded size ({@link decodedSizeLimit} of the frame limit),
 * and sends are checked against the peer's. What the connection holds (the frame being received, the bytes waiting to
 * be sent) is reported to its {@link Account}; the controller reports what its own queues hold.
 */
import type { Duplex } from 'node:stream';
import type { Account } from './budget.js';
import { decodedSizeLimit, type Codec } from './codec/index.js';
import { ChanError, closedError, isCloseReason, type CloseInfo, type CloseReason } from './errors.js';
import { FRAME_HEADER_BYTES, FrameParser, checkFrameSize, extendsRun, runOf, sealFrame } from './frame.js';
import { Heartbeat, type Clock, type HeartbeatHost } from './heartbeat.js';
import type { Logger } from './log.js';
import { LIB_CHAN, MAX_CLOSE_TEXT, cutText, type Dialect, type WireMessage } from './protocol.js';
import { MAX_TIMER_MS } from './inbox.js';

const EMPTY = Buffer.alloc(0);
/** Shared by every middle-man with nothing queued: never pushed to (replaced on first use). */
const NO_FRAMES: Buffer[] = [];

/** How long a side that has sent its close frame waits for the peer to close before destroying the socket. */
export const CLOSE_LINGER_MS = 2000;

/**
 * Bytes the socket's own buffer is given at most (beyond one frame); the rest waits in the middle-man's queue, where
 * it can be counted, and dropped for a close frame.
 */
export const SOCKET_SHARE = 128 * 1024;

/**
 * Frames written in one turn of the event loop leave together (one `writev`), but not only at the turn's end: once
 * this many frames that the peer answers or waits on (rpcs, replies), or {@link EARLY_FLUSH_BYTES} of any, are gathered
 * they leave at once, so that a pipelining peer starts on the first answers while the rest are being made, instead of
 * both sides taking turns to idle. One-way frames (lib-chan's casts and pushes: the dialect's `oneWay`) leave by the
 * bytes or at the turn's end: nobody waits on them, and a system call per 16 of them was most of what a client sending
 * casts spent. (In the original protocol every message goes one way and any may be an answer: all count.)
 */
export const EARLY_FLUSH_FRAMES = 16;
export const EARLY_FLUSH_BYTES = 64 * 1024;

/** What the parser may hold, while reading is paused, before the socket itself is paused at once. */
const HOLD_WHILE_PAUSED = 64 * 1024;

interface PendingFlush {
  numbers: Set<number>;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

/** The middle-man's yes/no state, bits of one field (an idle connection keeps one field, not five). */
const CORKED = 1; // writes of this turn are being gathered
const IN_SESSION = 2; // the handshake is over: pings are allowed
const READING_PAUSED = 4; // the controller asked for no more frames
const SOCKET_PAUSED = 8; // the socket itself is paused (the controller's pause outlasted a turn of the event loop)
const END_WHEN_FLUSHED = 16; // close() was called with frames still queued: the socket is ended once they are out

/**
 * What a connection seldom uses, in an object made when first needed: an idle connection keeps one field for it. Once
 * made it stays: a connection that was paused once, or that is closing, keeps its 80 bytes (as much as the fields took
 * before they moved here).
 */
interface Rarely {
  /** Destroys the socket if the peer lingers after the close. */
  lingerTimer: NodeJS.Timeout | null;
  /** Pauses the socket itself if the controller's pause outlasts this turn. */
  pauseCheck: NodeJS.Immediate | null;
  /** drain() calls waiting for the queue to empty. */
  drainWaiters: (() => void)[] | null;
  /** flush() calls waiting for a pong, with the ping numbers that answer each. */
  flushes: PendingFlush[] | null;
  /** The latest ping heard while bytes were queued for the peer, to answer once they have gone (-1: none). */
  pendingPong: number;
  /** The last flush's ping number, less FLUSH_BASE (a small integer: no heap number per connection). */
  flushSeq: number;
  /** The connection's first byte, when it came alone (see startsLikeTls; -1: it did not). */
  firstByte: number;
}

/** flush() pings count from here, far above the heartbeat's numbers. */
const FLUSH_BASE = 0x8000_0000;

/** Close reasons that drop what is queued for the peer, so that the close frame reaches it next. */
const DROPS_QUEUE = new Set<string>(['slowConsumer', 'overloaded']);

/**
 * Where the middle-man's messages go (lib_chan's controller). One sink at a time: the connection's handshake first,
 * then whoever owns the conversation (the handler process on a server, the channel on a client), handed over with
 * {@link MiddleMan.setController}.
 */
export interface MessageSink {
  /**
   * `size` is what the decoded message costs in memory (its decoded size, bytes); the frame's bytes are `bytes` from
   * `start` to `end`, valid only during the call (copy to keep). (A client's messages that arrived before its channel
   * took over are handed to the channel afterwards without their bytes: an empty range.)
   */
  onMessage(m: WireMessage, size: number, bytes: Buffer, start: number, end: number): void;
  /** The connection has ended: called once, and nothing arrives after it. */
  onClosed(info: CloseInfo): void;
}

/** The connection that owns the middle-man: told after the sink that it ended, and when the socket is gone. */
export interface ConnectionOwner {
  onEnded?(info: CloseInfo): void;
  /** The socket itself has closed (after onClosed; its resources are free). */
  onSocketClosed?(): void;
}

export interface MiddleManOptions {
  codec: Codec;
  /** How messages are carried (default: lib-chan's protocol; the original's on the Erlang port). */
  dialect?: Dialect;
  /** The inbound frame limit to start with. */
  maxFrameSize: number;
  /** Outbound bytes that may wait for the peer before it is a slowConsumer. */
  sendBufferLimit: number;
  log: Logger;
  /** Where what the connection holds is counted (a server's connections; none on a client). */
  account?: Account | null;
  /** For tests: the heartbeat's clock. */
  clock?: Clock;
}

export interface MMStats {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
}

export class MiddleMan implements HeartbeatHost {
  /** Frames and bytes carried each way ({@link stats}): fields rather than an object, one object less a connection. */
  private framesIn = 0;
  private framesOut = 0;
  private bytesIn = 0;
  private bytesOut = 0;

  /** What the connection has carried so far, each way (a snapshot). */
  get stats(): MMStats {
    return { framesIn: this.framesIn, framesOut: this.framesOut, bytesIn: this.bytesIn, bytesOut: this.bytesOut };
  }
  /**
   * The largest frame the peer accepts, null until it says. (Not Infinity, which V8 would keep in a heap number of its
   * own for every connection: a field that holds null or a small integer holds the integer itself.)
   */
  private peerLimit: number | null = null;
  private closeInfo: CloseInfo | null = null;

  /** The largest frame the peer accepts (from its ack); larger sends are refused with frameTooLarge. */
  get peerMaxFrameSize(): number {
    return this.peerLimit ?? Number.POSITIVE_INFINITY;
  }

  set peerMaxFrameSize(bytes: number) {
    this.peerLimit = bytes === Number.POSITIVE_INFINITY ? null : bytes;
  }

  private readonly parser: FrameParser;
  private readonly codec: Codec;
  /** How messages become terms: lib-chan's protocol, or the original lib_chan's. */
  readonly dialect: Dialect;
  private readonly log: Logger;
  private readonly sendBufferLimit: number;
  private heartbeat: Heartbeat | null = null;
  /** CORKED, IN_SESSION, READING_PAUSED, SOCKET_PAUSED, END_WHEN_FLUSHED. */
  private flags = 0;
  /** Frames gathered since the last flush. */
  private corkedFrames = 0;
  private rare: Rarely | null = null;
  private readonly clock: Clock | undefined;
  private readonly account: Account | null;
  /**
   * This turn's latest frames that lie end to end in memory (the codec writes small values one after another into a
   * shared slab), not yet given to the socket: the first, and the bytes of the run from it. They go to the socket as
   * one view of the run ({@link emitGathered}): a `write` costs the stream about 120 ns whatever its size, and a turn
   * of pipelined answers or casts is hundreds of frames.
   */
  private gatherFirst: Buffer | null = null;
  private gatherBytes = 0;
  /** Frames the socket has not been given yet (see SOCKET_SHARE), from `outHead` on, and their bytes. */
  private out: Buffer[] = NO_FRAMES;
  private outHead = 0;
  private queuedOut = 0;
  /** The unfinished frame's bytes, as last reported to the account. */
  private reportedIn = 0;

  constructor(
    private readonly socket: Duplex,
    options: MiddleManOptions,
    private readonly owner: ConnectionOwner,
    private sink: MessageSink,
  ) {
    this.codec = options.codec;
    this.dialect = options.dialect ?? LIB_CHAN;
    this.log = options.log;
    this.sendBufferLimit = options.sendBufferLimit;
    this.clock = options.clock;
    this.account = options.account ?? null;
    this.parser = new FrameParser(options.maxFrameSize, this);
    // The listeners are shared functions that find their middle-man on the socket: no closures per connection.
    (socket as Owned)[kMM] = this;
    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('error', socketOnError);
    socket.on('close', socketOnClose);
    socket.on('drain', socketOnDrain);
  }

  private get rarely(): Rarely {
    this.rare ??= {
      lingerTimer: null,
      pauseCheck: null,
      drainWaiters: null,
      flushes: null,
      pendingPong: -1,
      flushSeq: 0,
      firstByte: -1,
    };
    return this.rare;
  }

  /**
   * Hands the conversation over (lib_chan's setController): every message from now on, and the end, go to `sink`.
   * Called between messages, so nothing is lost or delivered twice.
   */
  setController(sink: MessageSink): void {
    this.sink = sink;
  }

  /** Why the connection ended, or null while it is open. */
  get closed(): CloseInfo | null {
    return this.closeInfo;
  }

  /**
   * The handshake is over: pings are allowed from now on, and heartbeats start (see heartbeat.ts; an interval of 0
   * leaves them off).
   */
  beginSession(heartbeatInterval: number, maxMissed: number): void {
    this.flags |= IN_SESSION;
    if (heartbeatInterval <= 0 || this.closeInfo) return;
    this.heartbeat = new Heartbeat(this, heartbeatInterval, maxMissed, this.clock);
    this.heartbeat.start();
  }

  /** Round-trip time of the last answered heartbeat ping, ms. */
  get rtt(): number | undefined {
    return this.heartbeat?.rtt;
  }

  /** Bytes written and not yet handed to the kernel. */
  get queuedBytes(): number {
    return this.queuedOut + this.socket.writableLength + this.gatherBytes;
  }

  /** Stops reading the socket: no frame reaches the controller until {@link resumeReading}. */
  pauseReading(): void {
    if (this.flags & READING_PAUSED || this.closeInfo) return;
    this.flags |= READING_PAUSED;
    this.parser.pause();
    this.heartbeat?.suspend(true);
    // The socket itself is paused only if the pause outlasts this turn: a consumer that catches up at once (a handler
    // draining its mailbox in microtasks) costs no system calls. Meanwhile at most one more chunk is held.
    const r = this.rarely;
    if (!r.pauseCheck) r.pauseCheck = setImmediate(pauseIfStill, this);
  }

  resumeReading(): void {
    if (!(this.flags & READING_PAUSED) || this.closeInfo) return;
    this.flags &= ~READING_PAUSED;
    this.heartbeat?.suspend(false);
    try {
      this.parser.resume();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.reportIn();
    if (!(this.flags & READING_PAUSED) && !this.closeInfo && this.flags & SOCKET_PAUSED) {
      this.flags &= ~SOCKET_PAUSED;
      this.socket.resume();
    }
  }

  /** @internal */
  pauseSocketIfStillFull(): void {
    if (this.rare) this.rare.pauseCheck = null;
    if (this.flags & READING_PAUSED && !this.closeInfo && !(this.flags & SOCKET_PAUSED)) {
      this.flags |= SOCKET_PAUSED;
      this.socket.pause();
    }
  }

  /** Resolves once everything sent so far has been handed to the kernel (or the connection has ended). */
  drain(): Promise<void> {
    if (this.closeInfo || this.socket.destroyed) return Promise.resolve();
    this.emitGathered();
    if (this.queuedOut > 0)
      return new Promise<void>((resolve) => (this.rarely.drainWaiters ??= []).push(resolve)).then(() => this.drain());
    if (this.socket.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('close', done);
        resolve();
      };
      // Not the 'drain' event: Node emits it only after a write() returned false (16 KiB queued), so a smaller queue
      // would never report. A write's callback runs once every earlier write is done: an empty one marks the end.
      this.socket.write(EMPTY, done);
      this.socket.on('close', done);
    });
  }

  /** Raises (or lowers) the inbound frame limit, as the server does once the handshake is done. */
  setMaxFrameSize(bytes: number): void {
    this.parser.maxFrameSize = bytes;
  }

  /**
   * Sends a message. Returns false when the connection has already ended (like Erlang's `!`, sending to a closed
   * channel is not an error). Throws `badTerm` for a value that cannot be encoded and `frameTooLarge` for one over
   * the peer's limit; in both cases nothing is sent and the connection carries on.
   */
  send(m: WireMessage): boolean {
    if (this.closeInfo) return false;
    const t = this.dialect.toWire(m);
    if (t === undefined) return true; // a message the dialect does not carry (a ping in the original protocol)
    const buf = this.codec.encode(t, FRAME_HEADER_BYTES, decodedSizeLimit(this.peerMaxFrameSize));
    checkFrameSize(buf, this.peerMaxFrameSize);
    return this.sendEncoded(buf, this.dialect.oneWay(m));
  }

  /**
   * Sends a message encoded elsewhere (a worker thread, which has checked it against {@link peerMaxFrameSize}): `buf`
   * holds the payload after 4 free bytes for the length; `oneWay` when nobody waits on it (the dialect's
   * `oneWay`: see {@link EARLY_FLUSH_FRAMES}). Returns false when the connection has ended.
   */
  sendEncoded(buf: Buffer, oneWay = false): boolean {
    if (this.closeInfo) return false;
    this.write(buf, oneWay);
    this.framesOut++;
    this.bytesOut += buf.length;
    if (this.queuedOut + this.socket.writableLength + this.gatherBytes > this.sendBufferLimit) {
      this.close(
        'slowConsumer',
        `more than send_buffer_limit (${this.sendBufferLimit} bytes) waited for the peer to read`,
      );
    } else {
      this.reportOut();
    }
    return true;
  }

  /** Gives a sealed frame to the socket, or to the queue while the socket holds its share. */
  private write(buf: Buffer, oneWay = false): void {
    sealFrame(buf);
    if (this.queuedOut > 0 || this.socket.writableLength + this.gatherBytes >= SOCKET_SHARE) {
      this.emitGathered(); // what was gathered goes before what is queued
      if (this.out === NO_FRAMES) this.out = [];
      this.out.push(buf);
      this.queuedOut += buf.length;
      return;
    }
    if (!(this.flags & CORKED)) {
      // Frames written in the same turn of the event loop leave in one system call (writev), not one each.
      this.flags |= CORKED;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    this.gather(buf);
    if (
      (!oneWay && ++this.corkedFrames >= EARLY_FLUSH_FRAMES) ||
      this.socket.writableLength + this.gatherBytes >= EARLY_FLUSH_BYTES
    ) {
      // An early flush: what is gathered leaves now, and the turn's later frames gather again.
      this.corkedFrames = 0;
      this.emitGathered();
      this.socket.uncork();
      this.socket.cork();
    }
  }

  /** Adds a frame to the run being gathered, or gives the run to the socket and starts another with it. */
  private gather(buf: Buffer): void {
    const first = this.gatherFirst;
    if (first !== null) {
      if (extendsRun(first, this.gatherBytes, buf)) {
        this.gatherBytes += buf.length;
        return;
      }
      this.emitGathered();
    }
    this.gatherFirst = buf;
    this.gatherBytes = buf.length;
  }

  /** Gives the socket the frames gathered (one write), before anything else is written, ended or measured. */
  private emitGathered(): void {
    const first = this.gatherFirst;
    if (first === null) return;
    this.gatherFirst = null;
    const n = this.gatherBytes;
    this.gatherBytes = 0;
    if (!this.socket.destroyed) this.socket.write(runOf(first, n)); // (a write to a destroyed socket is dropped)
  }

  /** @internal The socket took what it had: give it the queue's next frames, up to its share. */
  flushOut(): void {
    this.emitGathered();
    if (this.queuedOut > 0 && !this.socket.destroyed) {
      const out = this.out;
      this.socket.cork();
      while (this.outHead < out.length && this.socket.writableLength < SOCKET_SHARE) {
        const buf = out[this.outHead] as Buffer;
        out[this.outHead++] = EMPTY;
        this.queuedOut -= buf.length;
        this.socket.write(buf);
      }
      this.socket.uncork();
      if (this.outHead === out.length) {
        this.out = NO_FRAMES;
        this.outHead = 0;
      }
    }
    if (this.queuedOut === 0) {
      this.wakeDrainWaiters();
      if (this.flags & END_WHEN_FLUSHED) {
        this.flags &= ~END_WHEN_FLUSHED;
        this.socket.end();
      }
    }
    this.reportOut();
  }

  /** Ends our side of the socket (FIN): now, or once the queued frames are out. */
  private endSocket(): void {
    this.emitGathered();
    if (this.queuedOut > 0) this.flags |= END_WHEN_FLUSHED;
    else this.socket.end();
  }

  /** Drops every frame still queued (the connection is being cut). */
  private dropQueued(): void {
    this.out = NO_FRAMES;
    this.outHead = 0;
    this.queuedOut = 0;
    this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    const r = this.rare;
    const waiters = r?.drainWaiters;
    if (!r || !waiters) return;
    r.drainWaiters = null;
    for (const w of waiters) w();
  }

  /**
   * Tells the account what waits to be sent now: the queue, and the socket's buffer once it is past the socket's
   * high-water mark (then a 'drain' is sure to come and correct the figure; below it, the bytes are too few to count and
   * would go out unannounced).
   */
  private reportOut(): void {
    const a = this.account;
    if (!a) return;
    const socket = this.socket;
    const pending = socket.writableLength + this.gatherBytes;
    const inSocket = socket.destroyed || pending < socket.writableHighWaterMark ? 0 : pending;
    a.setOutbound(this.queuedOut + inSocket);
  }

  /** Tells the account how much of an unfinished frame is held now. */
  private reportIn(): void {
    if (!this.account) return;
    const now = this.closeInfo ? 0 : this.parser.buffered;
    if (now !== this.reportedIn) {
      this.account.inbound(now - this.reportedIn);
      this.reportedIn = now;
    }
  }

  /** Destroys the socket at once (after close(), when the peer is slow to close its side). */
  destroy(): void {
    this.dropGathered();
    this.socket.destroy();
  }

  /** The socket is being destroyed: what was gathered will never leave (and must not keep its slab alive). */
  private dropGathered(): void {
    this.gatherFirst = null;
    this.gatherBytes = 0;
  }

  /** Ends the connection: tells the peer `reason` in a close frame, then closes the socket. Idempotent. */
  close(reason: CloseReason, text: string): void {
    if (this.closeInfo) return;
    // Cut for not reading (or for holding too much): what waits is dropped, so that the close frame goes next.
    if (DROPS_QUEUE.has(reason)) this.dropQueued();
    try {
      const t = this.socket.destroyed
        ? undefined
        : this.dialect.closeFrame(reason, cutText(text, this.closeTextRoom()), (this.flags & IN_SESSION) !== 0);
      if (t !== undefined) {
        const frame = this.codec.encode(t, FRAME_HEADER_BYTES);
        this.write(frame);
        this.framesOut++;
        this.bytesOut += frame.length;
      }
    } catch (err) {
      this.log.debug({ err }, 'could not send the close frame');
    }
    this.endSocket();
    this.reportOut(); // a dropped queue is freed now, not when the socket closes
    this.finish({ reason, text, by: 'local' });
  }

  /**
   * How much of a close text is sent: MAX_CLOSE_TEXT characters, or fewer, so that the frame fits the peer's limit
   * (a character takes at most 3 bytes of UTF-8; the rest of a close frame at most 96).
   */
  private closeTextRoom(): number {
    return Math.max(0, Math.min(MAX_CLOSE_TEXT, Math.floor((this.peerMaxFrameSize - 96) / 3)));
  }

  private finish(info: CloseInfo): void {
    this.closeInfo = info;
    this.parser.stop();
    this.heartbeat?.stop();
    this.reportIn();
    this.wakeDrainWaiters(); // drain() resolves once the connection has ended
    const r = this.rare;
    const flushes = r?.flushes;
    if (r && flushes) {
      r.flushes = null;
      for (const f of flushes) {
        if (f.timer) clearTimeout(f.timer);
        f.reject(closedError(info));
      }
    }
    if (!this.socket.destroyed) {
      this.socket.resume(); // read on, so that the peer's FIN (and the socket's close) can arrive
      const linger = setTimeout(destroySocket, CLOSE_LINGER_MS, this.socket);
      linger.unref();
      this.rarely.lingerTimer = linger;
    }
    this.sink.onClosed(info);
    this.owner.onEnded?.(info);
  }

  /** A fault of the peer's: close with the error's word, or protocolError. */
  private fail(err: unknown): void {
    if (err instanceof ChanError && isCloseReason(err.code)) {
      this.close(err.code, err.message);
    } else {
      this.log.error({ err }, 'unexpected error while reading a frame');
      this.close('internalError', 'an internal fault while reading a frame (see the log)');
    }
  }

  /** @internal The frame parser's sink: a frame's payload, `bytes` from `start` to `end`. */
  onFrameRange(bytes: Buffer, start: number, end: number): void {
    this.framesIn++;
    let m: WireMessage;
    let size: number;
    try {
      m = this.dialect.fromWire(this.codec.decode(bytes, decodedSizeLimit(this.parser.maxFrameSize), start, end));
      size = this.codec.lastDecodedSize;
    } catch (err) {
      this.fail(err);
      return;
    }
    switch (m.kind) {
      case 'close':
        this.endSocket();
        this.finish({ reason: m.reason, text: m.text, by: 'peer' });
        return;
      case 'ping':
        if (!(this.flags & IN_SESSION)) {
          this.fail(new ChanError('protocolError', 'ping before the handshake is done'));
          return;
        }
        this.answerPing(m.n);
        return;
      case 'pong':
        this.heartbeat?.pong(m.n);
        if (this.rare?.flushes) this.flushAnswered(m.n);
        return;
      default:
        this.sink.onMessage(m, size, bytes, start, end);
    }
  }

  /**
   * Every ping is answered, and a pong N tells the peer that everything it sent before ping N was read. With bytes
   * still queued for the peer, the answer waits until they have gone, and then answers the latest ping only: a peer
   * that pings without reading makes no pongs pile up.
   */
  private answerPing(n: number): void {
    const pending = this.rare;
    if (pending && pending.pendingPong >= 0) {
      pending.pendingPong = n;
      return;
    }
    if (this.queuedOut === 0 && this.socket.writableLength === 0 && this.gatherBytes === 0) {
      this.send({ kind: 'pong', n });
      return;
    }
    const r = this.rarely;
    r.pendingPong = n;
    // The callback of a write of nothing runs once everything written before it is out.
    this.emitGathered();
    this.socket.write(EMPTY, () => {
      const latest = r.pendingPong;
      r.pendingPong = -1;
      if (latest < 0 || this.closeInfo) return;
      try {
        this.send({ kind: 'pong', n: latest });
      } catch (err) {
        this.fail(err); // (from a write's callback, as a ping from a timer)
      }
    });
  }

  /**
   * Resolves once the peer has read everything sent before this call: a ping goes after it, and its pong (or the pong
   * of a later ping, which a peer with bytes queued answers instead) comes back. Rejects with `timeout` after
   * `timeout` ms, or with `closed` if the connection ends first.
   */
  flush(timeout: number): Promise<void> {
    if (this.closeInfo) return Promise.reject(closedError(this.closeInfo));
    // Numbers from the top half: never one of the heartbeat's (which counts from 1), so never an older ping's pong.
    const r = this.rarely;
    r.flushSeq = r.flushSeq >= 0xffff_ffff - FLUSH_BASE ? 0 : r.flushSeq + 1;
    const n = FLUSH_BASE + r.flushSeq;
    return new Promise((resolve, reject) => {
      this.alsoAnsweredBy(n);
      const flushes = (r.flushes ??= []);
      const f: PendingFlush = { numbers: new Set([n]), resolve, reject, timer: null };
      if (timeout <= MAX_TIMER_MS) {
        f.timer = setTimeout(() => {
          const rest = r.flushes?.filter((x) => x !== f) ?? [];
          r.flushes = rest.length > 0 ? rest : null;
          reject(new ChanError('timeout', `the peer did not confirm reading within ${timeout} ms`));
        }, timeout);
      }
      flushes.push(f);
      this.send({ kind: 'ping', n });
    });
  }

  /** A ping `n` goes out: its pong answers the flushes still waiting too (a peer with bytes queued answers only the latest). */
  private alsoAnsweredBy(n: number): void {
    const flushes = this.rare?.flushes;
    if (flushes) for (const f of flushes) f.numbers.add(n);
  }

  private flushAnswered(n: number): void {
    const r = this.rarely;
    const open = r.flushes ?? [];
    const done = open.filter((f) => f.numbers.has(n));
    r.flushes = open.length === done.length ? null : open.filter((f) => !f.numbers.has(n));
    for (const f of done) {
      if (f.timer) clearTimeout(f.timer);
      f.resolve();
    }
  }

  /** @internal The heartbeat's host. */
  sendPing(n: number): void {
    this.alsoAnsweredBy(n);
    // From a timer: a ping the peer's limits refuse (a peer stating a frame limit too small for one) ends the
    // connection with the reason, instead of throwing where nobody catches.
    try {
      this.send({ kind: 'ping', n });
    } catch (err) {
      this.fail(err);
    }
  }

  /** @internal The heartbeat's host: the peer has been silent too long. */
  dead(silentMs: number): void {
    this.close('timeout', `no frame from the peer for ${silentMs} ms (heartbeat)`);
    // A dead peer will not answer the close: do not linger.
    this.destroy();
  }

  /** @internal The turn's end: what was gathered leaves. */
  uncorkSocket(): void {
    this.flags &= ~CORKED;
    this.corkedFrames = 0;
    this.emitGathered();
    this.socket.uncork();
    this.reportOut();
  }

  /** @internal */
  onData(chunk: Buffer): void {
    const before = this.bytesIn;
    this.bytesIn += chunk.length;
    if (before < 2 && this.startsLikeTls(before, chunk)) {
      // A TLS handshake or alert record where a frame header should be (as a length it would be over 350 MB).
      this.fail(
        new ChanError(
          'protocolError',
          'the peer speaks TLS on a connection without TLS: both sides must use TLS, or neither',
        ),
      );
      return;
    }
    const framesBefore = this.framesIn;
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.fail(err);
    }
    // The peer is heard from when a whole frame has come, not a chunk (a peer dribbling one endless frame is silent);
    // once a chunk, not once a frame: the clock is read once for the many frames a busy connection's chunk holds.
    if (this.framesIn !== framesBefore) this.heartbeat?.heard();
    // Paused, and chunks keep coming within this turn (the kernel had many): stop the socket now, not at the turn's end.
    if (
      (this.flags & (READING_PAUSED | SOCKET_PAUSED)) === READING_PAUSED &&
      !this.closeInfo &&
      this.parser.buffered >= HOLD_WHILE_PAUSED
    )
      this.pauseSocketIfStillFull();
    this.reportIn();
  }

  /**
   * A TLS handshake or alert record's first two bytes (16 03, 15 03) where a frame header should be, however the bytes
   * were split between reads.
   */
  private startsLikeTls(before: number, chunk: Buffer): boolean {
    let first: number;
    if (before === 0) {
      first = chunk[0] ?? -1;
      // A first byte that came alone is kept for the next chunk (rare: an object made for it).
      if (chunk.length === 1) this.rarely.firstByte = first;
    } else {
      first = this.rare?.firstByte ?? -1;
    }
    const second = before === 0 ? chunk[1] : chunk[0];
    return second === 0x03 && (first === 0x16 || first === 0x15);
  }

  /** @internal */
  onEnd(): void {
    if (!this.closeInfo) this.finish({ reason: 'peerClosed', text: 'the peer closed the connection', by: 'peer' });
  }

  /** @internal */
  onError(err: Error): void {
    this.log.debug({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'socket error');
    if (!this.closeInfo)
      this.finish({ reason: 'peerClosed', text: `connection lost: ${err.message.trim()}`, by: 'peer', error: err });
    this.destroy();
  }

  /** @internal */
  onClose(): void {
    const linger = this.rare?.lingerTimer;
    if (linger) clearTimeout(linger);
    // Whatever was still queued is gone with the socket: the account is square.
    this.dropQueued();
    this.reportOut();
    if (!this.closeInfo) this.finish({ reason: 'peerClosed', text: 'the connection was closed', by: 'peer' });
    this.owner.onSocketClosed?.();
  }
}

const kMM = Symbol('lib-chan middle-man');
type Owned = Duplex & { [kMM]: MiddleMan };

function socketOnData(this: Owned, chunk: Buffer): void {
  this[kMM].onData(chunk);
}
function socketOnEnd(this: Owned): void {
  this[kMM].onEnd();
}
function socketOnError(this: Owned, err: Error): void {
  this[kMM].onError(err);
}
function socketOnClose(this: Owned): void {
  this[kMM].onClose();
}
function socketOnDrain(this: Owned): void {
  this[kMM].flushOut();
}
function pauseIfStill(mm: MiddleMan): void {
  mm.pauseSocketIfStillFull();
}
function uncork(mm: MiddleMan): void {
  mm.uncorkSocket();
}
function destroySocket(socket: Duplex): void {
  socket.destroy();
}
