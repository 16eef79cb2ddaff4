/**
 * Erlang's External Term Format (`term_to_binary`), for the original lib_chan protocol (docs/ERLANG.md): `encode` is
 * a pure function of the term, `decode` trusts nothing, as in the MessagePack codec.
 *
 * The mapping, both ways (docs/ERLANG.md has the table for users):
 *
 * | Erlang (tags read)                                   | JavaScript                    | written as                  |
 * | ---------------------------------------------------- | ----------------------------- | --------------------------- |
 * | integer (97, 98, 110, 111: from -2^63 to 2^64 - 1) | `number`, or `bigint` past 2^53 | 97, 98 or 110      |
 * | float (70; 99, the old text form)                    | `number`, or a `Float` when whole | 70                      |
 * | atom (100, 115, 118, 119)                            | `Atom`; `true`/`false` booleans; `null` is `null` | 119 or 118 |
 * | tuple (104, 105)                                     | `Tuple`                       | 104 or 105                  |
 * | `[]` (106)                                           | `[]`                          | 106                         |
 * | string (107), or a proper list (108) of integers that are all Unicode code points | `string` | 107 when every character is below 256 and there are at most 65,535 of them, else 108 of code points; `""` as 106 |
 * | any other proper list (108)                          | `Array`                       | 108 (`[]` as 106)           |
 * | binary (109)                                         | `Buffer` (`Uint8Array` written) | 109                       |
 * | map (116)                                            | `Map`, or a plain object when every key is a string | 116   |
 *
 * Erlang has no string type: a string is a list of code points, and `term_to_binary([1, 2, 3])` is the same bytes as
 * `term_to_binary("\x01\x02\x03")`. A list of integers that are all code points therefore arrives as a string; any
 * other list as an array.
 *
 * Refused with `protocolError` (never quoting the input): improper lists, bitstrings that are not whole bytes, pids,
 * ports, references and funs (they mean nothing outside the Erlang node that made them), the distribution's atom
 * cache, integers outside {@link MIN_INTEGER}..{@link MAX_INTEGER}, atoms of more than 255 characters, nesting deeper than
 * `maxDepth`, any length that runs past the data, a map with a key twice, and a compressed term (80) that would inflate
 * past the frame limit (its stated size is checked before anything is inflated, and inflating stops there). Memory is
 * charged by decoded size with the same {@link COST} table as MessagePack, within the same budget.
 */
import { isUtf8 } from 'node:buffer';
import { inflateSync } from 'node:zlib';
import { ChanError, LimitError } from '../errors.js';
import { TermSet } from '../term/hash.js';
import {
  Atom,
  Float,
  Tuple,
  isIntegerNumber,
  isTermObject,
  mapKey,
  narrowInteger,
  type Term,
  type TermObject,
} from '../term/model.js';
import { COST, MAX_ATOM_CHARS, atomTooLong, hasKeyTwice, numberCost, stringCost } from './msgpack.js';
import { DECODED_SIZE_RATIO, Writer, checkCost } from './writer.js';

/** The first byte of every external term. */
export const ETF_VERSION = 131;

/**
 * Integers read and written: the range MessagePack carries (-2^63 to 2^64 - 1), so that whatever an Erlang peer sends
 * can reach a worker thread, the store and a lib-chan client. A bignum outside it is refused.
 */
export const MIN_INTEGER = -(2n ** 63n);
export const MAX_INTEGER = 2n ** 64n - 1n;
const INTEGER_RANGE = 'the 64-bit range lib-chan carries (-2^63 to 2^64 - 1)';

/** The longest string written as one STRING_EXT (its length is 16 bits). */
const MAX_STRING_EXT = 0xffff;

/** The tags of the External Term Format (erts/emulator/beam/external.h), those read or refused by name. */
export const TAG = {
  NEW_FLOAT: 70,
  BIT_BINARY: 77,
  ATOM_CACHE_REF: 82,
  COMPRESSED: 80,
  NEW_PID: 88,
  NEW_PORT: 89,
  NEWER_REFERENCE: 90,
  SMALL_INTEGER: 97,
  INTEGER: 98,
  FLOAT: 99,
  ATOM: 100,
  REFERENCE: 101,
  PORT: 102,
  PID: 103,
  SMALL_TUPLE: 104,
  LARGE_TUPLE: 105,
  NIL: 106,
  STRING: 107,
  LIST: 108,
  BINARY: 109,
  SMALL_BIG: 110,
  LARGE_BIG: 111,
  NEW_FUN: 112,
  EXPORT: 113,
  NEW_REFERENCE: 114,
  SMALL_ATOM: 115,
  MAP: 116,
  FUN: 117,
  ATOM_UTF8: 118,
  SMALL_ATOM_UTF8: 119,
  V4_PORT: 120,
  LOCAL: 121,
} as const;

