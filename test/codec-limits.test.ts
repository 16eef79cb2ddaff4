/**
 * One definition of every limit for both directions: what the decoder accepts, the encoder sends back, with the same
 * meaning and the same decoded size; what a frame may cost once decoded is bounded before it is built.
 */
import { isUtf8 } from 'node:buffer';
import test from 'ava';
import fc from 'fast-check';
import {
  COST,
  DECODED_SIZE_RATIO,
  decode,
  decodedSizeLimit,
  encode,
  flatCost,
  lastDecodedSize,
  measure,
  shortUtf8,
  stringCost,
} from '../src/codec/msgpack.js';
import { ChanError, LimitError } from '../src/errors.js';
import { Atom, Float, Tuple, atom, float, formatTerm, termKey, tuple, type Term } from '../src/term/index.js';
import { sameTerm, termHash } from '../src/term/hash.js';

const bytes = (...xs: number[]): Buffer => Buffer.from(xs);
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const u32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];

test("an atom's 255 characters are code points both ways: 255 emoji go and come back, 256 are refused by both", (t) => {
  const emoji255 = atom('\u{1F600}'.repeat(255)); // 510 UTF-16 units, 1,020 bytes
  const back = decode(encode(emoji255, 4), 4);
  t.is(formatTerm(back), formatTerm(emoji255));
  const emoji256 = atom('\u{1F600}'.repeat(256));
  t.is(t.throws(() => encode(emoji256, 4), { instanceOf: ChanError })?.code, 'badTerm');
  const wire = Buffer.concat([bytes(0xc8, ...u16(1024), 1), Buffer.from(emoji256.name)]);
  t.is(t.throws(() => decode(wire, 4), { instanceOf: ChanError })?.code, 'protocolError');
});

test('atoms and binaries take no level of nesting: at the deepest level both sides accept them', (t) => {
  // Two containers deep with depth 2: a list holding a list holding an atom and a binary.
  const value = [[atom('deep'), Buffer.from('bin')]];
  const wire = encode(value, 2);
  t.is(formatTerm(decode(wire, 2)), formatTerm(value));
  t.is(t.throws(() => encode([[[]]], 2), { instanceOf: LimitError })?.code, 'badTerm');
});

test('a million empty maps (1 MiB on the wire, 64 MiB decoded) are refused with frameTooLarge before they are built', (t) => {
  const n = 1024 * 1024 - 5;
  const frame = Buffer.alloc(n + 5, 0x80);
  frame[0] = 0xdd;
  frame.writeUInt32BE(n, 1);
  const limit = decodedSizeLimit(1024 * 1024);
  const err = t.throws(() => decode(frame, 33, limit), { instanceOf: LimitError });
  t.is(err?.code, 'frameTooLarge');
  t.regex(err?.message ?? '', /more than 8388608 bytes once decoded/);
  // The list's own slots are charged at its header: nothing was built.
  t.is(lastDecodedSize(), COST.array + COST.slot * n);
});

test('the decoded-size budget holds exactly: a value at it is accepted, one byte under it refused', (t) => {
  const value: Term = [
    tuple(atom('store'), 'k', { a: [1, 2.5, 2n ** 60n, float(1), float(2 ** 40)] }),
    Buffer.alloc(10),
    new Map([[atom('x'), -1]]),
  ];
  const wire = encode(value, 8);
  decode(wire, 8);
  const size = lastDecodedSize();
  t.notThrows(() => decode(wire, 8, size));
  t.is(t.throws(() => decode(wire, 8, size - 1), { instanceOf: LimitError })?.code, 'frameTooLarge');
  t.notThrows(() => encode(value, 8, 0, size));
  t.is(t.throws(() => encode(value, 8, 0, size - 1), { instanceOf: LimitError })?.code, 'frameTooLarge');
  t.is(DECODED_SIZE_RATIO, 8);
});

// ---------------------------------------------------------------------------------------------------------------------
// Every payload the decoder accepts: MessagePack in any of its widths, as another implementation may write it.

