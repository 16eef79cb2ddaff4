import test from 'ava';
import fc from 'fast-check';
import { SLAB_BYTES, decode, encode, slabRoom } from '../src/codec/msgpack.js';
import { etfCodec, msgpackCodec } from '../src/codec/index.js';
import { ChanError } from '../src/errors.js';
import {
  Atom,
  Float,
  Tuple,
  atom,
  float,
  formatTerm,
  isFloat,
  parseTerm,
  termEquals,
  tuple,
  type Term,
} from '../src/term/index.js';

const DEPTH = 33;
const roundTrip = (x: unknown): Term => decode(encode(x, DEPTH), DEPTH);
const bytes = (...xs: number[]): Buffer => Buffer.from(xs);

test('carries atoms and tuples as extension types 1 and 2', (t) => {
  const msg = tuple(atom('store'), atom('joe'), 'writing a book');
  const back = roundTrip(msg);
  t.true(back instanceof Tuple);
  t.is(formatTerm(back), '{store,joe,"writing a book"}');
  // {lookup, joe}: ext8(len 16, type 2) [ext8(6, type 1) "lookup", ext8(3, type 1) "joe"]
  t.deepEqual(
    encode(tuple(atom('lookup'), atom('joe')), DEPTH),
    bytes(0xc7, 16, 2, 0x92, 0xc7, 6, 1, ...Buffer.from('lookup'), 0xc7, 3, 1, ...Buffer.from('joe')),
  );
  // Longer tuples take the ext16 and ext32 headers: {"x" * 300} is 304 bytes of payload, {"x" * 70000} 70006.
  t.deepEqual(encode(tuple('x'.repeat(300)), DEPTH).subarray(0, 7), bytes(0xc8, 0x01, 0x30, 2, 0x91, 0xda, 0x01));
  t.deepEqual(encode(tuple('x'.repeat(70_000)), DEPTH).subarray(0, 8), bytes(0xc9, 0, 0x01, 0x11, 0x76, 2, 0x91, 0xdb));
});

test('a short atom decoded again is the same frozen Atom, for each word of a message (lookup and c meet in one slot)', (t) => {
  const bytes = encode(tuple(atom('lookup'), tuple(atom('c'), 1)), DEPTH);
  // (Whatever earlier tests left in the table, two decodes settle both words in it.)
  decode(bytes, DEPTH);
  decode(bytes, DEPTH);
  const first = decode(bytes, DEPTH) as Tuple;
  const second = decode(bytes, DEPTH) as Tuple;
  t.is(second.at(0), first.at(0));
  t.is((second.at(1) as Tuple).at(0), (first.at(1) as Tuple).at(0));
  // One connection's handler cannot rename the atom another connection decodes.
  const lookup = first.at(0) as Atom;
  t.true(Object.isFrozen(lookup));
  t.false(Reflect.set(lookup, 'name', 'store'));
  t.is((decode(bytes, DEPTH) as Tuple).at(0), lookup);
  t.is(lookup.name, 'lookup');
  // Atoms named true, false and null (sent as atoms, not as MessagePack's words) are those values, every time.
  for (const [name, value] of [
    ['true', true],
    ['false', false],
    ['null', null],
  ] as const) {
    const wire = Buffer.concat([Buffer.from([0xc7, name.length, 1]), Buffer.from(name)]);
    t.is(decode(wire, DEPTH), value);
    t.is(decode(wire, DEPTH), value);
  }
  // A long name is made anew (and equal).
  const long = encode(atom('a_name_longer_than_eight'), DEPTH);
  t.not(decode(long, DEPTH), decode(long, DEPTH));
  t.true(termEquals(decode(long, DEPTH), atom('a_name_longer_than_eight')));
});