/** What the tags that lib-chan refuses are, for the error a peer gets. */
const REFUSED: ReadonlyMap<number, string> = new Map([
  [TAG.NEW_PID, 'a pid'],
  [TAG.PID, 'a pid'],
  [TAG.NEW_PORT, 'a port'],
  [TAG.PORT, 'a port'],
  [TAG.V4_PORT, 'a port'],
  [TAG.REFERENCE, 'a reference'],
  [TAG.NEW_REFERENCE, 'a reference'],
  [TAG.NEWER_REFERENCE, 'a reference'],
  [TAG.NEW_FUN, 'a fun'],
  [TAG.FUN, 'a fun'],
  [TAG.EXPORT, 'a fun'],
  [TAG.LOCAL, 'a term in a node-local encoding'],
  [TAG.ATOM_CACHE_REF, "a reference to the distribution's atom cache"],
]);

function malformed(message: string): ChanError {
  return new ChanError('protocolError', `malformed term: ${message}`);
}

function badTerm(message: string): ChanError {
  return new ChanError('badTerm', message);
}

/** True when every element of `items` is an integer that is a Unicode scalar value (a code point, not a surrogate). */
function allCodePoints(items: readonly Term[]): boolean {
  for (const x of items) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 0x10ffff || (x >= 0xd800 && x <= 0xdfff))
      return false;
  }
  return true;
}

/** What the string of `codes` (code points) costs once built: its UTF-8 and UTF-16 lengths, as stringCost counts. */
function codePointsCost(codes: readonly number[]): number {
  let utf8 = 0;
  let units = 0;
  for (const c of codes) {
    utf8 += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    units += c < 0x10000 ? 1 : 2;
  }
  return stringCost(utf8, units);
}

/** The string of `codes` (code points), built in slices so that no call gets too many arguments. */
function fromCodePoints(codes: readonly number[]): string {
  let s = '';
  for (let i = 0; i < codes.length; i += 4096) s += String.fromCodePoint(...codes.slice(i, i + 4096));
  return s;
}

// ---------------------------------------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes a term as `term_to_binary` would (version byte included, never compressed), after `headroom` unused bytes.
 * Throws `badTerm` for a value that is not a term, nests deeper than `maxDepth`, or has no Erlang form (an integer
 * outside {@link MIN_INTEGER}..{@link MAX_INTEGER}), and `frameTooLarge` for one whose decoded size would pass `maxCost`.
 */
export function encodeEtf(value: unknown, maxDepth: number, headroom = 0, maxCost = Number.POSITIVE_INFINITY): Buffer {
  const w = new Writer();
  w.maxCost = maxCost;
  w.ensure(headroom + 1);
  w.pos = headroom;
  w.u8(ETF_VERSION);
  write(w, value, maxDepth);
  return w.buf.subarray(0, w.pos);
}