const pick = <T>(...xs: T[]): fc.Arbitrary<T> => fc.constantFrom(...xs);

function uint(n: number, width: 'fix' | 8 | 16 | 32 | 64): Buffer {
  switch (width) {
    case 'fix':
      return bytes(n);
    case 8:
      return bytes(0xcc, n);
    case 16:
      return bytes(0xcd, ...u16(n));
    case 32:
      return bytes(0xce, ...u32(n));
    case 64: {
      const b = Buffer.alloc(9);
      b[0] = 0xcf;
      b.writeBigUInt64BE(BigInt(n), 1);
      return b;
    }
  }
}

function withHeader(kind: 'str' | 'bin' | 'array' | 'map', len: number, which: number): Buffer {
  const fix = { str: [0xa0, 32], array: [0x90, 16], map: [0x80, 16], bin: [-1, 0] }[kind];
  const wide = { str: [0xd9, 0xda, 0xdb], bin: [0xc4, 0xc5, 0xc6], array: [-1, 0xdc, 0xdd], map: [-1, 0xde, 0xdf] }[
    kind
  ];
  const forms: Buffer[] = [];
  if ((fix[0] as number) >= 0 && len < (fix[1] as number)) forms.push(bytes((fix[0] as number) | len));
  if ((wide[0] as number) >= 0 && len <= 0xff) forms.push(bytes(wide[0] as number, len));
  if (len <= 0xffff) forms.push(bytes(wide[1] as number, ...u16(len)));
  forms.push(bytes(wide[2] as number, ...u32(len)));
  return forms[which % forms.length] as Buffer;
}

function ext(type: number, payload: Buffer, which: number): Buffer {
  const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
  const forms: Buffer[] = [];
  const f = fixed[payload.length];
  if (f !== undefined) forms.push(bytes(f, type));
  if (payload.length <= 0xff) forms.push(bytes(0xc7, payload.length, type));
  if (payload.length <= 0xffff) forms.push(bytes(0xc8, ...u16(payload.length), type));
  forms.push(bytes(0xc9, ...u32(payload.length), type));
  return Buffer.concat([forms[which % forms.length] as Buffer, payload]);
}

const scalar: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .integer({ min: 0, max: 127 })
    .chain((n) => pick<'fix' | 8 | 16 | 32 | 64>('fix', 8, 16, 32, 64).map((w) => uint(n, w))),
  fc.integer({ min: 0, max: 0xffff_ffff }).map((n) => uint(n, 32)),
  fc.integer({ min: -(2 ** 31), max: -1 }).map((n) => bytes(0xd2, ...u32(n >>> 0))),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((n) => {
    const b = Buffer.alloc(9);
    b[0] = 0xd3;
    b.writeBigInt64BE(n, 1);
    return b;
  }),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((n) => {
    const b = Buffer.alloc(9);
    b[0] = 0xcf;
    b.writeBigUInt64BE(n, 1);
    return b;
  }),
  fc.double().map((f) => {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(f, 1);
    return b;
  }),
  fc.float().map((f) => {
    const b = Buffer.alloc(5);
    b[0] = 0xca;
    b.writeFloatBE(f, 1);
    return b;
  }),
  // Floats with whole values, which must come back floats (float 64), not integers.
  fc.oneof(fc.integer(), fc.constantFrom(0, -0, 2 ** 53 - 1, 2 ** 53, 2 ** 60)).map((f) => {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(f, 1);
    return b;
  }),
  fc.integer({ min: -(2 ** 24), max: 2 ** 24 }).map((f) => {
    const b = Buffer.alloc(5);
    b[0] = 0xca;
    b.writeFloatBE(f, 1);
    return b;
  }),
  pick(bytes(0xc0), bytes(0xc2), bytes(0xc3)),
  fc.tuple(fc.string({ unit: pick('a', 'z', 'é', '€', '\u{1F600}', '\0'), maxLength: 40 }), fc.nat()).map(([s, w]) => {
    const b = Buffer.from(s);
    return Buffer.concat([withHeader('str', b.length, w), b]);
  }),
  fc
    .tuple(fc.uint8Array({ maxLength: 40 }), fc.nat())
    .map(([b, w]) => Buffer.concat([withHeader('bin', b.length, w), b])),
  // Atoms around the limit: up to 260 characters of one to four bytes each.
  fc
    .tuple(pick('a', 'é', '€', '\u{1F600}'), fc.integer({ min: 0, max: 260 }), fc.nat())
    .map(([c, n, w]) => ext(1, Buffer.from(c.repeat(n)), w)),
);

