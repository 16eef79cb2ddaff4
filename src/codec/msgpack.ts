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
 * The decoder is written for hostile input: every length is checked against the bytes that remain before anything is
 * allocated; nesting deeper than `maxDepth` is refused; only the two extension types above are accepted; strings must
 * be valid UTF-8; a `__proto__` map key becomes an own property (never the prototype, never renamed). Its errors never
 * quote the input, so they can be sent to the peer as they are.
 */
import { isUtf8 } from 'node:buffer';
import { ChanError } from '../errors.js';
import { Atom, Tuple, isSafeBigInt, isTermObject, narrowInteger, type Term, type TermObject } from '../term/model.js';

export const EXT_ATOM = 1;
export const EXT_TUPLE = 2;
/** Erlang's own limit on atom names, in characters. */
export const MAX_ATOM_CHARS = 255;

// ---------------------------------------------------------------------------------------------------------------------
// Encoding

class Writer {
  buf = Buffer.allocUnsafe(1024);
  pos = 0;
  busy = false;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
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

const shared = new Writer();
const MAX_UINT32 = 0xffff_ffff;

/**
 * Encodes a term; the result starts with `headroom` unused bytes (the frame layer writes its length prefix there, so
 * a message is copied once). Throws a `badTerm` {@link ChanError} for values that are not terms or nest deeper than
 * `maxDepth` (which also catches cycles).
 */
export function encode(value: unknown, maxDepth: number, headroom = 0): Buffer {
  // A getter on a user's object could re-enter encode(); give such a call its own buffer.
  const w = shared.busy ? new Writer() : shared;
  w.busy = true;
  try {
    w.pos = 0;
    w.ensure(headroom);
    w.pos = headroom;
    write(w, value, maxDepth);
    const out = Buffer.allocUnsafe(w.pos);
    w.buf.copy(out, 0, 0, w.pos);
    return out;
  } finally {
    w.busy = false;
    if (w === shared && w.buf.length > 1 << 20) w.buf = Buffer.allocUnsafe(1024); // do not pin a huge scratch buffer
  }
}

function badTerm(message: string): ChanError {
  return new ChanError('badTerm', message);
}

function write(w: Writer, v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      return writeString(w, v);
    case 'number':
      return writeNumber(w, v);
    case 'boolean':
      return w.u8(v ? 0xc3 : 0xc2);
    case 'undefined':
      return w.u8(0xc0);
    case 'bigint':
      return writeBigInt(w, v);
    case 'object':
      break;
    default:
      throw badTerm(`a ${typeof v} is not a term`);
  }
  if (v === null) return w.u8(0xc0);
  if (depth <= 0) throw badTerm('term nests deeper than max_depth (or is cyclic)');
  if (Array.isArray(v)) {
    writeArrayHeader(w, v.length);
    for (const item of v) write(w, item, depth - 1);
  } else if (v instanceof Atom) {
    const len = Buffer.byteLength(v.name);
    if (v.name.length > MAX_ATOM_CHARS) throw badTerm(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
    writeExtHeader(w, EXT_ATOM, len);
    w.ensure(len);
    w.pos += w.buf.write(v.name, w.pos, 'utf8');
  } else if (v instanceof Tuple) {
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
    const b = w.buf;
    if (headerLen === 3) {
      b[headerAt] = 0xc7;
      b[headerAt + 1] = len;
    } else if (headerLen === 4) {
      b[headerAt] = 0xc8;
      b.writeUInt16BE(len, headerAt + 1);
    } else {
      b[headerAt] = 0xc9;
      b.writeUInt32BE(len, headerAt + 1);
    }
    b[headerAt + headerLen - 1] = EXT_TUPLE;
  } else if (v instanceof Uint8Array) {
    const len = v.length;
    if (len <= 0xff) w.u8u8(0xc4, len);
    else if (len <= 0xffff) w.u8u16(0xc5, len);
    else w.u8u32(0xc6, len);
    w.ensure(len);
    w.buf.set(v, w.pos);
    w.pos += len;
  } else if (v instanceof Map) {
    writeMapHeader(w, v.size);
    for (const [k, item] of v) {
      write(w, k, depth - 1);
      write(w, item, depth - 1);
    }
  } else if (isTermObject(v)) {
    const keys = Object.keys(v);
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
  const len = s.length < 32 && isAscii(s) ? s.length : Buffer.byteLength(s);
  if (len < 32) w.u8(0xa0 | len);
  else if (len <= 0xff) w.u8u8(0xd9, len);
  else if (len <= 0xffff) w.u8u16(0xda, len);
  else w.u8u32(0xdb, len);
  w.ensure(len);
  if (len === s.length && len < 32) {
    for (let i = 0; i < len; i++) w.buf[w.pos + i] = s.charCodeAt(i);
    w.pos += len;
  } else {
    w.pos += w.buf.write(s, w.pos, 'utf8');
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function writeNumber(w: Writer, n: number): void {
  if (Number.isSafeInteger(n) && !Object.is(n, -0)) {
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
  w.ensure(9);
  w.buf[w.pos] = 0xcb;
  w.buf.writeDoubleBE(n, w.pos + 1);
  w.pos += 9;
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
 * Decodes one MessagePack value that must fill `bytes` exactly. Containers nested deeper than `maxDepth` are refused.
 * Throws a `protocolError` {@link ChanError} whose message never contains the input.
 */
export function decode(bytes: Uint8Array, maxDepth: number): Term {
  // One decoder for every call: decoding runs no user code, so it cannot be re-entered.
  const d = decoder;
  d.reset(bytes);
  try {
    const value = d.read(maxDepth);
    if (d.pos !== bytes.length) throw malformed(`${bytes.length - d.pos} bytes after the end of the value`);
    return value;
  } finally {
    d.reset(EMPTY_BYTES); // do not keep the message alive
  }
}

const EMPTY_BYTES = Buffer.alloc(0);

class Decoder {
  pos = 0;
  end = 0;
  private b: Uint8Array = EMPTY_BYTES;
  /** The same bytes as a Buffer, for Node's native UTF-8 decoding and big-endian reads. */
  private buf: Buffer = EMPTY_BYTES;

  reset(b: Uint8Array): void {
    this.b = b;
    this.buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    this.pos = 0;
    this.end = b.length;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) throw malformed(`${what} runs past the end of the data`);
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
        return f;
      }
      case 0xcb: {
        this.need(8, 'a float');
        const f = v.readDoubleBE(this.pos);
        this.pos += 8;
        return f;
      }
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf: {
        this.need(8, 'an integer');
        const n = v.readBigUInt64BE(this.pos);
        this.pos += 8;
        return narrowInteger(n);
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
        return narrowInteger(n);
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
        throw malformed(`byte 0x${t.toString(16)} at offset ${this.pos - 1} is not a MessagePack type`);
    }
  }

  private str(len: number): string {
    this.need(len, 'a string');
    const start = this.pos;
    const end = start + len;
    this.pos = end;
    const b = this.b;
    if (len < 16) {
      // Short strings are most keys and words: build them directly when they are ASCII.
      let s = '';
      for (let i = start; i < end; i++) {
        const c = b[i] as number;
        if (c > 0x7f) return this.utf8(start, end);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return this.utf8(start, end);
  }

  private utf8(start: number, end: number): string {
    if (!isUtf8(this.b.subarray(start, end))) throw malformed(`the string at offset ${start} is not valid UTF-8`);
    return this.buf.toString('utf8', start, end);
  }

  private bin(len: number): Buffer {
    this.need(len, 'a binary');
    // A copy: a slice would keep the whole network chunk alive for as long as the value lives.
    const out = Buffer.from(this.b.subarray(this.pos, this.pos + len));
    this.pos += len;
    return out;
  }

  private array(n: number, depth: number): Term[] {
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    this.need(n, 'an array'); // every element takes at least one byte: check before allocating
    const out = new Array<Term>(n);
    for (let i = 0; i < n; i++) out[i] = this.read(depth - 1);
    return out;
  }

  private map(n: number, depth: number): TermObject | Map<Term, Term> {
    if (depth <= 0) throw malformed('nesting deeper than max_depth');
    this.need(n * 2, 'a map');
    const obj: TermObject = {};
    for (let i = 0; i < n; i++) {
      const key = this.read(depth - 1);
      if (typeof key !== 'string') return this.mapWithTermKeys(obj, key, n - i, depth);
      const value = this.read(depth - 1);
      if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
      else obj[key] = value;
    }
    return obj;
  }

  /** A map with a key that is not a string becomes a `Map`; `firstKey` has been read, its value not yet. */
  private mapWithTermKeys(sofar: TermObject, firstKey: Term, remaining: number, depth: number): Map<Term, Term> {
    const m = new Map<Term, Term>(Object.entries(sofar));
    m.set(firstKey, this.read(depth - 1));
    for (let i = 1; i < remaining; i++) {
      const key = this.read(depth - 1);
      m.set(key, this.read(depth - 1));
    }
    return m;
  }

  private ext(len: number, depth: number): Term {
    this.need(len + 1, 'an extension');
    const type = this.b[this.pos++] as number;
    const start = this.pos;
    if (type === EXT_ATOM) {
      if (len > MAX_ATOM_CHARS * 4) throw malformed(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
      const name = this.str(len);
      if (name.length > MAX_ATOM_CHARS && [...name].length > MAX_ATOM_CHARS) {
        throw malformed(`an atom may have at most ${MAX_ATOM_CHARS} characters`);
      }
      return new Atom(name);
    }
    if (type === EXT_TUPLE) {
      const outerEnd = this.end;
      this.end = start + len;
      const tag = this.u8();
      let n: number;
      if (tag >= 0x90 && tag < 0xa0) n = tag & 0x0f;
      else if (tag === 0xdc) n = this.u16();
      else if (tag === 0xdd) n = this.u32();
      else throw malformed(`the tuple at offset ${start} does not hold an array`);
      const elements = this.array(n, depth);
      if (this.pos !== this.end) throw malformed(`the tuple at offset ${start} has bytes after its array`);
      this.end = outerEnd;
      return new Tuple(elements);
    }
    throw malformed(`extension type ${type > 127 ? type - 256 : type} is not one lib-chan accepts (1 atom, 2 tuple)`);
  }
}

const decoder = new Decoder();
