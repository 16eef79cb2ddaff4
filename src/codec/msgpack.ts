/**
 * MessagePack for the term model: `encode` is a pure function of the term, `decode` trusts nothing.
 *
 * Standard MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md) plus two extension types, so that a
 * client in any language with a MessagePack library can speak lib-chan (docs/PROTOCOL.md, "Payloads"):
 *
 * | ext type | term  | payload                                              |
 * | -------- | ----- | ---------------------------------------------------- |
 * | 1        | atom  | the atom's name in UTF-8 (at most 255 characters)    |
 * | 2        | tuple | exactly one MessagePack array: the tuple's elements  |
 *
 * Integers and floats stay apart both ways, as Erlang keeps 1 and 1.0 apart: an integer is always written as a
 * MessagePack integer (the shortest form), a float always as float 64, even when its value is whole (a {@link Float});
 * a float 32 or float 64 is always read as a float, a `Float` when a number would be taken for the integer.
 *
 * The decoder is written for hostile input: every length is checked against the bytes that remain before anything is
 * allocated; nesting deeper than `maxDepth` is refused; only the two extension types above are accepted; strings must
 * be valid UTF-8; a `__proto__` map key becomes an own property (never the prototype, never renamed). Its errors never
 * quote the input, so they can be sent to the peer as they are.
 *
 * Memory is accounted by what a value costs once decoded, not by its wire bytes (a one-byte empty map is a 56-byte
 * object): the decoder charges every container, string, binary and boxed number its {@link COST} as it goes, and
 * refuses the value (`frameTooLarge`) the moment the total passes its budget, before it builds more. The encoder
 * computes the same total for what it writes and refuses (also `frameTooLarge`) a value over the receiver's budget, so
 * that what one side may send, the other accepts; the limits (depth, atom length, integer range) are one definition
 * for both directions.
 */
import { isUtf8 } from 'node:buffer';
import { ChanError, LimitError } from '../errors.js';
import {
  Atom,
  Float,
  Tuple,
  isIntegerNumber,
  isSafeBigInt,
  isTermObject,
  mapKey,
  narrowInteger,
  type Term,
  type TermObject,
} from '../term/model.js';
import { TermSet } from '../term/hash.js';
import { DECODED_SIZE_RATIO, Writer, checkCost } from './writer.js';

export const EXT_ATOM = 1;

/** Atoms that are MessagePack words: the bytes each is written as. */
const WORD_ATOMS = new Map([
  ['true', 0xc3],
  ['false', 0xc2],
  ['null', 0xc0],
]);

/** Whether an atom of this name is one of {@link WORD_ATOMS}. */
function isWordName(name: string): boolean {
  return name.length >= 4 && name.length <= 5 && WORD_ATOMS.has(name);
}

export const EXT_TUPLE = 2;
/** Erlang's own limit on atom names, in characters (Unicode code points, as Erlang counts them). */
export const MAX_ATOM_CHARS = 255;

/**
 * What a decoded value costs, in bytes of memory (V8, 64-bit, measured: a million empty maps take 64 MiB, 64 each).
 * docs/PROTOCOL.md, "Decoded size", states the same rules for implementers in other languages.
 */
export const COST = {
  /** A list: the array and its header, plus `slot` per element. */
  array: 48,
  /** A map: the object, plus `entry` per key-value pair (the two slots, the property, its share of a hidden class). */
  map: 56,
  entry: 128,
  /** One element's place in its list or tuple. */
  slot: 8,
  /** A tuple: its object, plus a list of its elements. */
  tuple: 32,
  /** An atom: its object, plus its name as a string. */
  atom: 32,
  /** A string: its header, plus a byte per character if it is ASCII, else two. */
  string: 24,
  /** A binary: its view object and buffer, plus its bytes. */
  binary: 192,
  /** A number that is not a small integer (a float, or outside -2^31..2^31-1) is boxed. */
  boxed: 16,
  /** An integer beyond 2^53 (a bigint). */
  bigint: 32,
} as const;

export { DECODED_SIZE_RATIO };

/** The decoded-size budget that goes with a frame limit. */
export function decodedSizeLimit(maxFrameSize: number): number {
  return maxFrameSize * DECODED_SIZE_RATIO;
}

/** A string's cost by its UTF-8 length and its length in UTF-16 units (one byte a character when they agree). */
export function stringCost(utf8Bytes: number, utf16Units: number): number {
  return COST.string + (utf8Bytes === utf16Units ? utf8Bytes : 2 * utf16Units);
}

/** A number's cost beyond its slot: nothing for a small integer, a box for anything else (every float included). */
export function numberCost(n: number): number {
  return (n | 0) === n && !Object.is(n, -0) ? 0 : COST.boxed;
}

