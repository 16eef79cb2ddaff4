import test from 'ava';
import fc from 'fast-check';
import {
  Atom,
  Tuple,
  atom,
  formatTerm,
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
  t.is(parseTerm('2.5e3'), 2500);
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
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
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
      if (formatTerm(back) !== text) throw new Error(`${text} read back as ${formatTerm(back)}`);
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