const { value: wireValue } = fc.letrec<{ value: Buffer; array: Buffer; map: Buffer; tuple: Buffer }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('array'), tie('map'), tie('tuple')),
  array: fc
    .tuple(fc.array(tie('value'), { maxLength: 5 }), fc.nat())
    .map(([xs, w]) => Buffer.concat([withHeader('array', xs.length, w), ...xs])),
  map: fc
    .tuple(fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 4 }), fc.nat())
    .map(([kvs, w]) => Buffer.concat([withHeader('map', kvs.length, w), ...kvs.flat()])),
  tuple: fc
    .tuple(fc.array(tie('value'), { maxLength: 4 }), fc.nat(), fc.nat())
    .map(([xs, w, e]) => ext(2, Buffer.concat([withHeader('array', xs.length, w), ...xs]), e)),
}));

test('every payload the decoder accepts, the encoder sends back with the same meaning and the same decoded size (property)', (t) => {
  const DEPTH = 4; // small, so that the limit is often reached
  let accepted = 0;
  fc.assert(
    fc.property(wireValue, fc.integer({ min: 0, max: 4000 }), (wire, budget) => {
      let value: Term;
      try {
        value = decode(wire, DEPTH, budget);
      } catch (err) {
        if (!(err instanceof ChanError) || (err.code !== 'protocolError' && err.code !== 'frameTooLarge')) throw err;
        return;
      }
      accepted++;
      const size = lastDecodedSize();
      const again = encode(value, DEPTH, 0, size); // within the same limits, or this throws
      const back = decode(again, DEPTH, size);
      if (formatTerm(back) !== formatTerm(value) || termKey(back) !== termKey(value))
        throw new Error(`${formatTerm(back)} is not ${formatTerm(value)}`);
      if (lastDecodedSize() !== size)
        throw new Error(`decoded size ${lastDecodedSize()} after the round trip, ${size} before`);
    }),
    { numRuns: 5000 },
  );
  t.true(accepted > 1000, `only ${accepted} payloads were accepted`);
});

test('short UTF-8 is decoded exactly as strictly as Node decodes it (property)', (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 15 }),
      fc.array(fc.integer({ min: 0x80, max: 0xf7 }), { maxLength: 6 }),
      (raw, high) => {
        const b = Buffer.from([...raw.slice(0, 15 - Math.min(high.length, 14)), ...high].slice(0, 15));
        const expected = isUtf8(b) ? b.toString('utf8') : null;
        if (shortUtf8(b, 0, b.length) !== expected) throw new Error(`differs on ${b.toString('hex')}`);
      },
    ),
    { numRuns: 50_000 },
  );
  for (const cp of [0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xffff, 0x10000, 0x10ffff]) {
    const s = String.fromCodePoint(cp);
    t.is(shortUtf8(Buffer.from(s), 0, Buffer.byteLength(s)), s);
  }
  for (const bad of [bytes(0xc0, 0x80), bytes(0xed, 0xa0, 0x80), bytes(0xf4, 0x90, 0x80, 0x80), bytes(0xe2, 0x82)])
    t.is(shortUtf8(bad, 0, bad.length), null);
});