/** The characters of an atom's name as Erlang counts them (code points), or more than the limit if it has more. */
export function atomTooLong(name: string): boolean {
  // Each code point is one or two UTF-16 units: the count only needs working out between the two bounds.
  if (name.length <= MAX_ATOM_CHARS) return false;
  if (name.length > 2 * MAX_ATOM_CHARS) return true;
  let n = 0;
  for (const _ of name) if (++n > MAX_ATOM_CHARS) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------------------------------
// Encoding

const shared = new Writer();
const MAX_UINT32 = 0xffff_ffff;

/**
 * Small values are written straight into a slab of memory that their results share, each result a view of its part:
 * no copy, no allocation but the view. As Node pools `Buffer.allocUnsafe` (8 KiB pools, for buffers under half of
 * that, on Node 20 and 22; 64 KiB and 32 KiB on Node 26): 8 KiB a slab, a result under half of that shares it (and
 * keeps it alive as long as it lives), a larger one is copied into a buffer of its own, so that a small result kept
 * long pins at most one slab, whatever the traffic around it. A slab is never written twice: a result stays as made.
 */
export const SLAB_BYTES = 8 * 1024;
/** Results of this size or more are copied out of the slab (and leave it as it was). */
const SLAB_SHARED_BELOW = SLAB_BYTES / 2;
/** Less room than this left in the slab, and the next value starts a new one. */
const SLAB_MIN_ROOM = 1024;
/** A buffer grown past this (a large value) is not kept for the next large value. */
const MAX_SPARE_BYTES = 1 << 20;
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
let slabUsed = 0;

/**
 * Encodes a term; the result starts with `headroom` unused bytes (the frame layer writes its length prefix there: a
 * message is not copied to be framed). A small result is a view of a slab shared with others (see SLAB_BYTES): write
 * into its own range only. Throws a `badTerm` {@link ChanError} for values that are not terms or nest deeper than
 * `maxDepth` (which also catches cycles), and `frameTooLarge` for one whose decoded size would pass `maxCost` (the
 * receiver's budget, {@link decodedSizeLimit}).
 */
export function encode(value: unknown, maxDepth: number, headroom = 0, maxCost = Number.POSITIVE_INFINITY): Buffer {
  // A getter on a user's object could re-enter encode(); give such a call a writer of its own.
  if (shared.busy) return encodeApart(new Writer(), value, maxDepth, headroom, maxCost);
  if (SLAB_BYTES - slabUsed < SLAB_MIN_ROOM) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabUsed = 0;
  }
  const w = shared;
  const start = slabUsed;
  w.busy = true;
  w.buf = slab;
  try {
    writeValue(w, start, value, maxDepth, headroom, maxCost);
    const size = w.pos - start;
    if (w.buf === slab && size < SLAB_SHARED_BELOW) {
      // The next result starts right after this one: a turn's frames lie end to end, and leave as one write (mm.ts).
      slabUsed = w.pos;
      return slab.subarray(start, w.pos);
    }
    // Too large to share the slab, or it outgrew it and was moved to a larger buffer (at the same offsets, the buffer
    // kept for the next large value): copied out into a buffer of its own. The slab's room stays for small values.
    const out = Buffer.allocUnsafe(size);
    w.buf.copy(out, 0, start, w.pos);
    if (w.buf !== slab) w.spare = w.buf.length <= MAX_SPARE_BYTES ? w.buf : null;
    return out;
  } finally {
    w.busy = false;
    w.buf = slab;
  }
}

/** @internal For tests: bytes left in the slab the next small value is written into. */
export function slabRoom(): number {
  return SLAB_BYTES - slabUsed;
}

/** `value` written by `w` from offset `start` of its buffer, after `headroom` bytes. */
function writeValue(
  w: Writer,
  start: number,
  value: unknown,
  maxDepth: number,
  headroom: number,
  maxCost: number,
): void {
  w.base = start;
  w.pos = start;
  w.cost = 0;
  w.maxCost = maxCost;
  w.ensure(headroom);
  w.pos = start + headroom;
  write(w, value, maxDepth);
}

function encodeApart(w: Writer, value: unknown, maxDepth: number, headroom: number, maxCost: number): Buffer {
  w.busy = true;
  writeValue(w, 0, value, maxDepth, headroom, maxCost);
  const out = Buffer.allocUnsafe(w.pos);
  w.buf.copy(out, 0, 0, w.pos);
  return out;
}

/**
 * What `value` would take: its encoded bytes and its decoded size, with the checks and errors of {@link encode}, but
 * without making the bytes (a test keeps the two in step). For code that must know whether a value can be sent
 * before it keeps it.
 */
export function measure(
  value: unknown,
  maxDepth: number,
  maxCost = Number.POSITIVE_INFINITY,
): { bytes: number; size: number } {
  // The module's one meter (a store measures every key and value it keeps), or a new one if it is in use: a walk
  // that reaches user code (a Proxy's traps) could measure again before the first walk is done.
  const m = meter.busy ? new Meter() : meter;
  m.busy = true;
  m.bytes = 0;
  m.cost = 0;
  m.maxCost = maxCost;
  try {
    m.value(value, maxDepth);
    return { bytes: m.bytes, size: m.cost };
  } finally {
    m.busy = false;
  }
}

/**
 * The decoded size of a small flat term as {@link measure} gives it, without its walk (a store sizes every key it
 * keeps): a number, a short ASCII string, an atom with a short ASCII name, or a tuple of up to {@link FLAT_ELEMENTS}
 * of them (most keys: `joe`, `"joe"`, `{c, 12}`). -1 for anything else, which `measure` sizes.
 */
export function flatCost(x: unknown): number {
  if (!(x instanceof Tuple)) return leafCost(x);
  const items = x.elements;
  if (items.length > FLAT_ELEMENTS) return -1;
  let size = COST.tuple + COST.array + COST.slot * items.length;
  for (let i = 0; i < items.length; i++) {
    const c = leafCost(items[i]);
    if (c < 0) return -1;
    size += c;
  }
  return size;
}

/** The most elements of a tuple {@link flatCost} sizes. */
const FLAT_ELEMENTS = 4;

/** {@link flatCost} of a number, or of a string or an atom's name of under 32 characters, all ASCII; else -1. */
function leafCost(x: unknown): number {
  if (typeof x === 'number') return numberCost(x);
  if (typeof x === 'string') return x.length < 32 && isAscii(x) ? COST.string + x.length : -1;
  if (!(x instanceof Atom)) return -1;
  const name = x.name;
  if (name.length >= 32 || !isAscii(name)) return -1;
  // true, false and null travel as MessagePack's own words: nothing beyond their slot.
  if (isWordName(name)) return 0;
  return COST.atom + COST.string + name.length;
}

/** The encoder's walk, counting instead of writing. */
class Meter {
  bytes = 0;
  cost = 0;
  maxCost = Number.POSITIVE_INFINITY;
  busy = false;

  private charge(n: number): void {
    checkCost((this.cost += n), this.maxCost);
  }

