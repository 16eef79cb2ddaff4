/**
 * The codec role: message value <-> frame payload. MessagePack (see `msgpack.ts`) is the only codec today; the
 * interface is what a second one (Erlang's External Term Format, for wire compatibility with Erlang lib_chan) plugs into.
 */
import type { Term } from '../term/model.js';
import { decode, encode } from './msgpack.js';

export interface Codec {
  readonly name: string;
  /** Encodes `value`, leaving `headroom` unused bytes at the start of the result. Throws `badTerm`. */
  encode(value: unknown, headroom: number): Buffer;
  /** Decodes one payload. Throws `protocolError`, with a message that never quotes the input. */
  decode(payload: Uint8Array): Term;
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
    encode: (value, headroom) => encode(value, depth, headroom),
    decode: (payload) => decode(payload, depth),
  };
}