test('a value inside a larger buffer decodes from its range alone, with offsets in errors counted from its start', (t) => {
  const value = tuple(atom('store'), 'joe', [1, 2.5]);
  const bytes = encode(value, DEPTH);
  const around = Buffer.concat([Buffer.from([0xc1, 0xc1, 0xc1]), bytes, Buffer.from([0xc1, 0xc1])]);
  t.true(termEquals(decode(around, DEPTH, Number.POSITIVE_INFINITY, 3, 3 + bytes.length), value));
  // The bytes after the range are not the value's: a range one byte longer has a byte after the end.
  t.throws(() => decode(around, DEPTH, Number.POSITIVE_INFINITY, 3, 4 + bytes.length), {
    message: /1 bytes after the end of the value/,
  });
  // 0xc1 is no MessagePack type: found at offset 0 of the range that starts with it, whatever comes before it.
  t.throws(() => decode(around, DEPTH, Number.POSITIVE_INFINITY, 3 + bytes.length, around.length), {
    message: /byte 0xc1 at offset 0 is not a MessagePack type/,
  });
  // An invalid string's offset is that of its first byte, as in the same bytes decoded on their own.
  const badString = Buffer.from([0xc1, 0x92, 0x01, 0xa2, 0xc3, 0x28]);
  t.throws(() => decode(badString, DEPTH, Number.POSITIVE_INFINITY, 1, badString.length), {
    message: /the string at offset 3 is not valid UTF-8/,
  });
  t.throws(() => decode(badString.subarray(1), DEPTH), { message: /the string at offset 3 is not valid UTF-8/ });
  const longBad = Buffer.concat([Buffer.from([0xc1, 0xa0 | 20]), Buffer.alloc(19, 0x61), Buffer.from([0xff])]);
  t.throws(() => decode(longBad, DEPTH, Number.POSITIVE_INFINITY, 1, longBad.length), {
    message: /the string at offset 1 is not valid UTF-8/,
  });
  // The range's end is the end: a value cut short is refused, though the bytes after the range would complete it.
  t.throws(() => decode(around, DEPTH, Number.POSITIVE_INFINITY, 3, 2 + bytes.length), {
    message: /runs past the end/,
  });
  // A binary decoded from a range is a copy: it does not keep the chunk around it alive.
  const bin = encode(Buffer.from([1, 2, 3]), DEPTH);
  const chunk = Buffer.concat([Buffer.alloc(5), bin]);
  const out = decode(chunk, DEPTH, Number.POSITIVE_INFINITY, 5, chunk.length) as Buffer;
  chunk.fill(0);
  t.deepEqual([...out], [1, 2, 3]);
  // The original protocol's codec takes a range too.
  const etf = etfCodec({ maxDepth: 8 });
  const term = etf.encode(tuple(atom('ok'), 7), 0);
  const inChunk = Buffer.concat([Buffer.from([0, 0]), term, Buffer.from([0])]);
  t.true(termEquals(etf.decode(inChunk, Number.POSITIVE_INFINITY, 2, 2 + term.length), tuple(atom('ok'), 7)));
});

test('round-trips every kind of value', (t) => {
  const values: unknown[] = [
    null,
    true,
    false,
    0,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2 ** 32,
    2 ** 53 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2 ** 31),
    -(2 ** 31) - 1,
    -(2 ** 53) + 1,
    1.5,
    -0.25,
    -0,
    float(0),
    float(1),
    float(-3),
    float(2 ** 53 - 1),
    new Float(2.5),
    2 ** 60,
    1e300,
    2n ** 63n,
    -(2n ** 63n),
    2n ** 64n - 1n,
    '',
    'a'.repeat(31),
    'a'.repeat(32),
    'é'.repeat(200),
    'x'.repeat(70_000),
    Buffer.alloc(0),
    Buffer.alloc(300, 7),
    Buffer.alloc(70_000, 1),
    [],
    [1, [2, [3]]],
    new Array(20).fill(atom('a')),
    { a: 1, b: [true] },
    Object.fromEntries([...Array(20).keys()].map((i) => [`k${i}`, i])),
    tuple(),
    tuple(tuple(atom('x'))),
    tuple(...new Array(300).fill('long tuple')),
    atom(''),
    atom('é'.repeat(255)),
    tuple('x'.repeat(70_000), tuple(atom('in'), 'y'.repeat(300)), tuple(1)),
    [tuple('z'.repeat(300)), tuple(2)],
  ];
  for (const v of values) t.is(formatTerm(roundTrip(v)), formatTerm(v as Term), formatTerm(v as Term).slice(0, 40));
});

