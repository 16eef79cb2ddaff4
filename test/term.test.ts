import { randomBytes } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import {
  Atom,
  Float,
  Tuple,
  atom,
  float,
  formatJsonTerm,
  formatTerm,
  isFloat,
  parseJsonTerm,
  isAtom,
  isTuple,
  parseTerm,
  parseTerms,
  parseTermsRecovering,
  termEquals,
  termKey,
  tuple,
  TermSyntaxError,
  type Term,
} from '../src/term/index.js';
import { parseTermsLocated } from '../src/term/parse.js';
import { TermMap, TermSet, mapHash } from '../src/term/hash.js';

test('reads the book config file into tuples of atoms and strings', (t) => {
  const terms = parseTerms(`%% conf
{port, 1234}.
{service, nameServer, password, "ABXy45", mfa, mod_name_server, start_me_up, notUsed}.
`);
  t.is(terms.length, 2);
  const [port, service] = terms as [Tuple, Tuple];
  t.true(isTuple(port, 'port', 2));
  t.is(port.at(1), 1234);
  t.true(isTuple(service, 'service', 8));
  t.true(isAtom(service.at(1), 'nameServer'));
  t.is(service.at(3), 'ABXy45');
  t.is(formatTerm(service), '{service,nameServer,password,"ABXy45",mfa,mod_name_server,start_me_up,notUsed}');
});

test('keeps atoms apart from strings and tuples apart from lists', (t) => {
  const x = parseTerm('{joe, "joe", [a, b], {a, b}}') as Tuple;
  t.true(x.at(0) instanceof Atom);
  t.is(x.at(1), 'joe');
  t.true(Array.isArray(x.at(2)));
  t.true(x.at(3) instanceof Tuple);
  t.false(termEquals(atom('joe'), 'joe'));
  t.false(termEquals([atom('a')], tuple(atom('a'))));
});

test('prints replies the way the Erlang shell does', (t) => {
  t.is(formatTerm(tuple(atom('ok'), 'writing a book')), '{ok,"writing a book"}');
  t.is(formatTerm(atom('undefined')), 'undefined');
  t.is(formatTerm(tuple(atom('location'), atom('joe'))), '{location,joe}');
  t.is(formatTerm(atom('Joe')), "'Joe'");
  t.is(formatTerm(atom('end')), "'end'");
  t.is(formatTerm('a "quoted"\nline'), '"a \\"quoted\\"\\nline"');
  t.is(formatTerm(Buffer.from('abc')), '<<"abc">>');
  t.is(formatTerm(Uint8Array.from([0, 255])), '<<0,255>>');
  t.is(formatTerm(1.5), '1.5');
  t.is(formatTerm(1e-7), '1.0e-7');
  t.is(formatTerm(2n ** 70n), '1180591620717411303424');
  t.is(formatTerm(true), 'true');
  t.is(formatTerm({ b: 1, a: 2 }), '#{"a" => 2,"b" => 1}');
});

test('reads every kind of literal', (t) => {
  t.is(parseTerm('16#ff'), 255);
  t.is(parseTerm('2#1010'), 10);
  t.is(parseTerm('1_000_000'), 1_000_000);
  t.is(parseTerm('-42'), -42);
  t.is(parseTerm('$a'), 97);
  t.is(parseTerm('$\\n'), 10);
  t.true(termEquals(parseTerm('2.5e3'), float(2500)));
  t.is(parseTerm('99999999999999999999'), 99999999999999999999n);
  t.is(parseTerm('"ab" "cd"'), 'abcd');
  t.is(parseTerm('"\\x{1F600}\\t\\101"'), '\u{1F600}\tA');
  t.deepEqual(parseTerm('[a | [b, c]]'), [atom('a'), atom('b'), atom('c')]);
  t.deepEqual(parseTerm('<<"hi", 0>>'), Uint8Array.from([104, 105, 0]));
  t.is(parseTerm('true'), true);
  t.true(parseTerm("'hello world'.") instanceof Atom);
  t.is(formatTerm(parseTerm('#{k => [1]}')), '#{k => [1]}');
});