  value(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'string':
        return this.string(v);
      case 'number':
        this.charge(numberCost(v));
        this.bytes += numberBytes(v);
        return;
      case 'boolean':
      case 'undefined':
        this.bytes += 1;
        return;
      case 'bigint':
        if (isSafeBigInt(v)) {
          this.charge(numberCost(Number(v)));
          this.bytes += numberBytes(Number(v));
        } else {
          if (v < -(1n << 63n) || v >= 1n << 64n) throw badTerm('an integer outside the 64-bit range cannot be sent');
          this.charge(COST.bigint);
          this.bytes += 9;
        }
        return;
      case 'object':
        break;
      default:
        throw badTerm(`a ${typeof v} is not a term`);
    }
    if (v === null) {
      this.bytes += 1;
      return;
    }
    // Tuples and atoms first: most keys and messages are made of them.
    if (v instanceof Tuple) {
      if (depth <= 0) throw new LimitError('badTerm', 'term nests deeper than max_depth (or is cyclic)');
      const items = v.elements;
      this.charge(COST.tuple + COST.array + COST.slot * items.length);
      const before = this.bytes;
      this.bytes += lengthHeaderBytes(items.length);
      for (let i = 0; i < items.length; i++) this.value(items[i], depth - 1);
      this.bytes += extHeaderBytes(this.bytes - before);
      return;
    }
    if (v instanceof Atom) return this.atom(v.name);
    if (v instanceof Float) {
      this.charge(COST.boxed);
      this.bytes += FLOAT_BYTES;
      return;
    }
    if (v instanceof Uint8Array) {
      this.charge(COST.binary + v.length);
      this.bytes += (v.length <= 0xff ? 2 : v.length <= 0xffff ? 3 : 5) + v.length;
      return;
    }
    if (depth <= 0) throw new LimitError('badTerm', 'term nests deeper than max_depth (or is cyclic)');
    if (Array.isArray(v)) {
      this.charge(COST.array + COST.slot * v.length);
      this.bytes += lengthHeaderBytes(v.length);
      for (const item of v) this.value(item, depth - 1);
    } else if (v instanceof Map) {
      this.charge(COST.map + COST.entry * v.size);
      if (v.size > 1 && hasKeyTwice(v)) throw badTerm('a map has the same key twice (keys are compared by value)');
      this.bytes += lengthHeaderBytes(v.size);
      for (const [k, item] of v) {
        this.value(k, depth - 1);
        this.value(item, depth - 1);
      }
    } else if (isTermObject(v)) {
      const keys = Object.keys(v);
      this.charge(COST.map + COST.entry * keys.length);
      this.bytes += lengthHeaderBytes(keys.length);
      for (const k of keys) {
        this.string(k);
        this.value((v as TermObject)[k], depth - 1);
      }
    } else {
      const name = (v as object).constructor?.name ?? 'object';
      throw badTerm(
        `a ${name} is not a term (send plain data: atoms, tuples, lists, strings, numbers, binaries, maps)`,
      );
    }
  }

  private atom(name: string): void {
    if (atomTooLong(name)) throw badTerm(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
    if (isWordName(name)) {
      this.bytes += 1;
      return;
    }
    const len = utf8Length(name);
    this.charge(COST.atom + stringCost(len, name.length));
    this.bytes += extHeaderBytes(len) + len;
  }

  private string(s: string): void {
    const len = utf8Length(s);
    this.charge(stringCost(len, s.length));
    this.bytes += strHeaderBytes(len) + len;
  }
}

const meter = new Meter();

/**
 * The string the decoder made last from 16 to {@link TEXT_MEMO_MAX} bytes of UTF-8 (its native path), and how many: a
 * store measures the value it has just decoded, and need not ask Node to count its bytes again. It keeps that one
 * string alive until the next.
 */
let lastText = '';
let lastTextBytes = 0;
const TEXT_MEMO_MAX = 64 * 1024;

/** The bytes of `s` in UTF-8. */
export function utf8Length(s: string): number {
  // A short ASCII string (most words and keys) without a native call.
  if (s.length < 32 && isAscii(s)) return s.length;
  // The string decoded last, or one of the same characters (compared by content where it is not the same string).
  if (s.length <= TEXT_MEMO_MAX && s === lastText) return lastTextBytes;
  return Buffer.byteLength(s);
}

/** The bytes of an array's or a map's header for `n` elements (fix, 16 or 32). */
function lengthHeaderBytes(n: number): number {
  return n < 16 ? 1 : n <= 0xffff ? 3 : 5;
}

/** The bytes of an ext header (ext 8, 16 or 32, with its type) for a payload of `len` bytes. */
function extHeaderBytes(len: number): number {
  return len <= 0xff ? 3 : len <= 0xffff ? 4 : 6;
}

/** A float 64: its type byte and eight bytes. */
const FLOAT_BYTES = 9;

/** The bytes writeNumber writes for `n`. */
function numberBytes(n: number): number {
  if (!isIntegerNumber(n)) return FLOAT_BYTES;
  if (n >= 0) return n < 0x80 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : n <= MAX_UINT32 ? 5 : 9;
  return n >= -32 ? 1 : n >= -0x80 ? 2 : n >= -0x8000 ? 3 : n >= -0x8000_0000 ? 5 : 9;
}

function badTerm(message: string): ChanError {
  return new ChanError('badTerm', message);
}