function write(w: Writer, v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      return writeString(w, v);
    case 'number':
      if (isIntegerNumber(v)) {
        w.charge(numberCost(v));
        return writeInteger(w, v);
      }
      w.charge(COST.boxed);
      return writeFloat(w, v);
    case 'boolean':
      return writeAtom(w, v ? 'true' : 'false');
    case 'undefined':
      return writeAtom(w, 'null');
    case 'bigint': {
      const n = narrowInteger(v);
      w.charge(typeof n === 'number' ? numberCost(n) : COST.bigint);
      return writeInteger(w, n);
    }
    case 'object':
      break;
    default:
      throw badTerm(`a ${typeof v} is not a term`);
  }
  if (v === null) return writeAtom(w, 'null');
  if (v instanceof Float) {
    w.charge(COST.boxed);
    return writeFloat(w, v.value);
  }
  if (v instanceof Atom) {
    if (atomTooLong(v.name)) throw badTerm(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
    if (v.name !== 'true' && v.name !== 'false' && v.name !== 'null')
      w.charge(COST.atom + stringCost(Buffer.byteLength(v.name), v.name.length));
    return writeAtom(w, v.name);
  }
  if (v instanceof Uint8Array) {
    w.charge(COST.binary + v.length);
    w.u8u32(TAG.BINARY, v.length);
    w.ensure(v.length);
    w.buf.set(v, w.pos);
    w.pos += v.length;
    return;
  }
  if (depth <= 0) throw new LimitError('badTerm', 'term nests deeper than max_depth (or is cyclic)');
  if (Array.isArray(v)) {
    w.charge(COST.array + COST.slot * v.length);
    if (v.length === 0) return w.u8(TAG.NIL);
    // A list of code points is read back as a string (both are charged, as the decoder charges them).
    if (allCodePoints(v)) w.charge(codePointsCost(v as number[]));
    w.u8u32(TAG.LIST, v.length);
    for (const item of v) write(w, item, depth - 1);
    return w.u8(TAG.NIL);
  }
  if (v instanceof Tuple) {
    const n = v.elements.length;
    w.charge(COST.tuple + COST.array + COST.slot * n);
    if (n <= 0xff) {
      w.ensure(2);
      w.buf[w.pos++] = TAG.SMALL_TUPLE;
      w.buf[w.pos++] = n;
    } else {
      w.u8u32(TAG.LARGE_TUPLE, n);
    }
    for (const item of v.elements) write(w, item, depth - 1);
    return;
  }
  if (v instanceof Map) {
    w.charge(COST.map + COST.entry * v.size);
    if (v.size > 1 && hasKeyTwice(v)) throw badTerm('a map has the same key twice (keys are compared by value)');
    w.u8u32(TAG.MAP, v.size);
    for (const [k, item] of v) {
      write(w, k, depth - 1);
      write(w, item, depth - 1);
    }
    return;
  }
  if (isTermObject(v)) {
    const keys = Object.keys(v);
    w.charge(COST.map + COST.entry * keys.length);
    w.u8u32(TAG.MAP, keys.length);
    for (const k of keys) {
      writeString(w, k);
      write(w, (v as TermObject)[k], depth - 1);
    }
    return;
  }
  const name = (v as object).constructor?.name ?? 'object';
  throw badTerm(`a ${name} is not a term (send plain data: atoms, tuples, lists, strings, numbers, binaries, maps)`);
}

/** An atom: SMALL_ATOM_UTF8 for a name of at most 255 bytes, else ATOM_UTF8 (the forms OTP 26 and later write). */
function writeAtom(w: Writer, name: string): void {
  const len = Buffer.byteLength(name);
  if (len <= 0xff) {
    w.ensure(2 + len);
    w.buf[w.pos++] = TAG.SMALL_ATOM_UTF8;
    w.buf[w.pos++] = len;
  } else {
    w.u8u16(TAG.ATOM_UTF8, len);
    w.ensure(len);
  }
  w.pos += w.buf.write(name, w.pos, 'utf8');
}

/**
 * A string as Erlang holds one: STRING_EXT when every character fits a byte (as `term_to_binary` writes a string of
 * bytes), else a list of its code points. The empty string is `[]`, as `""` is in Erlang.
 */
function writeString(w: Writer, s: string): void {
  const n = s.length;
  if (n === 0) {
    w.charge(COST.array); // read back, it is []
    return w.u8(TAG.NIL);
  }
  let bytes = n <= MAX_STRING_EXT;
  for (let i = 0; bytes && i < n; i++) if (s.charCodeAt(i) > 0xff) bytes = false;
  if (bytes) {
    w.charge(stringCost(n, n));
    w.u8u16(TAG.STRING, n);
    w.ensure(n);
    w.pos += w.buf.write(s, w.pos, 'latin1');
    return;
  }
  // Read back, it is a list before it is a string: charged both, as the decoder charges it.
  const codes = Array.from(s, (c) => c.codePointAt(0) as number);
  w.charge(COST.array + COST.slot * codes.length + codePointsCost(codes));
  w.u8u32(TAG.LIST, codes.length);
  for (const c of codes) {
    if (c <= 0xff) {
      w.ensure(2);
      w.buf[w.pos++] = TAG.SMALL_INTEGER;
      w.buf[w.pos++] = c;
    } else {
      w.u8u32(TAG.INTEGER, c);
    }
  }
  w.u8(TAG.NIL);
}

