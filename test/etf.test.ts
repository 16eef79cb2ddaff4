/**
 * Erlang's External Term Format: the mapping both ways, checked against the real term_to_binary/binary_to_term of
 * Debian's Erlang/OTP (test/erlang/echo.escript), and the decoder's refusals of hostile input.
 */
import { deflateSync } from 'node:zlib';
import test from 'ava';
import { COST, decodedSizeLimit } from '../src/codec/msgpack.js';
import { TAG, decodeEtf, encodeEtf, lastEtfDecodedSize } from '../src/codec/etf.js';
import { ChanError } from '../src/errors.js';
import { Atom, Float, atom, float, formatTerm, tuple, type Term } from '../src/term/index.js';
import { erlangEcho, hasErlang } from './erlang-helpers.js';

const DEPTH = 32;
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const u32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const etf = (...xs: number[]): Buffer => Buffer.from([131, ...xs]);
const text = (s: string): number[] => [...Buffer.from(s, 'latin1')];
const refused = (
  t: import('ava').ExecutionContext,
  bytes: Uint8Array,
  word: ChanError['code'],
  pattern: RegExp,
  cost = 1 << 20,
  depth = DEPTH,
) => {
  const err = t.throws(() => decodeEtf(bytes, depth, cost), { instanceOf: ChanError });
  t.is(err?.code, word);
  t.regex(err?.message ?? '', pattern);
};

/** Each row of docs/ERLANG.md's table: a JavaScript value, how Erlang prints it, and what comes back. */
const MAPPING: { js: Term; erlang: string; back?: Term }[] = [
  { js: tuple(atom('store'), atom('joe'), 'writing a book'), erlang: '{store,joe,"writing a book"}' },
  { js: atom('undefined'), erlang: 'undefined' },
  { js: atom('Ünïcødé atom'), erlang: "'Ünïcødé atom'" },
  { js: true, erlang: 'true' },
  { js: false, erlang: 'false' },
  { js: null, erlang: 'null' },
  { js: 0, erlang: '0' },
  { js: 255, erlang: '255' },
  { js: -1, erlang: '-1' },
  { js: 2 ** 31 - 1, erlang: '2147483647' },
  { js: -(2 ** 31), erlang: '-2147483648' },
  { js: 2 ** 40, erlang: '1099511627776' },
  { js: Number.MAX_SAFE_INTEGER, erlang: '9007199254740991' },
  { js: 2n ** 64n - 1n, erlang: '18446744073709551615' },
  { js: -(2n ** 63n), erlang: '-9223372036854775808' },
  { js: 2.5, erlang: '2.5' },
  { js: float(1), erlang: '1.0' },
  { js: -0, erlang: '-0.0' },
  { js: 1e300, erlang: '1.0e300' },
  { js: 'writing a book', erlang: '"writing a book"' },
  { js: 'café', erlang: '"café"' },
  { js: 'héllo ∞ 😀', erlang: '[104,233,108,108,111,32,8734,32,128512]' },
  { js: '', erlang: '[]', back: [] },
  { js: [], erlang: '[]' },
  { js: [atom('a'), 'b', [1.5]], erlang: '[a,"b",[1.5]]' },
  // Erlang cannot tell a list of code points from a string: it comes back as one.
  { js: [104, 105], erlang: '"hi"', back: 'hi' },
  { js: [-1, 2], erlang: '[-1,2]' },
  { js: Buffer.from([0, 1, 255]), erlang: '<<0,1,255>>' },
  { js: tuple(), erlang: '{}' },
  {
    js: new Map<Term, Term>([
      [atom('k'), 1],
      [tuple(1, 2), 'v'],
    ]),
    erlang: '#{k => 1,{1,2} => "v"}',
  },
  { js: { name: 'joe' }, erlang: '#{"name" => "joe"}' },
  { js: 'x'.repeat(70_000), erlang: `[${Array(70_000).fill(120).join(',')}]` },
];

/** How Erlang's ~w prints a term, for strings: lists of integers (as it prints "abc" as [97,98,99]). */
function asW(erlang: string): string {
  return erlang.replace(/"([^"]*)"/g, (_, s: string) => `[${[...s].map((c) => c.codePointAt(0)).join(',')}]`);
}