function write(w: Writer, v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      return writeString(w, v);
    case 'number':
      w.charge(numberCost(v));
      return writeNumber(w, v);
    case 'boolean':
      return w.u8(v ? 0xc3 : 0xc2);
    case 'undefined':
      return w.u8(0xc0);
    case 'bigint':
      w.charge(isSafeBigInt(v) ? numberCost(Number(v)) : COST.bigint);
      return writeBigInt(w, v);
    case 'object':
      break;
    default:
      throw badTerm(`a ${typeof v} is not a term`);
  }
  if (v === null) return w.u8(0xc0);
  if (v instanceof Float) {
    // A box like any float (numberCost), and float 64 even when whole: an integer form would make it the integer.
    w.charge(COST.boxed);
    return writeFloat(w, v.value);
  }
  if (v instanceof Atom) {
    // Not a container: an atom (like a binary) takes no level of nesting, on either side.
    const name = v.name;
    const n = name.length;
    // The atoms true, false and null are MessagePack's own words, written in their canonical one-byte form.
    const word = n >= 4 && n <= 5 ? WORD_ATOMS.get(name) : undefined;
    if (word !== undefined) return w.u8(word);
    if (n < 32 && isAscii(name)) {
      // The common atom, a short ASCII name: its ext 8 header and its bytes in one go, as a short string's.
      w.charge(COST.atom + stringCost(n, n));
      w.ensure(3 + n);
      const b = w.buf;
      const at = w.pos;
      b[at] = 0xc7;
      b[at + 1] = n;
      b[at + 2] = EXT_ATOM;
      for (let i = 0; i < n; i++) b[at + 3 + i] = name.charCodeAt(i);
      w.pos = at + 3 + n;
      return;
    }
    if (atomTooLong(name)) throw badTerm(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
    const len = Buffer.byteLength(v.name);
    w.charge(COST.atom + stringCost(len, v.name.length));
    writeExtHeader(w, EXT_ATOM, len);
    w.ensure(len);
    w.pos += w.buf.write(v.name, w.pos, 'utf8');
    return;
  }
  if (v instanceof Uint8Array) {
    const len = v.length;
    w.charge(COST.binary + len);
    if (len <= 0xff) w.u8u8(0xc4, len);
    else if (len <= 0xffff) w.u8u16(0xc5, len);
    else w.u8u32(0xc6, len);
    w.ensure(len);
    w.buf.set(v, w.pos);
    w.pos += len;
    return;
  }
  if (depth <= 0) throw new LimitError('badTerm', 'term nests deeper than max_depth (or is cyclic)');
  if (Array.isArray(v)) {
    w.charge(COST.array + COST.slot * v.length);
    writeArrayHeader(w, v.length);
    for (const item of v) write(w, item, depth - 1);
  } else if (v instanceof Tuple) {
    w.charge(COST.tuple + COST.array + COST.slot * v.elements.length);
    // The payload's length is known only once it is written: reserve the smallest header (most tuples fit it) and
    // move the payload along for a larger one.
    const headerAt = w.pos;
    w.ensure(3);
    w.pos += 3;
    writeArrayHeader(w, v.elements.length);
    for (const item of v.elements) write(w, item, depth - 1);
    const len = w.pos - headerAt - 3;
    const headerLen = len <= 0xff ? 3 : len <= 0xffff ? 4 : 6;
    if (headerLen > 3) {
      w.ensure(headerLen - 3);
      w.buf.copyWithin(headerAt + headerLen, headerAt + 3, w.pos);
      w.pos += headerLen - 3;
    }
    // The ext header's type byte and length (ext 8, 16 or 32), then the tuple's type.
    putLength(w.buf, headerAt, headerLen - 1, len, 0xc7);
    w.buf[headerAt + headerLen - 1] = EXT_TUPLE;
  } else if (v instanceof Map) {
    w.charge(COST.map + COST.entry * v.size);
    // Keys are compared by value on the other side (two atoms joe are one key): a map with one twice is refused.
    if (v.size > 1 && hasKeyTwice(v)) throw badTerm('a map has the same key twice (keys are compared by value)');
    writeMapHeader(w, v.size);
    for (const [k, item] of v) {
      write(w, k, depth - 1);
      write(w, item, depth - 1);
    }
  } else if (isTermObject(v)) {
    const keys = Object.keys(v);
    w.charge(COST.map + COST.entry * keys.length);
    writeMapHeader(w, keys.length);
    for (const k of keys) {
      writeString(w, k);
      write(w, (v as TermObject)[k], depth - 1);
    }
  } else {
    const name = (v as object).constructor?.name ?? 'object';
    throw badTerm(`a ${name} is not a term (send plain data: atoms, tuples, lists, strings, numbers, binaries, maps)`);
  }
}

function writeString(w: Writer, s: string): void {
  const chars = s.length;
  if (chars < 32 && isAscii(s)) {
    // A short ASCII string (most keys and words): its header and its bytes, in JavaScript.
    w.charge(stringCost(chars, chars));
    w.ensure(1 + chars);
    const b = w.buf;
    const at = w.pos;
    b[at] = 0xa0 | chars;
    for (let i = 0; i < chars; i++) b[at + 1 + i] = s.charCodeAt(i);
    w.pos = at + 1 + chars;
    return;
  }
  // The least it can cost (a string has at least as many bytes as UTF-16 units), charged before any room is made: a
  // string over the receiver's budget is refused before it is copied.
  const least = stringCost(chars, chars);
  w.charge(least);
  let len: number;
  let header: number;
  const at = w.pos;
  if (chars <= ONE_PASS_CHARS) {
    // Written where the header for `chars` bytes would end (most strings have about as many bytes as characters, and
    // their header is that one); then its header, and only where the bytes need another size of header, the bytes are
    // moved along. No Buffer.byteLength: the string is walked once, by the native write. The room is for the most it
    // can take: three bytes a unit, after the header those would need.
    const guess = strHeaderBytes(chars);
    w.ensure(strHeaderBytes(3 * chars) + 3 * chars);
    len = utf8Write(w.buf, s, at + guess);
    header = strHeaderBytes(len);
    if (header !== guess) w.buf.copyWithin(at + header, at + guess, at + guess + len);
  } else {
    // A long string: its length first, so that the room made is what it takes, not three times its units.
    len = Buffer.byteLength(s);
    header = strHeaderBytes(len);
    w.ensure(header + len);
    utf8Write(w.buf, s, at + header);
  }
  if (header === 1) w.buf[at] = 0xa0 | len;
  else putLength(w.buf, at, header, len, 0xd9); // str 8, 16 or 32
  w.pos = at + header + len;
  w.charge(stringCost(len, chars) - least);
}

/**
 * Writes at `at` a type byte and a length in `size` bytes (2, 3 or 5: a length of 8, 16 or 32 bits), the type being
 * `type8`, the next or the one after for the longer lengths (MessagePack numbers str 8/16/32 and ext 8/16/32 so): the
 * header of a string or of an extension whose length is known only once its payload is written.
 */