test('a map with the same key twice is refused by both sides (keys compared by value, as in Erlang)', (t) => {
  // {"a": 1, "a": 2} and #{joe => 1, joe => 2}
  const strings = bytes(0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02);
  t.regex(t.throws(() => decode(strings, 4), { instanceOf: ChanError })?.message ?? '', /same key twice/);
  const atoms = Buffer.concat([bytes(0x82), encode(atom('joe'), 4), bytes(0x01), encode(atom('joe'), 4), bytes(0x02)]);
  t.regex(t.throws(() => decode(atoms, 4), { instanceOf: ChanError })?.message ?? '', /same key twice/);
  const twice = new Map<Term, Term>([
    [atom('joe'), 1],
    [atom('joe'), 2],
  ]);
  t.is(t.throws(() => encode(twice, 4), { instanceOf: ChanError })?.code, 'badTerm');
});

const { term: anyTerm } = fc.letrec<{ term: unknown; leaf: unknown }>((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.double(),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    fc.constantFrom(null, true, false, -0, 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1),
    fc.integer().map(float),
    fc.double().map((d) => new Float(d)),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.string({ unit: fc.constantFrom('a', 'é', '\u{1F600}'), maxLength: 255 }).map((s) => atom(s)),
  ),
  term: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('leaf'),
    fc.array(tie('term'), { maxLength: 20 }),
    fc.array(tie('term'), { maxLength: 5 }).map((xs) => tuple(...(xs as Term[]))),
    fc.dictionary(fc.string({ maxLength: 10 }), tie('term'), { maxKeys: 5 }),
    fc.array(fc.tuple(fc.integer(), tie('term')), { maxLength: 4 }).map((kvs) => new Map(kvs as [Term, Term][])),
  ),
}));

test('measure is right about a term whose getter measures another term while it is walked (a walk that re-enters)', (t) => {
  let inner: { bytes: number; size: number } | undefined;
  const value = {
    get a(): string {
      inner = measure(['x', 'yy'], 8);
      return 'zzz';
    },
  };
  const outer = measure(value, 8);
  t.deepEqual(inner, measure(['x', 'yy'], 8));
  t.deepEqual(outer, measure({ a: 'zzz' }, 8));
});