/** An integer, held as a number when one holds it exactly (the fast forms), else as a bigint. */
function writeInteger(w: Writer, n: number | bigint): void {
  if (typeof n === 'number' && n >= 0 && n <= 0xff) {
    w.ensure(2);
    w.buf[w.pos++] = TAG.SMALL_INTEGER;
    w.buf[w.pos++] = n;
    return;
  }
  if (typeof n === 'number' && n >= -0x8000_0000 && n <= 0x7fff_ffff) {
    w.ensure(5);
    w.buf[w.pos] = TAG.INTEGER;
    w.buf.writeInt32BE(n, w.pos + 1);
    w.pos += 5;
    return;
  }
  // SMALL_BIG_EXT: the magnitude's bytes, least significant first, after a sign byte.
  const big = BigInt(n);
  if (big < MIN_INTEGER || big > MAX_INTEGER) throw badTerm(`an integer outside ${INTEGER_RANGE} cannot be sent`);
  const negative = big < 0n;
  let magnitude = negative ? -big : big;
  const digits: number[] = [];
  while (magnitude > 0n) {
    digits.push(Number(magnitude & 0xffn));
    magnitude >>= 8n;
  }
  w.ensure(3 + digits.length);
  w.buf[w.pos++] = TAG.SMALL_BIG;
  w.buf[w.pos++] = digits.length;
  w.buf[w.pos++] = negative ? 1 : 0;
  for (const d of digits) w.buf[w.pos++] = d;
}

function writeFloat(w: Writer, n: number): void {
  if (!Number.isFinite(n)) throw badTerm('Erlang has no float for NaN or an infinity');
  w.ensure(9);
  w.buf[w.pos] = TAG.NEW_FLOAT;
  w.buf.writeDoubleBE(n, w.pos + 1);
  w.pos += 9;
}

// ---------------------------------------------------------------------------------------------------------------------
// Decoding

/**
 * `inflateSync` with `info: true`, which Node documents but its type declarations leave out: the result, and the
 * engine whose `bytesWritten` says how much of the input the zlib stream took.
 */
const inflateWithInfo = (
  input: Buffer,
  options: { maxOutputLength: number; info: true },
): { buffer: Buffer; engine: { bytesWritten: number } } => Reflect.apply(inflateSync, undefined, [input, options]);

const EMPTY = Buffer.alloc(0);

/** Where the last decodeEtf left its decoded size. */
let lastCost = 0;

/** The decoded size of the value the last {@link decodeEtf} returned. */
export function lastEtfDecodedSize(): number {
  return lastCost;
}

/**
 * Decodes one external term (version byte first) that must fill `bytes` exactly. `maxCost` is the decoded-size budget
 * ({@link decodedSizeLimit} of the frame limit); a compressed term may inflate to at most `maxCost / 8` bytes (the
 * frame limit itself). Errors are {@link ChanError}s (`protocolError`, or `frameTooLarge` past the budget) whose
 * messages never contain the input.
 */
export function decodeEtf(bytes: Uint8Array, maxDepth: number, maxCost = Number.POSITIVE_INFINITY): Term {
  const d = new Decoder(bytes, maxCost);
  if (bytes[0] !== ETF_VERSION) throw malformed(`an external term starts with the byte ${ETF_VERSION}`);
  d.pos = 1;
  let value: Term;
  if (bytes[1] === TAG.COMPRESSED) {
    d.pos = 2;
    const inflated = d.inflate(Math.floor(maxCost / DECODED_SIZE_RATIO));
    const inner = new Decoder(inflated, maxCost);
    value = inner.read(maxDepth);
    if (inner.pos !== inflated.length)
      throw malformed(`${inflated.length - inner.pos} bytes after the end of the term`);
    lastCost = inner.cost;
    return value;
  }
  value = d.read(maxDepth);
  if (d.pos !== bytes.length) throw malformed(`${bytes.length - d.pos} bytes after the end of the term`);
  lastCost = d.cost;
  return value;
}

class Decoder {
  pos = 0;
  cost = 0;
  private readonly buf: Buffer;
  private memo: WeakMap<object, number> | null = null;