function putLength(b: Buffer, at: number, size: number, len: number, type8: number): void {
  if (size === 2) {
    b[at] = type8;
    b[at + 1] = len;
  } else if (size === 3) {
    b[at] = type8 + 1;
    b.writeUInt16BE(len, at + 1);
  } else {
    b[at] = type8 + 2;
    b.writeUInt32BE(len, at + 1);
  }
}

/** Strings up to this many UTF-16 units are encoded in one pass (the room made for them is three bytes a unit). */
const ONE_PASS_CHARS = 4096;

/** The bytes of a string's header for `len` bytes (fixstr, str 8, 16 or 32). */
function strHeaderBytes(len: number): number {
  return len < 32 ? 1 : len <= 0xff ? 2 : len <= 0xffff ? 3 : 5;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function writeNumber(w: Writer, n: number): void {
  if (isIntegerNumber(n)) {
    if (n >= 0) {
      if (n < 0x80) return w.u8(n);
      if (n <= 0xff) return w.u8u8(0xcc, n);
      if (n <= 0xffff) return w.u8u16(0xcd, n);
      if (n <= MAX_UINT32) return w.u8u32(0xce, n);
      w.ensure(9);
      w.buf[w.pos] = 0xcf;
      w.buf.writeBigUInt64BE(BigInt(n), w.pos + 1);
      w.pos += 9;
      return;
    }
    if (n >= -32) return w.u8(n & 0xff);
    if (n >= -0x80) return w.u8u8(0xd0, n & 0xff);
    if (n >= -0x8000) return w.u8u16(0xd1, n & 0xffff);
    if (n >= -0x8000_0000) return w.u8u32(0xd2, n >>> 0);
    w.ensure(9);
    w.buf[w.pos] = 0xd3;
    w.buf.writeBigInt64BE(BigInt(n), w.pos + 1);
    w.pos += 9;
    return;
  }
  writeFloat(w, n);
}

function writeFloat(w: Writer, n: number): void {
  w.ensure(FLOAT_BYTES);
  w.buf[w.pos] = 0xcb;
  w.buf.writeDoubleBE(n, w.pos + 1);
  w.pos += FLOAT_BYTES;
}

function writeBigInt(w: Writer, n: bigint): void {
  if (isSafeBigInt(n)) return writeNumber(w, Number(n));
  w.ensure(9);
  if (n >= 0n && n < 1n << 64n) {
    w.buf[w.pos] = 0xcf;
    w.buf.writeBigUInt64BE(n, w.pos + 1);
  } else if (n < 0n && n >= -(1n << 63n)) {
    w.buf[w.pos] = 0xd3;
    w.buf.writeBigInt64BE(n, w.pos + 1);
  } else {
    throw badTerm('an integer outside the 64-bit range cannot be sent');
  }
  w.pos += 9;
}

function writeArrayHeader(w: Writer, n: number): void {
  if (n < 16) w.u8(0x90 | n);
  else if (n <= 0xffff) w.u8u16(0xdc, n);
  else w.u8u32(0xdd, n);
}

function writeMapHeader(w: Writer, n: number): void {
  if (n < 16) w.u8(0x80 | n);
  else if (n <= 0xffff) w.u8u16(0xde, n);
  else w.u8u32(0xdf, n);
}

function writeExtHeader(w: Writer, type: number, len: number): void {
  if (len <= 0xff) {
    w.ensure(3);
    w.buf[w.pos++] = 0xc7;
    w.buf[w.pos++] = len;
  } else if (len <= 0xffff) {
    w.u8u16(0xc8, len);
  } else {
    w.u8u32(0xc9, len);
  }
  w.u8(type);
}

// ---------------------------------------------------------------------------------------------------------------------
// Decoding

function malformed(message: string): ChanError {
  return new ChanError('protocolError', `malformed message: ${message}`);
}

/**
 * Decodes one MessagePack value that must fill `bytes` exactly (or `bytes` from `start` to `end`: a frame inside the
 * chunk it came in, without a view made of it; offsets in errors count from `start`). Containers nested deeper than
 * `maxDepth` are refused (`protocolError`), and so is a value whose decoded size passes `maxCost` (`frameTooLarge`),
 * before more of it is built. Errors are {@link ChanError}s whose messages never contain the input.
 * {@link lastDecodedSize} then says what the value costs.
 */
export function decode(
  bytes: Uint8Array,
  maxDepth: number,
  maxCost = Number.POSITIVE_INFINITY,
  start = 0,
  end = bytes.length,
): Term {
  // One decoder for every call: decoding runs no user code, so it cannot be re-entered.
  const d = decoder;
  d.reset(bytes, start, end);
  d.cost = 0;
  d.memo = null;
  d.maxCost = maxCost;
  try {
    const value = d.read(maxDepth);
    if (d.pos !== end) throw malformed(`${end - d.pos} bytes after the end of the value`);
    return value;
  } finally {
    d.release();
  }
}

/** The decoded size of the value the last {@link decode} returned (see {@link COST}). */
export function lastDecodedSize(): number {
  return decoder.cost;
}

const EMPTY_BYTES = Buffer.alloc(0);

class Decoder {
  pos = 0;
  end = 0;
  /** Where the value starts in `b` (offsets in errors count from it). */
  base = 0;
  cost = 0;
  maxCost = Number.POSITIVE_INFINITY;
  /** Hashes of the lists, tuples and maps met in map keys during one decode (made when the first is met). */
  memo: WeakMap<object, number> | null = null;
  private b: Uint8Array = EMPTY_BYTES;
  /** The same bytes as a Buffer, for Node's native UTF-8 decoding and big-endian reads. */
  private buf: Buffer = EMPTY_BYTES;

  reset(b: Uint8Array, start = 0, end = b.length): void {
    if (start < 0 || end > b.length || start > end) throw new RangeError(`no bytes ${start} to ${end} in ${b.length}`);
    this.b = b;
    this.buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    this.pos = start;
    this.base = start;
    this.end = end;
  }

  /** Lets go of the bytes (the decoder must not keep a message alive). */
  release(): void {
    this.b = EMPTY_BYTES;
    this.buf = EMPTY_BYTES;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) throw malformed(`${what} runs past the end of the data`);
  }

  /** Charges `n` bytes of decoded size; past the budget the value is refused before more of it is built. */
  private charge(n: number): void {
    checkCost((this.cost += n), this.maxCost);
  }

  private num(n: number): number {
    this.charge(numberCost(n));
    return n;
  }

  /** A float off the wire stays a float: a whole value (which a number would make the integer) becomes a Float. */
  private float(n: number): number | Float {
    this.charge(COST.boxed);
    return isIntegerNumber(n) ? new Float(n) : n;
  }

  private int(n: bigint): number | bigint {
    const v = narrowInteger(n);
    if (typeof v === 'bigint') this.charge(COST.bigint);
    else this.num(v);
    return v;
  }

  private u8(): number {
    this.need(1, 'a value');
    return this.b[this.pos++] as number;
  }
  private u16(): number {
    this.need(2, 'a length');
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  private u32(): number {
    this.need(4, 'a length');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  read(depth: number): Term {
    const t = this.u8();
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t >= 0xa0 && t < 0xc0) return this.str(t & 0x1f);
    if (t < 0x90) return this.map(t & 0x0f, depth);
    if (t < 0xa0) return this.array(t & 0x0f, depth);
    const v = this.buf;
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xc7:
        return this.ext(this.u8(), depth);
      case 0xc8:
        return this.ext(this.u16(), depth);
      case 0xc9:
        return this.ext(this.u32(), depth);
      case 0xca: {
        this.need(4, 'a float');
        const f = v.readFloatBE(this.pos);
        this.pos += 4;
        return this.float(f);
      }
      case 0xcb: {
        this.need(8, 'a float');
        const f = v.readDoubleBE(this.pos);
        this.pos += 8;
        return this.float(f);
      }
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.num(this.u32());
      case 0xcf: {
        this.need(8, 'an integer');
        const n = v.readBigUInt64BE(this.pos);
        this.pos += 8;
        return this.int(n);
      }
      case 0xd0: {
        this.need(1, 'an integer');
        return v.readInt8(this.pos++);
      }
      case 0xd1: {
        this.need(2, 'an integer');
        const n = v.readInt16BE(this.pos);
        this.pos += 2;
        return n;
      }
      case 0xd2: {
        this.need(4, 'an integer');
        const n = v.readInt32BE(this.pos);
        this.pos += 4;
        return n;
      }
      case 0xd3: {
        this.need(8, 'an integer');
        const n = v.readBigInt64BE(this.pos);
        this.pos += 8;
        return this.int(n);
      }
      case 0xd4:
        return this.ext(1, depth);
      case 0xd5:
        return this.ext(2, depth);
      case 0xd6:
        return this.ext(4, depth);
      case 0xd7:
        return this.ext(8, depth);
      case 0xd8:
        return this.ext(16, depth);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default: // 0xc1 is never used
        throw malformed(`byte 0x${t.toString(16)} at offset ${this.pos - 1 - this.base} is not a MessagePack type`);
    }
  }

  /** A string of `len` bytes; a short one shared from {@link STRINGS} unless `share` is false (an atom's name). */
  private str(len: number, share = true): string {
    this.need(len, 'a string');
    // The least a string of `len` bytes can cost (three-byte characters: two bytes a character for a third of the
    // bytes), charged before it is built; the rest once it is known what it holds. Never more than the final figure,
    // so that the budget means the same to a sender computing it from the string.
    const least = ((2 * len) / 3) | 0;
    this.charge(COST.string + least);
    const start = this.pos;
    const end = start + len;
    this.pos = end;
    const b = this.b;
    if (len < 16) {
      // Short strings are most keys and words: one decoded lately is shared (strings cannot be changed), else built
      // directly when they are ASCII (a native call costs more than the work for up to 8 characters).
      if (share && len <= SHORT_WORD_BYTES && len >= 2) {
        const slot = STRINGS.find(b, start, len);
        if (slot >= 0) {
          this.charge(len - least);
          return STRINGS.term(slot) as string;
        }
      }
      for (let i = start; i < end; i++) {
        if ((b[i] as number) > 0x7f) {
          const s = shortUtf8(b, start, end);
          if (s === null) throw malformed(`the string at offset ${start - this.base} is not valid UTF-8`);
          this.charge(2 * s.length - least); // not ASCII: two bytes a character (stringCost)
          return s;
        }
      }
      this.charge(len - least);
      if (len > SHORT_WORD_BYTES) return latin1Slice(this.buf, start, end);
      const word = shortAscii(b, start, len);
      if (share && len >= 2) STRINGS.remember(b, start, len, word);
      return word;
    }
    // Node's decoder puts U+FFFD wherever the bytes are not valid UTF-8: a string without one was valid, and costs one
    // native call instead of two; one with it is checked (U+FFFD may also have been sent as itself).
    const s = utf8Slice(this.buf, start, end);
    if (s.includes('\uFFFD') && !isUtf8(b.subarray(start, end)))
      throw malformed(`the string at offset ${start - this.base} is not valid UTF-8`);
    this.charge((s.length === len ? len : 2 * s.length) - least);
    if (len <= TEXT_MEMO_MAX) {
      lastText = s;
      lastTextBytes = len;
    }
    return s;
  }

  private bin(len: number): Buffer {
    this.need(len, 'a binary');
    this.charge(COST.binary + len);
    // A copy: a slice would keep the whole network chunk alive for as long as the value lives.
    const out = Buffer.from(this.b.subarray(this.pos, this.pos + len));
    this.pos += len;
    return out;
  }

  private array(n: number, depth: number): Term[] {
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    this.need(n, 'an array'); // every element takes at least one byte: check before allocating
    this.charge(COST.array + COST.slot * n);
    const out = new Array<Term>(n);
    for (let i = 0; i < n; i++) out[i] = this.read(depth - 1);
    return out;
  }

  private map(n: number, depth: number): TermObject | Map<Term, Term> {
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    this.need(n * 2, 'a map');
    this.charge(COST.map + COST.entry * n);
    const obj: TermObject = {};
    for (let i = 0; i < n; i++) {
      const key = this.read(depth - 1);
      if (typeof key !== 'string') return this.mapWithTermKeys(obj, key, n - i, depth);
      // A key twice is not a map (Erlang has none such): refused, rather than one value silently kept.
      if (hasOwn(obj, key)) throw malformed('a map has the same key twice');
      const value = this.read(depth - 1);
      if (key === '__proto__')
        Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
      else obj[key] = value;
    }
    return obj;
  }

  /**
   * A map with a key that is not a string becomes a `Map`; `firstKey` has been read, its value not yet. Keys are
   * compared by value (two atoms `joe` are one key), as they are in Erlang.
   */
  private mapWithTermKeys(sofar: TermObject, firstKey: Term, remaining: number, depth: number): Map<Term, Term> {
    const m = new Map<Term, Term>(Object.entries(sofar));
    // Compared by value in time proportional to the keys (term/hash.ts): a key that is a map keyed by a map... is
    // not walked again at every level.
    this.memo ??= new WeakMap();
    const seen = new TermSet(this.memo);
    for (const k of m.keys()) seen.add(k);
    let key = firstKey;
    for (let i = 0; i < remaining; i++) {
      if (i > 0) key = this.read(depth - 1);
      if (!seen.add(key)) throw malformed('a map has the same key twice');
      m.set(mapKey(key), this.read(depth - 1));
    }
    return m;
  }

  /**
   * A short ASCII word decoded lately, from `table` (see {@link ShortWords}): the one kept, charged as its string
   * would have been; undefined when its bytes are not there (nothing read then).
   */
  private known(table: ShortWords, len: number): Term | undefined {
    const slot = table.find(this.b, this.pos, len);
    if (slot < 0) return undefined;
    this.charge(COST.string + len);
    this.pos += len;
    return table.term(slot);
  }

  private ext(len: number, depth: number): Term {
    this.need(len + 1, 'an extension');
    const type = this.b[this.pos++] as number;
    const start = this.pos;
    if (type === EXT_ATOM) {
      if (len > MAX_ATOM_CHARS * 4) throw malformed(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
      this.charge(COST.atom);
      if (len <= SHORT_WORD_BYTES && len > 0) {
        const known = this.known(ATOMS, len);
        if (known !== undefined) return known;
      }
      // Its name kept out of the strings' table: the atoms' own keeps it.
      const name = this.str(len, false);
      if (atomTooLong(name)) throw malformed(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
      // An atom named true, false or null is that word itself (docs/PROTOCOL.md section 2), as if sent c3, c2, c0.
      const atom = atomTerm(name);
      if (len <= SHORT_WORD_BYTES && len === name.length)
        ATOMS.remember(this.b, start, len, typeof atom === 'object' && atom !== null ? Object.freeze(atom) : atom);
      return atom;
    }
    if (type === EXT_TUPLE) {
      this.charge(COST.tuple);
      const outerEnd = this.end;
      this.end = start + len;
      const tag = this.u8();
      let n: number;
      if (tag >= 0x90 && tag < 0xa0) n = tag & 0x0f;
      else if (tag === 0xdc) n = this.u16();
      else if (tag === 0xdd) n = this.u32();
      else throw malformed(`the tuple at offset ${start - this.base} does not hold an array`);
      const elements = this.array(n, depth);
      if (this.pos !== this.end) throw malformed(`the tuple at offset ${start - this.base} has bytes after its array`);
      this.end = outerEnd;
      return new Tuple(elements);
    }
    throw malformed(`extension type ${type > 127 ? type - 256 : type} is not one lib-chan accepts (1 atom, 2 tuple)`);
  }
}

const decoder = new Decoder();

/** An atom's term: true, false and null for those names (docs/PROTOCOL.md section 2, as if sent c3, c2, c0), else an Atom. */
function atomTerm(name: string): Term {
  if (isWordName(name)) return name === 'true' ? true : name === 'false' ? false : null;
  return new Atom(name);
}

/**
 * Short atoms (1 to 8 ASCII bytes) decoded lately, by their bytes: a message's words (`store`, `lookup`, `ok`, `k`)
 * come again and again, and one found here is not built, checked and looked up again, nor allocated: every decode of
 * it gives the same Atom, frozen (as Erlang's atoms, one per name; a handler cannot change it under another
 * connection). Short strings likewise (2 to 8 ASCII bytes: the envelope's words `cast`, `rpc`, `reply`, and short
 * keys), in a table of their own: a string cannot be changed, so one decoded lately is shared.
 */
export const WORD_SLOTS = 256;
/** The longest word (in bytes) the tables keep. */
const SHORT_WORD_BYTES = 8;

/**
 * A table of {@link WORD_SLOTS} short words, where each word has two slots its bytes hash to (so that two words of one
 * message that meet in one slot do not put each other out: `lookup` and `c` did); a word not there takes a free one of
 * its two, else one of them in turn, so a peer inventing words only turns entries over; the table never grows.
 */
class ShortWords {
  private readonly lo = new Int32Array(WORD_SLOTS);
  private readonly hi = new Int32Array(WORD_SLOTS);
  private readonly len = new Uint8Array(WORD_SLOTS);
  private readonly terms: Term[] = new Array<Term>(WORD_SLOTS).fill(null);
  /** Which of its two slots a word takes when both are in use (each in turn). */
  private evictSecond = false;

  /** The slot holding the `len` bytes at `at` (1 to 8), or -1. */
  find(b: Uint8Array, at: number, len: number): number {
    const lo = bytesLo(b, at, len);
    const hi = bytesHi(b, at, len);
    const h = wordHash(lo, hi, len);
    let slot = firstSlot(h);
    if (this.len[slot] !== len || this.lo[slot] !== lo || this.hi[slot] !== hi) {
      slot = secondSlot(h);
      if (this.len[slot] !== len || this.lo[slot] !== lo || this.hi[slot] !== hi) return -1;
    }
    return slot;
  }

  term(slot: number): Term {
    return this.terms[slot] as Term;
  }

  /** Keeps `term`, decoded from the `len` ASCII bytes at `at`, for the next decode of the same bytes. */
  remember(b: Uint8Array, at: number, len: number, term: Term): void {
    const lo = bytesLo(b, at, len);
    const hi = bytesHi(b, at, len);
    const h = wordHash(lo, hi, len);
    const first = firstSlot(h);
    const second = secondSlot(h);
    let slot = first;
    if (this.len[first] !== 0) {
      if (this.len[second] === 0) slot = second;
      else {
        this.evictSecond = !this.evictSecond;
        if (this.evictSecond) slot = second;
      }
    }
    this.lo[slot] = lo;
    this.hi[slot] = hi;
    this.len[slot] = len;
    this.terms[slot] = term;
  }
}

const ATOMS = new ShortWords();
const STRINGS = new ShortWords();

/** Bytes 0 to 3 of a short word, packed (0 past its end). */
function bytesLo(b: Uint8Array, at: number, len: number): number {
  let v = 0;
  for (let i = 0; i < len && i < 4; i++) v |= (b[at + i] as number) << (8 * i);
  return v;
}

/** Bytes 4 to 7 of a short word, packed (0 past its end). */
function bytesHi(b: Uint8Array, at: number, len: number): number {
  let v = 0;
  for (let i = 4; i < len; i++) v |= (b[at + i] as number) << (8 * (i - 4));
  return v;
}

function wordHash(lo: number, hi: number, len: number): number {
  return Math.imul(lo ^ Math.imul(hi, 0x9e3779b1) ^ len, 0x85ebca6b);
}

function firstSlot(h: number): number {
  return (h ^ (h >>> 16)) & (WORD_SLOTS - 1);
}

function secondSlot(h: number): number {
  return ((h >>> 8) ^ (h >>> 24)) & (WORD_SLOTS - 1);
}

/**
 * Node's own slices of a Buffer, which `toString(encoding, start, end)` calls once it has checked its arguments and
 * looked the encoding up (on Buffer's prototype in every Node line we support, though not documented); `toString` where
 * a Node has none. The decoder has checked the bounds already.
 */
interface NativeSlices {
  utf8Slice(start: number, end: number): string;
  latin1Slice(start: number, end: number): string;
  /** Writes `s` at `offset` (the room is there); the bytes written. */
  utf8Write(s: string, offset: number, length: number): number;
}
const NATIVE_SLICES = ['utf8Slice', 'latin1Slice', 'utf8Write'].every(
  (name) => typeof Reflect.get(Buffer.prototype, name) === 'function',
);
const utf8Slice: (b: Buffer, start: number, end: number) => string = NATIVE_SLICES
  ? (b, start, end) => (b as Buffer & NativeSlices).utf8Slice(start, end)
  : (b, start, end) => b.toString('utf8', start, end);
const latin1Slice: (b: Buffer, start: number, end: number) => string = NATIVE_SLICES
  ? (b, start, end) => (b as Buffer & NativeSlices).latin1Slice(start, end)
  : (b, start, end) => b.toString('latin1', start, end);
const utf8Write: (b: Buffer, s: string, offset: number) => number = NATIVE_SLICES
  ? (b, s, offset) => (b as Buffer & NativeSlices).utf8Write(s, offset, b.length - offset)
  : (b, s, offset) => b.write(s, offset, 'utf8');

const hasOwn = (o: object, key: string): boolean => Object.hasOwn(o, key);

/** Whether two keys of `m` are equal terms (two atoms joe are; a JavaScript Map tells them apart). */
export function hasKeyTwice(m: Map<unknown, unknown>): boolean {
  const seen = new TermSet();
  for (const k of m.keys()) if (!seen.add(k as Term)) return true;
  return false;
}

/** Up to 8 ASCII bytes as a string, in one call (the character-by-character way makes a string per character). */
function shortAscii(b: Uint8Array, i: number, len: number): string {
  const c = (k: number): number => b[i + k] as number;
  switch (len) {
    case 0:
      return '';
    case 1:
      return String.fromCharCode(c(0));
    case 2:
      return String.fromCharCode(c(0), c(1));
    case 3:
      return String.fromCharCode(c(0), c(1), c(2));
    case 4:
      return String.fromCharCode(c(0), c(1), c(2), c(3));
    case 5:
      return String.fromCharCode(c(0), c(1), c(2), c(3), c(4));
    case 6:
      return String.fromCharCode(c(0), c(1), c(2), c(3), c(4), c(5));
    case 7:
      return String.fromCharCode(c(0), c(1), c(2), c(3), c(4), c(5), c(6));
    default:
      return String.fromCharCode(c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7));
  }
}

/** Room for the UTF-16 units of a short string (fewer than 16 bytes of UTF-8 make at most 15 units). */
const units = new Uint16Array(16);

/**
 * Decodes fewer than 16 bytes of UTF-8 in JavaScript (for a few bytes, two native calls cost more than the work),
 * as strictly as Node's isUtf8: no overlong forms, no surrogates, nothing past U+10FFFF. Null when not valid.
 */
export function shortUtf8(b: Uint8Array, start: number, end: number): string | null {
  let n = 0;
  let i = start;
  while (i < end) {
    const c = b[i] as number;
    if (c < 0x80) {
      units[n++] = c;
      i++;
      continue;
    }
    let need: number;
    let cp: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      cp = c & 0x1f;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      cp = c & 0x0f;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return null;
    }
    if (i + need >= end) return null; // the sequence runs past the string
    for (let k = 1; k <= need; k++) {
      const cc = b[i + k] as number;
      if ((cc & 0xc0) !== 0x80) return null;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
    i += need + 1;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units[n++] = 0xd800 | (cp >> 10);
      units[n++] = 0xdc00 | (cp & 0x3ff);
    } else {
      units[n++] = cp;
    }
  }
  switch (n) {
    case 1:
      return String.fromCharCode(units[0] as number);
    case 2:
      return String.fromCharCode(units[0] as number, units[1] as number);
    case 3:
      return String.fromCharCode(units[0] as number, units[1] as number, units[2] as number);
    default:
      return String.fromCharCode(...units.subarray(0, n));
  }
}
