/**
 * What both codecs' encoders write into (a buffer that grows) and the one rule they, and both decoders, charge decoded
 * size by.
 */
import { LimitError, type ChanError } from '../errors.js';

/**
 * The most a frame may cost once decoded, per byte of the receiver's frame limit: a frame of `max_frame_size` bytes
 * never becomes more than this many times its limit in memory (what each value costs: COST in msgpack.ts).
 */
export const DECODED_SIZE_RATIO = 8;

/** Refuses (frameTooLarge) a decoded size past its limit: the one rule the decoder, the encoder and measure charge by. */
export function checkCost(cost: number, limit: number): void {
  if (cost > limit) throw tooCostly(cost, limit);
}

function tooCostly(cost: number, limit: number): ChanError {
  return new LimitError(
    'frameTooLarge',
    `the value would take more than ${limit} bytes once decoded (its decoded size is at least ${cost}; the limit is ${DECODED_SIZE_RATIO} x the receiver's max_frame_size)`,
  );
}

/**
 * A buffer that grows as terms are written into it, with the decoded size of what has been written. `busy` marks one
 * in use, so that a shared writer is never written by two encodes at once (a getter that re-enters the encoder).
 */
export class Writer {
  buf: Buffer = Buffer.allocUnsafe(1024);
  pos = 0;
  /** Where the value being written starts in `buf`: growing moves the bytes from here on (to the same offsets). */
  base = 0;
  /** A buffer an earlier value grew into, used again by a later one it is large enough for. */
  spare: Buffer | null = null;
  busy = false;
  /** The decoded size of what has been written, and the receiver's budget for it. */
  cost = 0;
  maxCost = Number.POSITIVE_INFINITY;

  charge(n: number): void {
    checkCost((this.cost += n), this.maxCost);
  }

  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  /** Room for `n` more bytes: a buffer twice as large (or more), the value's bytes at the same offsets in it. */
  private grow(n: number): void {
    let size = Math.max(1024, this.buf.length * 2);
    while (size < this.pos + n) size *= 2;
    const spare = this.spare;
    const next = spare !== null && spare !== this.buf && spare.length >= size ? spare : Buffer.allocUnsafe(size);
    this.buf.copy(next, this.base, this.base, this.pos);
    this.buf = next;
  }
  u8(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }
  u8u8(a: number, b: number): void {
    this.ensure(2);
    this.buf[this.pos++] = a;
    this.buf[this.pos++] = b;
  }
  u8u16(a: number, b: number): void {
    this.ensure(3);
    this.buf[this.pos] = a;
    this.buf.writeUInt16BE(b, this.pos + 1);
    this.pos += 3;
  }
  u8u32(a: number, b: number): void {
    this.ensure(5);
    this.buf[this.pos] = a;
    this.buf.writeUInt32BE(b, this.pos + 1);
    this.pos += 5;
  }
}