  constructor(
    bytes: Uint8Array,
    private readonly maxCost: number,
  ) {
    this.buf = bytes.length === 0 ? EMPTY : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number, what: string): void {
    if (n > this.buf.length - this.pos) throw malformed(`${what} runs past the end of the data`);
  }
  private charge(n: number): void {
    checkCost((this.cost += n), this.maxCost);
  }
  private u8(what = 'a term'): number {
    this.need(1, what);
    return this.buf[this.pos++] as number;
  }
  private u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  private u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** COMPRESSED_EXT's body: its stated size checked against `limit` before anything is inflated. */
  inflate(limit: number): Buffer {
    const size = this.u32('a compressed term');
    if (size > limit)
      throw new LimitError(
        'frameTooLarge',
        `a compressed term would inflate to ${size} bytes, more than the frame limit (${limit} bytes)`,
      );
    let out: Buffer;
    let read: number;
    try {
      const r = inflateWithInfo(this.buf.subarray(this.pos), { maxOutputLength: Math.max(size, 1), info: true });
      out = r.buffer;
      read = r.engine.bytesWritten;
    } catch {
      throw malformed('a compressed term does not inflate to its stated size');
    }
    if (out.length !== size) throw malformed('a compressed term does not inflate to its stated size');
    // zlib stops at the end of its stream: bytes after it are not part of the term.
    if (this.pos + read !== this.buf.length) throw malformed('bytes after the end of a compressed term');
    this.pos = this.buf.length;
    return out;
  }

  read(depth: number): Term {
    const tag = this.u8();
    const b = this.buf;
    switch (tag) {
      case TAG.SMALL_INTEGER:
        return this.u8('an integer');
      case TAG.INTEGER: {
        this.need(4, 'an integer');
        const n = b.readInt32BE(this.pos);
        this.pos += 4;
        this.charge(numberCost(n));
        return n;
      }
      case TAG.SMALL_BIG:
        return this.big(this.u8('an integer'));
      case TAG.LARGE_BIG:
        return this.big(this.u32('an integer'));
      case TAG.NEW_FLOAT: {
        this.need(8, 'a float');
        const f = b.readDoubleBE(this.pos);
        this.pos += 8;
        if (!Number.isFinite(f)) throw malformed('a float that is NaN or infinite is not an Erlang float');
        this.charge(COST.boxed);
        return isIntegerNumber(f) ? new Float(f) : f;
      }
      case TAG.FLOAT:
        return this.oldFloat();
      case TAG.ATOM:
        return this.atom(this.u16('an atom'), false);
      case TAG.SMALL_ATOM:
        return this.atom(this.u8('an atom'), false);
      case TAG.ATOM_UTF8:
        return this.atom(this.u16('an atom'), true);
      case TAG.SMALL_ATOM_UTF8:
        return this.atom(this.u8('an atom'), true);
      case TAG.SMALL_TUPLE:
        return this.tuple(this.u8('a tuple'), depth);
      case TAG.LARGE_TUPLE:
        return this.tuple(this.u32('a tuple'), depth);
      case TAG.NIL:
        this.charge(COST.array);
        return [];
      case TAG.STRING: {
        const n = this.u16('a string');
        this.need(n, 'a string');
        this.charge(stringCost(n, n));
        const s = b.toString('latin1', this.pos, this.pos + n);
        this.pos += n;
        return s;
      }
      case TAG.LIST:
        return this.list(this.u32('a list'), depth);
      case TAG.BINARY: {
        const n = this.u32('a binary');
        this.need(n, 'a binary');
        this.charge(COST.binary + n);
        // A copy: a view would keep the whole frame alive as long as the value lives.
        const out = Buffer.from(b.subarray(this.pos, this.pos + n));
        this.pos += n;
        return out;
      }
      case TAG.MAP:
        return this.map(this.u32('a map'), depth);
      case TAG.BIT_BINARY:
        throw malformed('a bitstring that is not a whole number of bytes has no counterpart in lib-chan');
      case TAG.COMPRESSED:
        throw malformed('a compressed term may only be the whole term');
      default: {
        const what = REFUSED.get(tag);
        if (what) throw malformed(`${what} cannot travel to lib-chan (it means something only on its own node)`);
        throw malformed(`byte ${tag} at offset ${this.pos - 1} is not an external term tag lib-chan reads`);
      }
    }
  }