const malformed: [string, string, number, number, boolean][] = [
  ['{a, b', "expected ',' or '}' in a tuple, found end of input", 1, 6, true],
  ['{a b}', "expected ',' or '}' in a tuple, found 'b'", 1, 4, false],
  ['"abc', 'unterminated string', 1, 1, true],
  ["'abc", 'unterminated quoted atom', 1, 1, true],
  [
    'Joe',
    'a variable is not a term (an atom starts with a lower-case letter or is quoted; a string is in double quotes)',
    1,
    1,
    false,
  ],
  ['[a | b]', 'improper lists are not supported: the tail after | must be a list', 1, 6, false],
  ['<<256>>', "a binary segment must be a string or an integer 0..255, found '256'", 1, 3, false],
  ['{a}\n  }', "unexpected '}' after the term", 2, 3, false],
  ['1.0e999', 'float out of range', 1, 1, false],
  ['37#1', 'base 37 is not between 2 and 36', 1, 1, false],
  ['"\\x{zz}"', 'bad \\x{...} escape: expected 1 to 6 hex digits', 1, 2, false],
  ['{a, ;}', "unexpected character ';'", 1, 5, false],
  [`'${'a'.repeat(256)}'`, 'atom longer than 255 characters', 1, 1, false],
  ['', 'expected a term', 1, 1, true],
];

for (const [text, reason, line, column, incomplete] of malformed) {
  test(`refuses ${JSON.stringify(text.slice(0, 12))} with its position`, (t) => {
    const err = t.throws(() => parseTerm(text), { instanceOf: TermSyntaxError });
    t.is(err?.reason, reason);
    t.is(err?.line, line);
    t.is(err?.column, column);
    t.is(err?.incomplete, incomplete);
  });
}

test('a term file needs a dot after every term', (t) => {
  const err = t.throws(() => parseTerms('{port, 1234}\n{x, y}.'), { instanceOf: TermSyntaxError });
  t.is(err?.line, 2);
  t.is(err?.column, 1);
});

test('recovers after a broken term and reports every one', (t) => {
  const { terms, errors } = parseTermsRecovering('{a, 1}.\n{b 2}.\n{c, 3}.\n{d, $}.\n{e, 5}.\n');
  t.deepEqual(
    terms.map((l) => formatTerm(l.term)),
    ['{a,1}', '{c,3}', '{e,5}'],
  );
  t.deepEqual(
    errors.map((e) => e.line),
    [2, 4],
  );
});

test('records where every element was written', (t) => {
  const [l] = parseTermsLocated('\n  {port,\n     99999}.');
  t.is(l?.line, 2);
  t.is(l?.column, 3);
  t.is(l?.items?.[1]?.line, 3);
  t.is(l?.items?.[1]?.column, 6);
});

test('termKey is equal for equal terms and differs for atom, string and binary', (t) => {
  t.is(termKey(tuple(atom('location'), atom('joe'))), termKey(parseTerm('{location, joe}')));
  const keys = new Set([termKey(atom('joe')), termKey('joe'), termKey(Buffer.from('joe')), termKey(['joe'])]);
  t.is(keys.size, 4);
  t.is(termKey({ a: 1, b: 2 }), termKey({ b: 2, a: 1 }));
});

// Terms the parser can produce, so print -> parse is an exact round trip.
const name = fc.stringMatching(/^[a-z][a-zA-Z0-9_@]{0,8}$/);
const leaf: fc.Arbitrary<Term> = fc.oneof(
  name.map(atom),
  fc.string({ unit: 'binary', maxLength: 12 }).map((s) => atom(s)),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.integer(),
  fc
    .bigInt({ min: -(2n ** 80n), max: 2n ** 80n })
    .filter((n) => n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)),
  // Floats with whole values too (1.0, -0.0, 2^60, 1e300): each must read back as the float it is.
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(float),
  fc.integer().map(float),
  fc.boolean(),
  fc.uint8Array({ maxLength: 8 }),
);
const { term: anyTerm } = fc.letrec<{ term: Term }>((tie) => ({
  term: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('term'), { maxLength: 4 }),
    fc.array(tie('term'), { maxLength: 4 }).map((xs) => new Tuple(xs)),
  ),
}));