test('every value of the mapping table is written as Erlang reads it, and what Erlang writes back reads as the table says', async (t) => {
  if (!hasErlang) {
    console.log('Erlang round trip skipped: escript (Debian erlang-nox) is not installed');
    t.pass();
    return;
  }
  const erl = await erlangEcho();
  t.teardown(erl.close);
  for (const row of MAPPING) {
    const [plain, utf8Atoms, compressed, printed] = await erl.echo(encodeEtf(row.js, DEPTH));
    const expected = formatTerm(row.back ?? row.js);
    const shown = decodeEtf(printed as Buffer, DEPTH);
    t.true(Buffer.isBuffer(shown));
    t.is((shown as Buffer).toString('utf8'), asW(row.erlang), row.erlang);
    for (const frame of [plain, utf8Atoms, compressed])
      t.is(formatTerm(decodeEtf(frame as Buffer, DEPTH, 1 << 24)), expected);
  }
  // The long string was compressed by Erlang (COMPRESSED_EXT), and read within the frame limit.
  const [, , compressed] = await erl.echo(encodeEtf('y'.repeat(10_000), DEPTH));
  t.is(compressed?.[1], TAG.COMPRESSED);
  t.is(decodeEtf(compressed as Buffer, DEPTH, decodedSizeLimit(16 * 1024)), 'y'.repeat(10_000));
});

test('atoms in every encoding: ATOM (OTP 25), SMALL_ATOM_UTF8 (OTP 26 and later), ATOM_UTF8 and SMALL_ATOM', (t) => {
  const joe = [...text('joe')];
  for (const bytes of [
    etf(TAG.ATOM, ...u16(3), ...joe),
    etf(TAG.SMALL_ATOM, 3, ...joe),
    etf(TAG.ATOM_UTF8, ...u16(3), ...joe),
    etf(TAG.SMALL_ATOM_UTF8, 3, ...joe),
  ]) {
    const a = decodeEtf(bytes, DEPTH);
    t.true(a instanceof Atom && a.name === 'joe');
  }
  t.is(decodeEtf(etf(TAG.ATOM, 0, 4, ...text('true')), DEPTH), true);
  t.is((decodeEtf(etf(TAG.ATOM, 0, 1, 0xe9), DEPTH) as Atom).name, 'é'); // Latin-1
  t.is((decodeEtf(etf(TAG.SMALL_ATOM_UTF8, 2, 0xc3, 0xa9), DEPTH) as Atom).name, 'é');
  // What lib-chan writes: SMALL_ATOM_UTF8, which OTP 25 and later read.
  t.deepEqual([...encodeEtf(atom('joe'), DEPTH)], [131, TAG.SMALL_ATOM_UTF8, 3, ...joe]);
});

test('the old text float, and integers in every form, read as Erlang means them', (t) => {
  const old = Buffer.alloc(31);
  old.write('2.50000000000000000000e+00', 'latin1');
  t.is(decodeEtf(etf(TAG.FLOAT, ...old), DEPTH), 2.5);
  old.fill(0).write('1.00000000000000000000e+00', 'latin1');
  t.true(decodeEtf(etf(TAG.FLOAT, ...old), DEPTH) instanceof Float);
  t.is(decodeEtf(etf(TAG.LARGE_BIG, ...u32(1), 1, 7), DEPTH), -7);
  t.is(decodeEtf(etf(TAG.SMALL_BIG, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1), DEPTH), 2n ** 56n);
  t.is(decodeEtf(etf(TAG.INTEGER, ...u32(0xffff_ffff)), DEPTH), -1);
});

