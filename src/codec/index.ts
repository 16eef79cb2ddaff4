/**
 * The codec role: message value <-> frame payload. MessagePack (`msgpack.ts`) for our protocol, and Erlang's External
 * Term Format (`etf.ts`) for the original lib_chan protocol of Erlang peers (docs/ERLANG.md).
 */
import type { Term } from '../term/model.js';
import { decodeEtf, encodeEtf, lastEtfDecodedSize } from './etf.js';
import { decode, encode, lastDecodedSize } from './msgpack.js';

export { COST, DECODED_SIZE_RATIO, decodedSizeLimit } from './msgpack.js';

export interface Codec {
  readonly name: string;
  /**
   * Encodes `value`, leaving `headroom` unused bytes at the start of the result. Throws `badTerm`, or `frameTooLarge`
   * when its decoded size would pass `maxDecodedSize` (the receiver's budget). The result may be a view of a buffer
   * that other results share: write within it only, and copy it to hand its memory over (a transfer to a worker).
   */
  encode(value: unknown, headroom: number, maxDecodedSize?: number): Buffer;
  /**
   * Decodes one payload: all of `payload`, or its bytes from `start` to `end` (a frame inside the chunk it arrived in).
   * Throws `protocolError`, with a message that never quotes the input, or `frameTooLarge` when the value would take
   * more than `maxDecodedSize` bytes of memory.
   */
  decode(payload: Uint8Array, maxDecodedSize?: number, start?: number, end?: number): Term;
  /** What the value the last `decode` returned costs in memory, bytes (the mailboxes' byte budgets count it). */
  readonly lastDecodedSize: number;
}

export interface CodecOptions {
  /** Containers nested deeper than this are refused on decode and on encode. */
  maxDepth: number;
}

export function msgpackCodec(options: CodecOptions): Codec {
  // One level more than the user's: every message travels inside an envelope array (docs/PROTOCOL.md).
  const depth = options.maxDepth + 1;
  return {
    name: 'msgpack',
    encode: (value, headroom, maxDecodedSize) => encode(value, depth, headroom, maxDecodedSize),
    decode: (payload, maxDecodedSize, start, end) => decode(payload, depth, maxDecodedSize, start, end),
    get lastDecodedSize() {
      return lastDecodedSize();
    },
  };
}

/**
 * Erlang's External Term Format (etf.ts), for the original lib_chan protocol: a message is the term itself, with no
 * envelope around it.
 */
export function etfCodec(options: CodecOptions): Codec {
  return {
    name: 'etf',
    encode: (value, headroom, maxDecodedSize) => encodeEtf(value, options.maxDepth, headroom, maxDecodedSize),
    decode: (payload, maxDecodedSize, start, end) =>
      decodeEtf(
        start === undefined && end === undefined ? payload : payload.subarray(start, end),
        options.maxDepth,
        maxDecodedSize,
      ),
    get lastDecodedSize() {
      return lastEtfDecodedSize();
    },
  };
}