test('printing then reading gives back an equal term (property)', (t) => {
  fc.assert(
    fc.property(anyTerm, (x) => {
      const text = formatTerm(x);
      const back = parseTerm(text);
      if (formatTerm(back) !== text || !termEquals(back, x))
        throw new Error(`${text} read back as ${formatTerm(back)}`);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('reading arbitrary text either succeeds or throws TermSyntaxError (property)', (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (text) => {
      try {
        parseTerms(text);
      } catch (err) {
        if (!(err instanceof TermSyntaxError)) throw err;
      }
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

// ---------------------------------------------------------------------------------------------------------------------
// Floats and integers: Erlang keeps 1 and 1.0 apart (=:=, map keys), and so must every layer here.

test('1.0 reads as a float and prints as 1.0; it is not the integer 1', (t) => {
  const one = parseTerm('1.0');
  t.true(one instanceof Float);
  t.true(isFloat(one));
  t.is(formatTerm(one), '1.0');
  t.is(parseTerm('1'), 1);
  t.false(isFloat(1));
  t.false(termEquals(one, 1));
  t.not(termKey(one), termKey(1));
  t.true(termEquals(one, float(1)));
  t.is(formatTerm(parseTerm('{ok, 2.0, 2}')), '{ok,2.0,2}');
  t.is(formatTerm(parseTerm('[-3.0, 0.0, -0.0]')), '[-3.0,0.0,-0.0]');
});

test('float() boxes only a whole value; a Float of any value is that float everywhere', (t) => {
  t.is(float(2.5), 2.5);
  t.true(Object.is(float(-0), -0));
  t.is(float(1e300), 1e300);
  t.true(float(3) instanceof Float);
  const boxed = new Float(2.5);
  t.true(termEquals(boxed, 2.5));
  t.is(termKey(boxed), termKey(2.5));
  t.is(formatTerm(boxed), '2.5');
  t.is(formatTerm(new Float(-0)), '-0.0');
  t.is(`${float(3)}`, '3.0');
  t.is(Number(float(3)) * 2, 6);
});

test('whole floats past 2^53 print as floats that read back as the same float, never as integer digits', (t) => {
  t.is(formatTerm(1e300), '1.0e300');
  t.is(formatTerm(2 ** 60), '1152921504606847000.0');
  t.is(formatTerm(-(2 ** 60)), '-1152921504606847000.0');
  for (const x of [1e300, 2 ** 60, 2 ** 53, 1e21, 1.5e-300]) {
    const back = parseTerm(formatTerm(x));
    t.true(isFloat(back), formatTerm(x));
    t.true(termEquals(back, x), formatTerm(x));
  }
});

test('TermMap finds, replaces and deletes every key among 300,000, those whose 30-bit hashes meet included', (t) => {
  // Keys with random strings in them: about forty pairs share a 30-bit hash (n^2 / 2^31), so shared slots are used.
  const n = 300_000;
  const keys = Array.from({ length: n }, (_, i) => tuple(atom('k'), `${i}:${randomBytes(6).toString('hex')}`));
  const same = (i: number): Term => tuple(atom('k'), (keys[i] as Tuple).at(1) as string);
  const m = new TermMap<number>();
  let wrong = 0;
  for (let i = 0; i < n; i++) if (m.set(keys[i] as Term, i) !== undefined) wrong++;
  t.is(m.size, n);
  for (let i = 0; i < n; i++) if (m.get(same(i))?.value !== i) wrong++;
  for (let i = 0; i < n; i += 2) if (m.set(same(i), -i)?.replaced !== i) wrong++;
  for (let i = 1; i < n; i += 2) if (!m.delete(same(i))) wrong++;
  t.false(m.delete(same(1)));
  t.is(m.size, n / 2);
  for (let i = 0; i < n; i++) {
    const e = m.get(same(i));
    if (i % 2 === 0 ? e?.value !== -i : e !== undefined) wrong++;
  }
  t.is(wrong, 0);
});

/**
 * Two different keys `{k, "sN"}` that a TermMap files under one hash (among 2^20 such keys, hundreds of pairs meet).
 */
function meetingKeys(): [Term, Term] {
  const seen = new Map<number, number>();
  for (let n = 0; n < 1 << 20; n++) {
    const h = mapHash(tuple(atom('k'), `s${n}`));
    const other = seen.get(h);
    if (other !== undefined) return [tuple(atom('k'), `s${other}`), tuple(atom('k'), `s${n}`)];
    seen.set(h, n);
  }
  throw new Error('no two keys met among 2^20');
}

test('TermMap agrees with a map by termKey through any mix of sets and deletes, growing and emptying again (model)', (t) => {
  // Keys from a small pool, flat and not, made afresh at every step (found by value, not by identity); runs that grow
  // past 16 keys, delete nearly all of them in any order, and go on.
  const pool: Term[] = [
    ...Array.from({ length: 40 }, (_, i) => tuple(atom('k'), i)),
    ...Array.from({ length: 10 }, (_, i) => `s${i}`),
    ...Array.from({ length: 10 }, (_, i) => tuple(atom('deep'), [i, tuple(atom('x'), i)])),
    // Two keys whose 30-bit hashes meet (the hash is seeded per process: found by search), so that one slot holds both.
    ...meetingKeys(),
  ];
  const index = fc.integer({ min: 0, max: pool.length - 1 });
  // A run that mostly grows; then most keys deleted, in any order; then a mix again.
  const mostly = (what: string, other: string) =>
    fc.array(fc.tuple(fc.constantFrom(what, what, what, other), index), { minLength: 40, maxLength: 150 });
  const emptying = fc
    .shuffledSubarray(
      pool.map((_, i) => i),
      { minLength: pool.length - 3 },
    )
    .map((keys) => keys.map((k) => ['delete', k] as const));
  let grewAndShrank = 0;
  // Steps at which both keys that meet were in the map: their slot shared.
  let shared = 0;
  const [meetA, meetB] = [termKey(pool.at(-2) as Term), termKey(pool.at(-1) as Term)];
  fc.assert(
    fc.property(mostly('set', 'delete'), emptying, mostly('set', 'delete'), (up, down, again) => {
      const ops = [...up, ...down, ...again];
      let emptied = false;
      const m = new TermMap<number>();
      const model = new Map<string, number>();
      let most = 0;
      ops.forEach(([what, k], step) => {
        // An equal key made afresh: found by value, not by identity.
        const key = parseTerm(formatTerm(pool[k] as Term));
        if (what === 'set') {
          const before = model.get(termKey(key));
          const r = m.set(key, step);
          if (r?.replaced !== before) throw new Error(`set ${formatTerm(key)} replaced ${r?.replaced}, not ${before}`);
          model.set(termKey(key), step);
        } else {
          if (m.delete(key) !== model.delete(termKey(key))) throw new Error(`delete ${formatTerm(key)}`);
        }
        if (m.size !== model.size) throw new Error(`size ${m.size}, not ${model.size}`);
        for (const p of pool)
          if (m.get(p)?.value !== model.get(termKey(p))) throw new Error(`after step ${step}: get ${formatTerm(p)}`);
        most = Math.max(most, model.size);
        if (most > 16 && model.size < 4) emptied = true;
        if (model.has(meetA) && model.has(meetB)) shared++;
      });
      if (emptied) grewAndShrank++;
    }),
    { numRuns: 300 },
  );
  t.true(grewAndShrank > 250, `${grewAndShrank} of 300 runs grew past 16 keys and fell under 4 again`);
  t.true(shared > 1000, `the two keys that meet were in the map together at ${shared} steps`);
});

test('TermMap finds a key exactly when termKey says equal, flat keys (compared by their parts) and others mixed', (t) => {
  // Equal terms written differently (5 and 5n, the atom true and true), near misses (an atom and a string of the same
  // name, a tuple and a list, 1 and 1.0, -0.0 and 0), and keys that are not flat (three elements, nesting, binaries).
  const parts: Term[] = [
    atom('joe'),
    'joe',
    5,
    5n,
    2n ** 60n,
    float(5),
    -0,
    0,
    2.5,
    true,
    atom('true'),
    null,
    atom('null'),
    atom('undefined'),
    Buffer.from('joe'),
    [1],
    '',
  ];
  const shapes = (x: Term, y: Term): Term[] => [x, tuple(x), tuple(x, y), [x, y], tuple(x, y, x), tuple(tuple(x), y)];
  const keys = parts.flatMap((x) => parts.flatMap((y) => shapes(x, y)));
  const m = new TermMap<number>();
  keys.forEach((k, i) => {
    if (!m.get(k)) m.set(k, i);
  });
  const distinct = new Map<string, number>();
  for (const k of keys) distinct.set(termKey(k), (distinct.get(termKey(k)) ?? 0) + 1);
  t.is(m.size, distinct.size);
  let wrong = 0;
  for (const k of keys) {
    const found = m.get(k);
    if (!found || termKey(keys[found.value] as Term) !== termKey(k)) wrong++;
  }
  t.is(wrong, 0);
  // Deleting by an equal key written the other way empties the map.
  for (const k of keys) m.delete(k);
  t.is(m.size, 0);
});

test('a map keeps 1 and 1.0 as two keys, in Map terms and in TermMap', (t) => {
  const m = parseTerm('#{1 => a, 1.0 => b}');
  t.true(m instanceof Map);
  t.is((m as Map<Term, Term>).size, 2);
  t.is(formatTerm(m), '#{1 => a,1.0 => b}');
  const byValue = new TermMap<string>();
  byValue.set(1, 'integer');
  byValue.set(float(1), 'float');
  byValue.set(parseTerm('{k, 1}'), 'tuple of an integer');
  byValue.set(parseTerm('{k, 1.0}'), 'tuple of a float');
  t.is(byValue.size, 4);
  t.is(byValue.get(parseTerm('1.0'))?.value, 'float');
  t.is(byValue.get(1)?.value, 'integer');
  t.is(byValue.get(tuple(atom('k'), float(1)))?.value, 'tuple of a float');
  t.is(byValue.get(tuple(atom('k'), 1))?.value, 'tuple of an integer');
  // A Float that holds 2.5 is the float 2.5: one key.
  byValue.set(2.5, 'first');
  t.truthy(byValue.set(new Float(2.5), 'second'));
  t.is(byValue.get(2.5)?.value, 'second');
  const set = new TermSet();
  t.true(set.add(float(7)));
  t.true(set.add(7));
  t.false(set.add(parseTerm('7.0')));
});

test('JSON: a whole float is {"$float": N}, since JSON reads 1.0 as 1; other floats are plain numbers', (t) => {
  t.is(formatJsonTerm(parseTerm('{1.0, 2.5, 1}')), '{"$tuple":[{"$float":1},2.5,1]}');
  const back = parseJsonTerm('{"$tuple":[{"$float":1},2.5,1,1.0]}');
  t.is(formatTerm(back), '{1.0,2.5,1,1}');
  t.is(parseJsonTerm('{"$float": 2.5}'), 2.5);
  t.is(formatJsonTerm(parseTerm('[1.0e300, -0.0]')), '[{"$float":1e+300},{"$float":0}]');
  t.is(formatTerm(parseJsonTerm(formatJsonTerm(parseTerm('[1.0e300, -0.0]')))), '[1.0e300,0.0]');
  t.regex(t.throws(() => parseJsonTerm('{"$float": "1"}'))?.message ?? '', /\$float takes a number/);
});

test('termKey and termEquals agree whatever else is in the term', async (t) => {
  const { atom, tuple, termEquals } = await import('../src/term/index.js');
  for (const name of ['null', 'undefined', 'NaN', 'Infinity', '-Infinity']) {
    const js = { null: null, undefined, NaN, Infinity, '-Infinity': -Infinity }[name] as never;
    t.is(termEquals(tuple(js, 1), tuple(atom(name), 1)), termEquals(tuple(js, 0.5), tuple(atom(name), 0.5)), name);
  }
  t.true(termEquals(atom('true'), true));
  t.false(termEquals(atom('joe'), 'joe'));
});