test('hostile input is refused with protocolError or frameTooLarge, before anything of its size is allocated', (t) => {
  // A 4-billion-element tuple header, a list and a map: the length is checked against the bytes that remain.
  refused(t, etf(TAG.LARGE_TUPLE, ...u32(0xffff_ffff)), 'protocolError', /tuple runs past the end/);
  refused(t, etf(TAG.LIST, ...u32(0xffff_ffff), TAG.NIL), 'protocolError', /list runs past the end/);
  refused(t, etf(TAG.MAP, ...u32(0xffff_ffff)), 'protocolError', /map runs past the end/);
  refused(t, etf(TAG.BINARY, ...u32(0xffff_ffff)), 'protocolError', /binary runs past the end/);
  // Nesting deeper than max_depth.
  const deep = etf(
    ...Array(DEPTH + 1)
      .fill([TAG.SMALL_TUPLE, 1])
      .flat(),
    TAG.NIL,
  );
  refused(t, deep, 'protocolError', /deeper than max_depth/);
  // Lists in lists, 10,000 deep (60 KB): refused at max_depth as met, not by running out of stack.
  const lists = Buffer.concat([
    etf(),
    Buffer.from(
      Array(10_000)
        .fill([TAG.LIST, ...u32(1)])
        .flat(),
    ),
    Buffer.alloc(10_001, TAG.NIL),
  ]);
  refused(t, lists, 'protocolError', /deeper than max_depth/);
  // A string takes no level: max_depth lists around one are read, one more is refused.
  const around = (levels: number): Buffer =>
    Buffer.concat([
      etf(
        ...Array(levels)
          .fill([TAG.LIST, ...u32(1)])
          .flat(),
        TAG.STRING,
        ...u16(2),
        104,
        105,
      ),
      Buffer.alloc(levels, TAG.NIL),
    ]);
  t.is(formatTerm(decodeEtf(around(DEPTH), DEPTH)), `${'['.repeat(DEPTH)}"hi"${']'.repeat(DEPTH)}`);
  refused(t, around(DEPTH + 1), 'protocolError', /deeper than max_depth/);
  t.is(
    formatTerm(decodeEtf(etf(...Array(DEPTH).fill([TAG.SMALL_TUPLE, 1]).flat(), TAG.SMALL_INTEGER, 1), DEPTH)),
    `${'{'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}`,
  );
  // A huge atom, in both its forms.
  refused(t, etf(TAG.ATOM, ...u16(0xffff), ...Array(0xffff).fill(97)), 'protocolError', /at most 255 characters/);
  refused(t, etf(TAG.SMALL_ATOM_UTF8, 3, 0xff, 0xfe, 0xfd), 'protocolError', /not valid UTF-8/);
  // A compressed bomb: its stated size is past the frame limit (refused before inflating), or it lies about it.
  const bomb = deflateSync(Buffer.concat([Buffer.from([TAG.BINARY, ...u32(16 << 20)]), Buffer.alloc(16 << 20)]));
  t.true(bomb.length < 32 * 1024);
  refused(
    t,
    etf(TAG.COMPRESSED, ...u32((16 << 20) + 5), ...bomb),
    'frameTooLarge',
    /inflate to 16777221 bytes, more than the frame limit \(1048576/,
    decodedSizeLimit(1 << 20),
  );
  refused(
    t,
    etf(TAG.COMPRESSED, ...u32(1000), ...bomb),
    'protocolError',
    /does not inflate to its stated size/,
    decodedSizeLimit(1 << 20),
  );
  refused(t, etf(TAG.COMPRESSED, ...u32(10), 1, 2, 3), 'protocolError', /does not inflate/);
  const small = deflateSync(Buffer.from([TAG.NIL]));
  t.deepEqual(decodeEtf(etf(TAG.COMPRESSED, ...u32(1), ...small), DEPTH), []);
  refused(t, etf(TAG.COMPRESSED, ...u32(1), ...small, 0), 'protocolError', /bytes after the end of a compressed term/);
  // Terms that mean nothing off their node, and forms lib-chan has no value for.
  refused(
    t,
    etf(TAG.NEW_PID, TAG.SMALL_ATOM_UTF8, 1, 97, ...u32(1), ...u32(0), ...u32(0)),
    'protocolError',
    /a pid cannot travel/,
  );
  refused(t, etf(TAG.NEW_FUN, ...u32(0)), 'protocolError', /a fun cannot travel/);
  refused(t, etf(TAG.NEWER_REFERENCE, ...u16(1)), 'protocolError', /a reference cannot travel/);
  refused(t, etf(TAG.LIST, ...u32(1), TAG.SMALL_INTEGER, 1, TAG.SMALL_INTEGER, 2), 'protocolError', /improper list/);
  refused(t, etf(TAG.BIT_BINARY, ...u32(1), 3, 0xff), 'protocolError', /bitstring/);
  refused(t, etf(TAG.SMALL_BIG, 9, 0, ...Array(9).fill(1)), 'protocolError', /outside the 64-bit range/);
  refused(t, etf(TAG.SMALL_BIG, 8, 1, 1, 0, 0, 0, 0, 0, 0, 0x80), 'protocolError', /outside the 64-bit range/);
  t.is(decodeEtf(etf(TAG.SMALL_BIG, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0x80), DEPTH), -(2n ** 63n));
  refused(
    t,
    etf(TAG.MAP, ...u32(2), TAG.SMALL_INTEGER, 1, TAG.NIL, TAG.SMALL_INTEGER, 1, TAG.NIL),
    'protocolError',
    /same key twice/,
  );
  refused(t, etf(TAG.NEW_FLOAT, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), 'protocolError', /NaN or infinite/);
  refused(t, etf(TAG.NIL, TAG.NIL), 'protocolError', /1 bytes after the end/);
  refused(t, Buffer.from([TAG.NIL]), 'protocolError', /starts with the byte 131/);
  refused(t, etf(200), 'protocolError', /byte 200 at offset 1 is not an external term tag/);
});

test('memory is charged by decoded size: a list of a million []s (2 MB on the wire) is refused at its header', (t) => {
  const n = 1_000_000;
  const bytes = Buffer.alloc(n + 7, TAG.NIL);
  bytes.set([131, TAG.LIST, ...u32(n)]);
  refused(t, bytes, 'frameTooLarge', /more than 8388608 bytes once decoded/, decodedSizeLimit(1 << 20));
  // Within budget, the figure is what the table charges.
  decodeEtf(etf(TAG.LIST, ...u32(2), TAG.NIL, TAG.NIL, TAG.NIL), DEPTH);
  t.is(lastEtfDecodedSize(), COST.array + 2 * COST.slot + 2 * COST.array);
});

test('a string takes no level of nesting, whichever way Erlang writes it: at the deepest level it is read, a list is not', (t) => {
  // Two levels deep with depth 2: tuples around a string of code points past Latin-1 (a LIST on the wire).
  const value = tuple(tuple('∞ and ü'));
  t.is(formatTerm(decodeEtf(encodeEtf(value, 2), 2)), formatTerm(value));
  const list = etf(
    TAG.SMALL_TUPLE,
    1,
    TAG.SMALL_TUPLE,
    1,
    TAG.LIST,
    0,
    0,
    0,
    1,
    TAG.NEW_FLOAT,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    TAG.NIL,
  );
  refused(t, list, 'protocolError', /deeper than max_depth/, 1 << 20, 2);
});

test('the encoder refuses what Erlang cannot hold or the peer would refuse, and charges what the decoder will', (t) => {
  t.is(t.throws(() => encodeEtf(2n ** 64n, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
  t.is(t.throws(() => encodeEtf(-(2n ** 63n) - 1n, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
  t.is(t.throws(() => encodeEtf(Number.NaN, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
  t.is(t.throws(() => encodeEtf(() => 1, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
  t.is(t.throws(() => encodeEtf([[[]]], 2), { instanceOf: ChanError })?.code, 'badTerm');
  const twice = new Map<Term, Term>([
    [atom('a'), 1],
    [atom('a'), 2],
  ]);
  t.is(t.throws(() => encodeEtf(twice, DEPTH), { instanceOf: ChanError })?.code, 'badTerm');
  for (const row of MAPPING) {
    const bytes = encodeEtf(row.js, DEPTH);
    decodeEtf(bytes, DEPTH);
    const size = lastEtfDecodedSize();
    t.notThrows(() => encodeEtf(row.js, DEPTH, 0, size), row.erlang.slice(0, 40));
    if (size > 0)
      t.is(t.throws(() => encodeEtf(row.js, DEPTH, 0, size - 1), { instanceOf: ChanError })?.code, 'frameTooLarge');
  }
});