test('a string takes the smallest header for its bytes, whatever its characters, at every boundary of the four', (t) => {
  // Written after a header guessed from its characters: where its UTF-8 bytes need a larger header, they move.
  const header = (n: number): number[] =>
    n < 32
      ? [0xa0 | n]
      : n <= 0xff
        ? [0xd9, n]
        : n <= 0xffff
          ? [0xda, n >> 8, n & 0xff]
          : [0xdb, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  let checked = 0;
  for (const unit of ['a', 'é', '€', '😀']) {
    for (const bytesAround of [31, 32, 255, 256, 65_535, 65_536]) {
      for (const delta of [-4, -1, 0, 1, 4]) {
        const chars = Math.max(0, Math.floor((bytesAround + delta) / Buffer.byteLength(unit)));
        const s = unit.repeat(chars);
        const len = Buffer.byteLength(s);
        const out = encode(s, DEPTH);
        const h = header(len);
        t.deepEqual([...out.subarray(0, h.length)], h, `${chars} x ${unit}`);
        t.is(out.length, h.length + len, `${chars} x ${unit}`);
        t.is(decode(out, DEPTH), s);
        // Inside a tuple, a string whose bytes moved leaves the tuple's own header right too.
        t.is(formatTerm(roundTrip(tuple(s, atom('after')))), formatTerm(tuple(s, atom('after'))));
        checked++;
      }
    }
  }
  t.is(checked, 120);
});

/** Leaves the encoder's slab with too little room: the next value starts a new one. */
function fillSlab(): void {
  while (slabRoom() >= 1000) encode(Buffer.alloc(Math.min(3000, slabRoom() - 1000)), DEPTH);
}

test("a string whose bytes need a larger header than its characters suggest is whole where the writer's buffer ends", (t) => {
  // Small values are written into a slab of SLAB_BYTES, one after another. A string of three-byte characters placed
  // so that the room it asks for ends exactly at the slab's end (or just before it, or past it, where the value moves
  // to a larger buffer at the same offsets) must still come back whole, after values before it in the slab.
  const cases = [
    { chars: 11, room: 35 }, // 33 bytes: a str 8 header where 11 characters suggest a fixstr; 3 x 11 + 2 asked for
    { chars: 86, room: 261 }, // 258 bytes: str 16 where 86 characters suggest str 8; 3 x 86 + 3 asked for
  ];
  const before = 2400; // two values of 2,400 bytes (a bin 16 header and 2,397 bytes) before it in the slab
  let checked = 0;
  for (const { chars, room } of cases) {
    for (let d = -3; d <= 3; d++) {
      fillSlab();
      t.is(encode(Buffer.alloc(before - 3), DEPTH).byteOffset, 0, 'a new slab');
      const slab = encode(Buffer.alloc(before - 3), DEPTH).buffer;
      // 4 bytes of headroom, a one-byte array header, a bin 16 header: the string starts 8 bytes after the padding.
      const pad = SLAB_BYTES - 2 * before - 8 - room + d;
      const value = [Buffer.alloc(pad), '中'.repeat(chars)];
      const bytes = encode(value, DEPTH, 4);
      // A view of the slab while it fits; past its end, copied out of a larger buffer into one of its own.
      if (d <= 0) t.deepEqual([bytes.buffer === slab, bytes.byteOffset], [true, 2 * before]);
      else t.not(bytes.buffer, slab);
      const back = decode(bytes.subarray(4), DEPTH) as Term[];
      t.is(back[1], value[1], `${chars} characters after ${pad} bytes`);
      checked++;
    }
  }
  t.is(checked, 14);
});

test('a result of half a slab or more has a buffer of its own, and leaves the slab to small ones', (t) => {
  // As Node pools allocUnsafe: a small result kept long must not pin a slab that large ones share with it.
  fillSlab();
  const slab = encode(Buffer.alloc(100), DEPTH).buffer;
  while (slabRoom() >= SLAB_BYTES / 2 + 200) encode(Buffer.alloc(100), DEPTH);
  const room = slabRoom();
  t.true(room >= SLAB_BYTES / 2, 'room for it in the slab');
  const large = encode(Buffer.alloc(SLAB_BYTES / 2 - 3), DEPTH); // 4,096 bytes with its bin 16 header
  t.is(large.length, SLAB_BYTES / 2);
  t.not(large.buffer, slab); // (Buffer.allocUnsafe's: Node 26 pools up to 32 KiB, Node 20 and 22 under 4 KiB)
  t.is(slabRoom(), room, 'the slab untouched');
  const small = encode(Buffer.alloc(SLAB_BYTES / 2 - 4), DEPTH); // one byte less: shares the slab
  t.is(small.buffer, slab);
  t.is(slabRoom(), room - (SLAB_BYTES / 2 - 1)); // its 4,095 bytes
});

test('small results lie end to end in the slab (a turn of frames leaves as one write)', (t) => {
  fillSlab();
  const a = encode(['reply', 1, 'x'], DEPTH, 4);
  const b = encode(['reply', 2, 'yy'], DEPTH, 4);
  t.is(b.buffer, a.buffer);
  t.is(b.byteOffset, a.byteOffset + a.length);
  t.deepEqual(decode(a.subarray(4), DEPTH), ['reply', 1, 'x']);
  t.deepEqual(decode(b.subarray(4), DEPTH), ['reply', 2, 'yy']);
});

test('every result of encode stays as it was made: values of every size in a row, across slabs, failures and re-entry', (t) => {
  const kept: [unknown, Buffer][] = [];
  let size = 0;
  for (let i = 0; i < 3000; i++) {
    // Sizes from nothing to 24 KiB, small ones most often, so that slabs fill and values outgrow what is left of them;
    // strings of one-, two- and three-byte characters.
    size = i % 97 === 0 ? 24_000 - i : (size * 31 + 7) % (i % 5 === 0 ? 3000 : 300);
    const text = ['x', 'é', '中'][i % 3]?.repeat(size) ?? '';
    const value = tuple(atom('v'), i, text, Buffer.alloc(i % 7, i & 0xff));
    kept.push([value, encode(value, DEPTH, 4)]);
    if (i % 50 === 0) t.throws(() => encode([1, 'a'.repeat(size), () => 0], DEPTH, 4), { instanceOf: ChanError });
    if (i % 200 === 0) {
      // A getter that encodes while its object is being encoded: each gets its own bytes.
      let inner: Buffer | undefined;
      const outer = encode(
        {
          get k() {
            inner = encode(['inner', i, text.slice(0, 10)], DEPTH);
            return 'outer';
          },
        },
        DEPTH,
        4,
      );
      kept.push([{ k: 'outer' }, outer]);
      kept.push([['inner', i, text.slice(0, 10)], Buffer.concat([Buffer.alloc(4), inner as Buffer])]);
    }
  }
  for (const [value, bytes] of kept) t.true(termEquals(decode(bytes.subarray(4), DEPTH), value as Term));
});

test('a map with a key that is not a string becomes a Map', (t) => {
  const m = new Map<Term, Term>([
    [atom('k'), 1],
    ['s', 2],
  ]);
  const back = roundTrip(m);
  t.true(back instanceof Map);
  t.is(formatTerm(back), formatTerm(m));
});

test('a __proto__ key stays data and never becomes the prototype', (t) => {
  // {"__proto__": {"polluted": true}}
  const payload = bytes(0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa8, ...Buffer.from('polluted'), 0xc3);
  const obj = decode(payload, DEPTH) as Record<string, unknown>;
  t.is(Object.getPrototypeOf(obj), Object.prototype);
  t.deepEqual(Object.keys(obj), ['__proto__']);
  t.deepEqual(Object.getOwnPropertyDescriptor(obj, '__proto__')?.value, { polluted: true });
  t.is(({} as Record<string, unknown>)['polluted'], undefined);
});

test('refuses values that are not terms', (t) => {
  for (const v of [() => 1, Symbol('s'), new Date(), /re/, new Set([1]), 2n ** 64n]) {
    const err = t.throws(() => encode(v, DEPTH), { instanceOf: ChanError });
    t.is(err?.code, 'badTerm');
  }
  const cyclic: unknown[] = [];
  cyclic.push(cyclic);
  t.is(t.throws(() => encode(cyclic, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
});

const refused: [string, Buffer, RegExp][] = [
  ['a truncated string', bytes(0xa5, 0x61), /runs past the end/],
  ['an array longer than the bytes left', bytes(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01), /runs past the end/],
  ['a map longer than the bytes left', bytes(0xdf, 0x7f, 0xff, 0xff, 0xff), /runs past the end/],
  ['a binary longer than the bytes left', bytes(0xc6, 0xff, 0xff, 0xff, 0xff), /runs past the end/],
  ['the never-used type byte', bytes(0xc1), /not a MessagePack type/],
  ['a timestamp extension', bytes(0xd6, 0xff, 0, 0, 0, 1), /extension type -1/],
  ["msgpackr's structured-clone and RegExp extensions", bytes(0xd4, 0x78, 0x00), /extension type 120/],
  ['invalid UTF-8', bytes(0xa2, 0xc3, 0x28), /not valid UTF-8/],
  ['a tuple that is not an array', bytes(0xc7, 1, 2, 0x01), /does not hold an array/],
  ['a tuple with bytes after its array', bytes(0xc7, 2, 2, 0x90, 0x01), /bytes after its array/],
  ['bytes after the value', bytes(0x01, 0x02), /1 bytes after the end/],
  ['nothing at all', bytes(), /runs past the end/],
];

for (const [what, payload, message] of refused) {
  test(`refuses ${what} with protocolError`, (t) => {
    const err = t.throws(() => decode(payload, DEPTH), { instanceOf: ChanError });
    t.is(err?.code, 'protocolError');
    t.regex(err?.message ?? '', message);
  });
}

test('refuses nesting deeper than max_depth without overflowing the stack', (t) => {
  const codec = msgpackCodec({ maxDepth: 32 });
  const nested = (n: number): Buffer => Buffer.concat([Buffer.alloc(n, 0x91), bytes(0x01)]);
  t.notThrows(() => codec.decode(nested(33))); // 32 levels of message inside the envelope's one
  t.regex(t.throws(() => codec.decode(nested(34)))?.message ?? '', /deeper than max_depth/);
  t.regex(t.throws(() => codec.decode(nested(10_000)))?.message ?? '', /deeper than max_depth/);
  t.is(
    t.throws(() => codec.encode(JSON.parse('['.repeat(40) + ']'.repeat(40)), 0), { instanceOf: ChanError })?.code,
    'badTerm',
  );
});

test('decoder errors never quote the input', (t) => {
  const secret = Buffer.from('SECRET-PAYLOAD');
  const err = t.throws(() => decode(Buffer.concat([bytes(0xa5), secret]), DEPTH));
  t.false(err?.message.includes('SECRET'));
});

test('decoding random bytes returns a term or throws protocolError, nothing else (property)', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (input) => {
      try {
        decode(input, DEPTH);
      } catch (err) {
        if (!(err instanceof ChanError) || err.code !== 'protocolError') throw err;
      }
    }),
    { numRuns: 20_000 },
  );
  t.pass();
});

test('binaries are copied out of the frame they arrived in', (t) => {
  const frame = bytes(0xc4, 3, 1, 2, 3);
  const bin = decode(frame, DEPTH) as Buffer;
  frame[2] = 99;
  t.deepEqual([...bin], [1, 2, 3]);
});

test('atoms decode as Atom, not strings', (t) => {
  t.true(roundTrip(atom('undefined')) instanceof Atom);
  t.is(roundTrip('undefined'), 'undefined');
});

/** A float 64 on the wire, as any MessagePack library writes a double. */
function float64(n: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(n, 1);
  return b;
}

test('a float stays a float both ways: float 64 even when whole, read back as a Float, never as the integer', (t) => {
  t.deepEqual(encode(float(1), DEPTH), float64(1));
  t.deepEqual(encode(1, DEPTH), bytes(0x01));
  t.deepEqual(encode(new Float(2.5), DEPTH), float64(2.5));
  t.deepEqual(encode(-0, DEPTH), float64(-0));
  const one = decode(float64(1), DEPTH);
  t.true(one instanceof Float);
  t.is(formatTerm(one), '1.0');
  t.false(termEquals(one, 1));
  // float 32 is accepted, and read as a float too.
  t.is(formatTerm(decode(bytes(0xca, 0x3f, 0x80, 0, 0), DEPTH)), '1.0');
  t.is(formatTerm(decode(bytes(0xca, 0x40, 0x20, 0, 0), DEPTH)), '2.5');
  t.is(decode(float64(2.5), DEPTH), 2.5);
  t.true(Object.is(decode(float64(-0), DEPTH), -0));
  t.is(decode(float64(2 ** 60), DEPTH), 2 ** 60);
  for (const n of [0, -1, 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1]) {
    const back = decode(float64(n), DEPTH);
    t.true(back instanceof Float && back.value === n, String(n));
    t.is(formatTerm(roundTrip(back)), formatTerm(back));
  }
  t.is(formatTerm(roundTrip(parseTerm('{apply, math, sqrt, [4.0]}'))), '{apply,math,sqrt,[4.0]}');
});

test('#{1 => a, 1.0 => b} has two keys on both sides; a Float and a number of the same float are one key', (t) => {
  // #{1 => "a", 1.0 => "b"}
  const wire = Buffer.concat([bytes(0x82, 0x01, 0xa1, 0x61), float64(1), bytes(0xa1, 0x62)]);
  const m = decode(wire, DEPTH);
  t.true(m instanceof Map);
  t.is((m as Map<Term, Term>).size, 2);
  t.is(formatTerm(m), '#{1 => "a",1.0 => "b"}');
  t.deepEqual(encode(m, DEPTH), wire);
  t.is(formatTerm(roundTrip(parseTerm('#{{k, 1} => a, {k, 1.0} => b}'))), '#{{k,1.0} => b,{k,1} => a}');
  // A JavaScript Map would store the key -0.0 as 0, the integer: it is kept as a Float.
  const zeros = roundTrip(parseTerm('#{0 => a, -0.0 => b, 0.0 => c}')) as Map<Term, Term>;
  t.is(zeros.size, 3);
  t.is(formatTerm(zeros), '#{-0.0 => b,0 => a,0.0 => c}');
  const same = new Map<Term, Term>([
    [2.5, 'a'],
    [new Float(2.5), 'b'],
  ]);
  t.is(t.throws(() => encode(same, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
  const twice = Buffer.concat([bytes(0x82), float64(1), bytes(0x01), bytes(0xca, 0x3f, 0x80, 0, 0), bytes(0x02)]);
  t.regex(t.throws(() => decode(twice, DEPTH), { instanceOf: ChanError })?.message ?? '', /same key twice/);
  t.true(isFloat(roundTrip(float(7))));
});

test('the atoms true, false and null are the words c3, c2 and c0, both ways', (t) => {
  const codec = msgpackCodec({ maxDepth: 32 });
  t.is(Buffer.from(codec.encode(atom('true'), 0)).toString('hex'), 'c3');
  t.is(Buffer.from(codec.encode(atom('false'), 0)).toString('hex'), 'c2');
  t.is(Buffer.from(codec.encode(atom('null'), 0)).toString('hex'), 'c0');
  // An ext 1 named true is read as the word itself, so it is written back as the word.
  t.is(codec.decode(Buffer.from('c7050166616c7365', 'hex')), false);
  t.is(codec.decode(Buffer.from('c704016e756c6c', 'hex')), null);
  t.is(codec.decode(Buffer.from('c7040174727565', 'hex')), true);
});
