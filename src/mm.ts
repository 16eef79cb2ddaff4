/**
 * The middle-man (lib_chan_mm): the only code that touches a socket. It turns bytes into messages for its
 * controller (frame -> codec -> protocol) and messages into bytes (protocol -> codec -> frame), and it owns the end of
 * the connection: a close frame that tells the peer why, then FIN, then the socket is destroyed if the peer lingers.
 * Both sides use it: the server puts a handshake and then a handler behind it; the client puts a channel.
 *
 * Contract with the controller: `onMessage` for every message but `close`, in order; then exactly one `onClosed`, after
 * which nothing more arrives. Bad bytes from the peer never reach the controller: they close the connection with
 * `frameTooLarge` or `protocolError`, and the peer is told so.
 */
import type { Duplex } from 'node:stream';
import type { Codec } from './codec/index.js';
import { ChanError, isCloseReason, type CloseReason } from './errors.js';
import { FRAME_HEADER_BYTES, FrameParser, sealFrame } from './frame.js';
import type { Logger } from './log.js';
import { fromWire, toWire, type WireMessage } from './protocol.js';

/** How long a side that has sent its close frame waits for the peer to close before destroying the socket. */
export const CLOSE_LINGER_MS = 2000;

export interface CloseInfo {
  /** A word from CLOSE_REASONS (a newer peer may send one this version does not know). */
  reason: CloseReason | string;
  /** For people: what happened. */
  text: string;
  /** Which side ended the connection. */
  by: 'local' | 'peer';
}

export interface MMController {
  onMessage(m: WireMessage): void;
  onClosed(info: CloseInfo): void;
}

export interface MiddleManOptions {
  codec: Codec;
  /** The inbound frame limit to start with. */
  maxFrameSize: number;
  log: Logger;
}

export interface MMStats {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
}

export class MiddleMan {
  readonly stats: MMStats = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0 };
  /** The largest frame the peer accepts (from its ack); larger sends are refused with frameTooLarge. */
  peerMaxFrameSize = Number.POSITIVE_INFINITY;
  private closeInfo: CloseInfo | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  private readonly parser: FrameParser;
  private readonly codec: Codec;
  private readonly log: Logger;

  constructor(
    private readonly socket: Duplex,
    options: MiddleManOptions,
    private readonly controller: MMController,
  ) {
    this.codec = options.codec;
    this.log = options.log;
    this.parser = new FrameParser(options.maxFrameSize, this.parserOnFrame);
    socket.on('data', this.socketOnData);
    socket.on('end', this.socketOnEnd);
    socket.on('error', this.socketOnError);
    socket.on('close', this.socketOnClose);
  }

  /** Why the connection ended, or null while it is open. */
  get closed(): CloseInfo | null {
    return this.closeInfo;
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
    const buf = this.codec.encode(toWire(m), FRAME_HEADER_BYTES);
    const size = buf.length - FRAME_HEADER_BYTES;
    if (size > this.peerMaxFrameSize) {
      throw new ChanError('frameTooLarge', `message of ${size} bytes is over the peer's max_frame_size of ${this.peerMaxFrameSize}`);
    }
    this.socket.write(sealFrame(buf));
    this.stats.framesOut++;
    this.stats.bytesOut += buf.length;
    return true;
  }

  /** Ends the connection: tells the peer `reason` in a close frame, then closes the socket. Idempotent. */
  close(reason: CloseReason, text: string): void {
    if (this.closeInfo) return;
    try {
      this.send({ kind: 'close', reason, text });
    } catch (err) {
      this.log.debug({ err }, 'could not send the close frame');
    }
    this.socket.end();
    this.finish({ reason, text, by: 'local' });
  }

  private finish(info: CloseInfo): void {
    this.closeInfo = info;
    this.parser.stop();
    if (!this.socket.destroyed) {
      this.socket.resume(); // read on, so that the peer's FIN (and the socket's close) can arrive
      this.lingerTimer = setTimeout(this.lingerOnTimeout, CLOSE_LINGER_MS);
      this.lingerTimer.unref();
    }
    this.controller.onClosed(info);
  }

  /** A fault of the peer's: close with the error's word, or protocolError. */
  private fail(err: unknown): void {
    if (err instanceof ChanError && isCloseReason(err.code)) {
      this.close(err.code, err.message);
    } else {
      this.log.error({ err }, 'unexpected error while reading a frame');
      this.close('internalError', 'the server failed to read a frame');
    }
  }

  private readonly parserOnFrame = (payload: Buffer): void => {
    this.stats.framesIn++;
    let m: WireMessage;
    try {
      m = fromWire(this.codec.decode(payload));
    } catch (err) {
      this.fail(err);
      return;
    }
    if (m.kind === 'close') {
      this.socket.end();
      this.finish({ reason: m.reason, text: m.text, by: 'peer' });
      return;
    }
    this.controller.onMessage(m);
  };

  private readonly socketOnData = (chunk: Buffer): void => {
    this.stats.bytesIn += chunk.length;
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.fail(err);
    }
  };

  private readonly socketOnEnd = (): void => {
    if (!this.closeInfo) this.finish({ reason: 'peerClosed', text: 'the peer closed the connection', by: 'peer' });
  };

  private readonly socketOnError = (err: Error): void => {
    this.log.debug({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'socket error');
    if (!this.closeInfo) this.finish({ reason: 'peerClosed', text: `connection lost: ${err.message}`, by: 'peer' });
    this.socket.destroy();
  };

  private readonly socketOnClose = (): void => {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    if (!this.closeInfo) this.finish({ reason: 'peerClosed', text: 'the connection was closed', by: 'peer' });
  };

  private readonly lingerOnTimeout = (): void => {
    this.socket.destroy();
  };
}