  private big(n: number): number | bigint {
    if (n > 8) throw malformed(`an integer outside ${INTEGER_RANGE}`);
    this.need(n + 1, 'an integer');
    const sign = this.buf[this.pos++] as number;
    if (sign > 1) throw malformed('a big integer whose sign byte is neither 0 nor 1');
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.buf[this.pos + i] as number);
    this.pos += n;
    const signed = sign ? -v : v;
    if (signed < MIN_INTEGER) throw malformed(`an integer outside ${INTEGER_RANGE}`);
    const value = narrowInteger(signed);
    this.charge(typeof value === 'bigint' ? COST.bigint : numberCost(value));
    return value;
  }

  /** FLOAT_EXT: 31 bytes of text (`%.20e`), zero-padded; read only in the form C's printf writes. */
  private oldFloat(): number | Float {
    this.need(31, 'a float');
    const raw = this.buf.toString('latin1', this.pos, this.pos + 31);
    this.pos += 31;
    const text = raw.replace(/\0+$/, '');
    if (!/^\s*[-+]?\d+\.\d+e[-+]\d+$/.test(text)) throw malformed('a float in text form that is not a number');
    const f = Number(text);
    if (!Number.isFinite(f)) throw malformed('a float in text form that is not finite');
    this.charge(COST.boxed);
    return isIntegerNumber(f) ? new Float(f) : f;
  }

  private atom(len: number, utf8: boolean): Term {
    if (len > (utf8 ? MAX_ATOM_CHARS * 4 : MAX_ATOM_CHARS))
      throw malformed(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
    this.need(len, 'an atom');
    const bytes = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    if (utf8 && !isUtf8(bytes)) throw malformed('an atom whose name is not valid UTF-8');
    const name = bytes.toString(utf8 ? 'utf8' : 'latin1');
    if (atomTooLong(name)) throw malformed(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
    if (name === 'true') return true;
    if (name === 'false') return false;
    if (name === 'null') return null;
    this.charge(COST.atom + stringCost(len, name.length));
    return new Atom(name);
  }

  private tuple(n: number, depth: number): Tuple {
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    this.need(n, 'a tuple'); // every element takes at least one byte: checked before allocating
    this.charge(COST.tuple + COST.array + COST.slot * n);
    const out = new Array<Term>(n);
    for (let i = 0; i < n; i++) out[i] = this.read(depth - 1);
    return new Tuple(out);
  }

  private list(n: number, depth: number): Term[] | string {
    // A list in the deepest list: refused as met (the deepest may be a string of code points, but never holds a list).
    if (depth < 0) throw malformed('nesting deeper than max_depth');
    this.need(n + 1, 'a list');
    this.charge(COST.array + COST.slot * n);
    const out = new Array<Term>(n);
    // At the deepest level only a string is read (a string takes no level, as in MessagePack; a container inside is
    // refused as it is met).
    for (let i = 0; i < n; i++) out[i] = this.read(depth - 1);
    if (this.u8('a list') !== TAG.NIL) {
      throw malformed('an improper list (its tail is not []) has no counterpart in lib-chan');
    }
    if (n > 0 && allCodePoints(out)) {
      this.charge(codePointsCost(out as number[]));
      return fromCodePoints(out as number[]);
    }
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    return out;
  }

  private map(n: number, depth: number): TermObject | Map<Term, Term> {
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    this.need(n * 2, 'a map');
    this.charge(COST.map + COST.entry * n);
    this.memo ??= new WeakMap();
    const seen = new TermSet(this.memo);
    const keys = new Array<Term>(n);
    const values = new Array<Term>(n);
    let allStrings = true;
    for (let i = 0; i < n; i++) {
      const k = this.read(depth - 1);
      if (!seen.add(k)) throw malformed('a map has the same key twice');
      if (typeof k !== 'string') allStrings = false;
      keys[i] = k;
      values[i] = this.read(depth - 1);
    }
    if (allStrings) {
      const obj: TermObject = {};
      for (let i = 0; i < n; i++) {
        // A __proto__ key is an own property, never the prototype.
        Object.defineProperty(obj, keys[i] as string, {
          value: values[i],
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return obj;
    }
    const m = new Map<Term, Term>();
    for (let i = 0; i < n; i++) m.set(mapKey(keys[i] as Term), values[i] as Term);
    return m;
  }
}