test('measure counts what encode writes and what the decoder charges, and refuses what encode refuses (property)', (t) => {
  fc.assert(
    fc.property(anyTerm, fc.integer({ min: 1, max: 6 }), (value, depth) => {
      let bytes: Buffer;
      try {
        bytes = encode(value, depth);
      } catch (err) {
        const e = t.throws(() => measure(value, depth));
        if (e?.message !== (err as Error).message)
          throw new Error(`encode: ${(err as Error).message}; measure: ${e?.message}`);
        return;
      }
      decode(bytes, depth);
      const m = measure(value, depth);
      if (m.bytes !== bytes.length || m.size !== lastDecodedSize())
        throw new Error(`measured ${JSON.stringify(m)}, wrote ${bytes.length} bytes of size ${lastDecodedSize()}`);
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

/** Leaves a key is often made of, and the edges of what flatCost sizes (31 and 32 characters, the words, -0). */
const keyLeaf = fc.oneof(
  fc.integer(),
  fc.constantFrom(-0, 2 ** 31, -(2 ** 31) - 1, 2 ** 53 - 1, 0.5, 'x'.repeat(31), 'x'.repeat(32), 'é'),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('true', 'false', 'null', 'nil', 'c', 'a'.repeat(31), 'a'.repeat(32), 'é', '\u{1F600}').map(atom),
  fc.string({ maxLength: 40 }).map(atom),
);

test('flatCost gives what measure gives for every term it sizes, and sizes the usual keys (property)', (t) => {
  const agrees = (x: unknown): void => {
    const c = flatCost(x);
    if (c >= 0 && c !== measure(x, 8).size) throw new Error(`flatCost ${c}, measure ${measure(x, 8).size}`);
  };
  fc.assert(fc.property(anyTerm, agrees), { numRuns: 2000 });
  fc.assert(fc.property(keyLeaf, agrees), { numRuns: 2000 });
  fc.assert(
    fc.property(fc.array(keyLeaf, { maxLength: 6 }), (xs) => agrees(tuple(...(xs as Term[])))),
    { numRuns: 2000 },
  );
  for (const k of [atom('joe'), 'joe', 12, tuple(atom('c'), 12), tuple(atom('location'), atom('joe'), 'x')])
    t.true(flatCost(k) >= 0, formatTerm(k as Term));
  // What it leaves to measure: a list, a binary, a float that must stay one, a bigint, a long or non-ASCII name.
  for (const k of [[1], Buffer.from('b'), float(1), 2n ** 60n, atom('é'), 'x'.repeat(32), tuple(1, 2, 3, 4, 5)])
    t.is(flatCost(k), -1);
});

test('a string is measured by its own bytes, whether or not it is the one decoded last', (t) => {
  const decoded = decode(encode('é'.repeat(20), 2), 2) as string; // 40 bytes
  t.is(measure(decoded, 2).bytes, 42);
  t.is(measure('a'.repeat(40), 2).bytes, 42);
  t.is(measure(`${decoded.slice(0, 19)}e`, 2).bytes, 41);
  t.is(measure(decoded, 2).size, stringCost(40, 20));
});

test('map keys that are maps are compared by value, whatever their order; a key nested 29 maps deep decodes once', (t) => {
  const k1 = new Map<Term, Term>([
    [atom('a'), 1],
    [atom('b'), [2, 3]],
  ]);
  const k2 = new Map<Term, Term>([
    [atom('b'), [2, 3]],
    [atom('a'), 1],
  ]);
  const wire = Buffer.concat([
    Buffer.from([0x82]),
    encode(k1, 8),
    Buffer.from([0x01]),
    encode(k2, 8),
    Buffer.from([0x02]),
  ]);
  t.regex(t.throws(() => decode(wire, 8), { instanceOf: ChanError })?.message ?? '', /same key twice/);
  // #{#{#{... [0, 1, ..., 999] => nil} => nil} ...}: each level's key holds all the levels below it.
  let nested: Term = Array.from({ length: 1000 }, (_, i) => i & 0x7f);
  for (let i = 0; i < 29; i++) nested = new Map<Term, Term>([[nested, null]]);
  t.is(formatTerm(decode(encode(nested, 33), 33)), formatTerm(nested));
});

test('termHash is equal for terms termKey calls equal, and sameTerm agrees with termKey (property)', (t) => {
  const reorder = (x: unknown): unknown => {
    if (x instanceof Map) return new Map([...x].reverse().map(([k, v]) => [reorder(k), reorder(v)]));
    if (Array.isArray(x)) return x.map(reorder);
    if (x instanceof Tuple) return new Tuple(x.elements.map((e) => reorder(e) as Term));
    if (
      x !== null &&
      typeof x === 'object' &&
      !(x instanceof Uint8Array) &&
      !(x instanceof Atom) &&
      !(x instanceof Float)
    ) {
      return Object.fromEntries(
        Object.entries(x)
          .reverse()
          .map(([k, v]) => [k, reorder(v)]),
      );
    }
    return x;
  };
  fc.assert(
    fc.property(anyTerm, anyTerm, (a, b) => {
      const memo = new WeakMap<object, number>();
      const copy = reorder(a) as Term;
      if (termHash(a as Term, memo) !== termHash(copy, memo) || !sameTerm(a as Term, copy, memo))
        throw new Error('a reordered copy differs');
      const equal = termKey(a as Term) === termKey(b as Term);
      if (sameTerm(a as Term, b as Term, memo) !== equal)
        throw new Error(`sameTerm says ${!equal}, termKey says ${equal}`);
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

test('maps whose entries have equal keys and values, or swapped ones, hash apart: no peer can choose map keys that meet', (t) => {
  const memo = new WeakMap<object, number>();
  const hashes = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    hashes.add(termHash(new Map<Term, Term>([[i, i]]), memo));
    hashes.add(termHash({ [`k${i}`]: `k${i}` }, memo));
  }
  // 2,000 maps; 30-bit hashes met by chance would take a few at most.
  t.true(hashes.size >= 1990, `${hashes.size} distinct hashes`);
  t.not(termHash(new Map<Term, Term>([[1, 2]]), memo), termHash(new Map<Term, Term>([[2, 1]]), memo));
  t.not(termHash({ a: 'b' }, memo), termHash({ b: 'a' }, memo));
});

test('sameTerm tells the integer 0 from the float -0.0, as termKey does', (t) => {
  const memo = new WeakMap<object, number>();
  t.false(sameTerm(0, -0, memo));
  t.false(sameTerm(tuple(atom('k'), 0), tuple(atom('k'), -0), memo));
  t.true(sameTerm(Number.NaN, Number.NaN, memo));
  t.is(termKey(0) === termKey(-0), sameTerm(0, -0, memo));
});

/** 20,000 made-up ASCII words of `shortest` to `longest` characters: more than the decoder's tables hold, many times. */
function inventedWords(shortest: number, longest: number): string[] {
  const lengths = longest - shortest + 1;
  return Array.from({ length: 20_000 }, (_, i) => (i * 2_654_435_761).toString(36).slice(0, shortest + (i % lengths)));
}

test('short strings decoded again come back equal, at the cost of a string, whatever strings share the table', (t) => {
  // Strings of 2 to 8 ASCII bytes decoded lately are shared from a table of fixed size: 20,000 strings overflow it many
  // times over. Around them, strings the table does not take: empty, one character, 9 bytes and more, not ASCII (a
  // character of two, three or four bytes), NUL bytes, and strings that differ from a kept one only in length.
  const strings = [
    '',
    'a',
    'ab',
    'ab\0',
    '\0\0',
    'abcdefgh',
    'abcdefghi',
    'abcdefg',
    'cast',
    'reply',
    'é',
    'aé',
    'naïve',
    '€uro',
    '😀😀',
    ...inventedWords(2, 10),
  ];
  let wrong = 0;
  for (let round = 0; round < 2; round++) {
    for (const s of strings) {
      const wire = encode([s, [s, atom('k')]], 4);
      const expected =
        2 * COST.array + 4 * COST.slot + 2 * stringCost(Buffer.byteLength(s), s.length) + COST.atom + COST.string + 1;
      for (let again = 0; again < 2; again++) {
        const back = decode(wire, 4) as [string, [string, Atom]];
        if (back[0] !== s || back[1][0] !== s || lastDecodedSize() !== expected) wrong++;
      }
    }
  }
  t.is(wrong, 0);
});

test('short atoms decoded again come back the same, at the same cost, whatever names share the table', (t) => {
  // Atoms of 1 to 8 ASCII bytes are remembered by their bytes in a table of fixed size: 20,000 names overflow it many
  // times over; the words true, false and null stay the words; NUL bytes and names that differ only in length count.
  const names = ['true', 'false', 'null', 'a', 'a\0', '\0', 'abcdefgh', 'abcdefg', 'store', ...inventedWords(1, 8)];
  let wrong = 0;
  for (let round = 0; round < 2; round++) {
    for (const name of names) {
      const wire = encode([atom(name), tuple(atom(name), name)], 4);
      const back = decode(wire, 4) as Term[];
      const size = lastDecodedSize();
      const again = decode(wire, 4) as Term[];
      const word = name === 'true' ? true : name === 'false' ? false : name === 'null' ? null : undefined;
      const ok = (x: Term | undefined): boolean =>
        word !== undefined ? x === word : x instanceof Atom && x.name === name;
      const inner = (back[1] as Tuple).at(0);
      if (!ok(back[0]) || !ok(again[0]) || !ok(inner) || lastDecodedSize() !== size) wrong++;
      // An Atom given to two decodes is frozen: no handler can change it under another.
      if (word === undefined && back[0] === again[0] && !Object.isFrozen(back[0])) wrong++;
    }
  }
  t.is(wrong, 0);
});
