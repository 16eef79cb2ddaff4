/**
 * The frame role: lib_chan's `{packet, 4}`. Every frame is a 4-byte big-endian unsigned length, then that many
 * payload bytes. `FrameParser` is socket-free: feed it chunks as they arrive, split or merged however the network
 * likes, and it hands its sink each complete payload. The length is checked against `maxFrameSize` as soon as
 * its 4 bytes are in, before a byte of the payload is buffered or allocated. A large frame is not allocated at its
 * announced length: its buffer starts at 64 KiB and grows (doubling) with what arrives, so what a peer makes the parser
 * hold is at most 64 KiB or twice what it has sent, however small the pieces it sends it in.
 */
import { ChanError, LimitError } from './errors.js';

export const FRAME_HEADER_BYTES = 4;

/** Frames up to this long that span chunks get a buffer of their length at once; longer ones a buffer that grows. */
export const EAGER_FRAME_BYTES = 64 * 1024;

/**
 * Refuses, before it is sent, an encoded frame (`FRAME_HEADER_BYTES` free bytes, then the payload) longer than the
 * peer accepts: throws `frameTooLarge`, and nothing is sent.
 */
export function checkFrameSize(buf: Uint8Array, peerMaxFrameSize: number): void {
  const size = buf.length - FRAME_HEADER_BYTES;
  if (size > peerMaxFrameSize) {
    throw new LimitError(
      'frameTooLarge',
      `message of ${size} bytes is over the peer's max_frame_size of ${peerMaxFrameSize}`,
    );
  }
}

/**
 * Where a parser delivers frames: a function, given each payload as a Buffer (a view of the chunk, or the frame's own
 * buffer when it spanned chunks), or an object whose `onFrameRange` is given the payload as a range of the bytes it
 * lies in, `bytes` from `start` to `end` (no view made per frame, and no closure per connection). Either is valid only
 * during the call: copy to keep. (The method's name is not `onFrame`, so that an object written for a payload alone
 * does not compile as a range sink.)
 */
export type FrameSink = ((payload: Buffer) => void) | RangeSink;

export interface RangeSink {
  onFrameRange(bytes: Buffer, start: number, end: number): void;
}

/** A function sink as a range sink: its payload a view of the range (the whole buffer when the range is all of it). */
function viewing(fn: (payload: Buffer) => void): RangeSink {
  return {
    onFrameRange: (bytes, start, end) => fn(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end)),
  };
}

export class FrameParser {
  /** Frames longer than this are refused; may be raised or lowered between chunks (after authentication, say). */
  maxFrameSize: number;
  private readonly sink: RangeSink;
  /** Made only when a length prefix arrives split across chunks (rare: most connections never need it). */
  private header: Buffer | null = null;
  private headerFill = 0;
  /** The frame being assembled (a buffer of its length, or one that grows to it), and the length it will have. */
  private body: Buffer | null = null;
  private bodyLength = 0;
  private bodyFill = 0;
  private stopped = false;
  private paused = false;
  /** The unread rest of a chunk, kept while paused (at most one chunk). */
  private held: Buffer | null = null;

  constructor(maxFrameSize: number, sink: FrameSink) {
    this.maxFrameSize = maxFrameSize;
    this.sink = typeof sink === 'function' ? viewing(sink) : sink;
  }

  /** Bytes of an unfinished frame held so far (a small frame's whole buffer), and of a chunk held while paused. */
  get buffered(): number {
    return this.headerFill + (this.body ? this.body.length : this.bodyFill) + (this.held?.length ?? 0);
  }

  /**
   * Stops delivering frames after the current one (the consumer is full); the rest of the chunk is kept until
   * {@link resume}. Callable from inside the sink.
   */
  pause(): void {
    this.paused = true;
  }

  /** Delivers what was held, then goes on with later chunks. May throw like {@link push}. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const held = this.held;
    this.held = null;
    if (held) this.push(held);
  }

  /** Drops anything buffered and ignores all later input (the connection is closing). */
  stop(): void {
    this.stopped = true;
    this.body = null;
    this.bodyFill = 0;
    this.held = null;
  }

  /**
   * Consumes a chunk. A payload that lies whole inside the chunk is passed on as a range of it (no copy); one that
   * spans chunks is assembled in a buffer of exactly its length. Throws a `frameTooLarge` {@link ChanError}.
   */
  push(chunk: Buffer): void {
    if (this.stopped) return; // (before the pause: a connection closed while paused reads on to its end, keeping none)
    if (this.paused) {
      // A chunk already on its way when the socket was paused.
      this.held = this.held ? Buffer.concat([this.held, chunk]) : chunk;
      return;
    }
    let off = 0;
    const n = chunk.length;
    while (off < n && !this.stopped) {
      if (this.paused) {
        this.held = chunk.subarray(off);
        return;
      }
      if (this.bodyLength === 0) {
        let len: number;
        if (this.headerFill === 0 && n - off >= FRAME_HEADER_BYTES) {
          len = chunk.readUInt32BE(off);
          off += FRAME_HEADER_BYTES;
        } else {
          const header = (this.header ??= Buffer.alloc(FRAME_HEADER_BYTES));
          while (this.headerFill < FRAME_HEADER_BYTES && off < n) header[this.headerFill++] = chunk[off++] as number;
          if (this.headerFill < FRAME_HEADER_BYTES) return;
          this.headerFill = 0;
          len = header.readUInt32BE(0);
        }
        if (len > this.maxFrameSize) {
          this.stop();
          throw new ChanError('frameTooLarge', `frame of ${len} bytes is over the limit of ${this.maxFrameSize}`);
        }
        if (n - off >= len) {
          const start = off;
          off += len;
          this.sink.onFrameRange(chunk, start, off);
          continue;
        }
        this.bodyLength = len;
        this.bodyFill = 0;
        this.body = Buffer.allocUnsafe(Math.min(len, EAGER_FRAME_BYTES));
      }
      const take = Math.min(this.bodyLength - this.bodyFill, n - off);
      let body = this.body as Buffer;
      if (this.bodyFill + take > body.length) {
        const grown = Buffer.allocUnsafe(Math.min(this.bodyLength, Math.max(2 * body.length, this.bodyFill + take)));
        body.copy(grown, 0, 0, this.bodyFill);
        body = this.body = grown;
      }
      chunk.copy(body, this.bodyFill, off, off + take);
      this.bodyFill += take;
      off += take;
      if (this.bodyFill === this.bodyLength) {
        const payload = body;
        this.body = null;
        this.bodyLength = 0;
        this.bodyFill = 0;
        this.sink.onFrameRange(payload, 0, payload.length);
      }
    }
  }
}

/** Writes the length prefix into the first 4 bytes of `buf` (left free by the codec) and returns `buf`. */
export function sealFrame(buf: Buffer): Buffer {
  buf.writeUInt32BE(buf.length - FRAME_HEADER_BYTES, 0);
  return buf;
}

/** Whether `buf` starts where the `bytes` of a run of frames from `first` end, in the same memory (it extends the run). */
export function extendsRun(first: Buffer, bytes: number, buf: Buffer): boolean {
  return buf.buffer === first.buffer && buf.byteOffset === first.byteOffset + bytes;
}

/** The run of `bytes` from `first` (frames that lie end to end: see {@link extendsRun}) as one buffer, not copied. */
export function runOf(first: Buffer, bytes: number): Buffer {
  return bytes === first.length ? first : Buffer.from(first.buffer, first.byteOffset, bytes);
}

/** Frames an already encoded payload (tests and tools; the hot path uses the codec's headroom and `sealFrame`). */
export function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}
