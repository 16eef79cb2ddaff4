/**
 * The name server's store (services/kvs-store.ts) sizing what it keeps: a string under a small key is sized without
 * measure's walk, and must come to the same figures and the same refusals, at the byte.
 */
import test from 'ava';
import { decode, encode, measure } from '../src/codec/msgpack.js';
import { LimitError } from '../src/errors.js';
import { ENTRY_OVERHEAD, KvsStore, NO_LIMITS, sizeWithin } from '../src/services/kvs-store.js';
import { openStore } from '../src/store/index.js';
import { formatTerm } from '../src/term/print.js';
import { atom, tuple, type Term } from '../src/term/model.js';

const LIMITS = { maxDepth: 32, maxFrameSize: 4096, storeMaxBytes: Number.POSITIVE_INFINITY };

/** What an entry is counted as: its key and value as measure sizes them, and the overhead. */
const entryCost = (key: Term, value: Term): number =>
  measure(key, 1000).size + measure(value, 1000).size + ENTRY_OVERHEAD;

test('a string value is counted as measure counts it, refused exactly when its answer {ok, V} would not fit', async (t) => {
  const store = await openStore('memory:');
  const keys: Term[] = [atom('k'), 'k', 7, tuple(atom('c'), 7), [atom('not'), 'flat'], atom('true')];
  let stored = 0;
  let refused = 0;
  let n = 0;
  // Around the frame limit, in characters of one, two and four bytes (the last two UTF-16 units each).
  for (const unit of ['a', 'é', '\u{1F600}']) {
    for (let bytes = 3990; bytes <= 4060; bytes++) {
      const made = unit.repeat(Math.ceil(bytes / Buffer.byteLength(unit)));
      for (const key of keys) {
        // As a handler gets it (the string the decoder made last), and as a program makes it.
        const value = n % 2 === 0 ? (decode(encode(made, 2), 2) as string) : made;
        const kvs = new KvsStore(await store.namespace(`kvs${n++}`), LIMITS);
        const outcome = kvs.storeNow(key, value);
        if (sizeWithin(value, 1, LIMITS) instanceof LimitError) {
          t.true(outcome !== null && 'refused' in outcome);
          if (outcome && 'refused' in outcome)
            t.regex(formatTerm(outcome.refused), /^\{error,\{tooLarge,"not stored: /);
          t.is(kvs.bytes, 0);
          refused++;
        } else {
          t.true(outcome !== null && 'committed' in outcome);
          t.is(kvs.bytes, entryCost(key, value));
          stored++;
        }
      }
    }
  }
  t.true(stored > 0 && refused > 0, `${stored} stored, ${refused} refused`);
  await store.close();
});

test('a store holds, for its entries, their keys and values as measure sizes them and the overhead of each', async (t) => {
  const store = await openStore('memory:');
  const kvs = new KvsStore(await store.namespace('kvs'), LIMITS);
  const entries: [Term, Term][] = [
    [atom('joe'), 'writing a book'],
    [tuple(atom('c'), 12), 'é'.repeat(100)],
    ['k', 'x'.repeat(200)],
    [tuple(atom('location'), atom('joe')), tuple(atom('ok'), 1)],
    [[1, 2], 'a list key'],
    [atom('true'), '\u{1F600}'],
  ];
  let expected = 0;
  for (const [key, value] of entries) {
    t.true('committed' in (kvs.storeNow(key, value) ?? {}));
    expected += entryCost(key, value);
  }
  t.is(kvs.bytes, expected);
  // A replacement counts what it holds now.
  t.true('committed' in (kvs.storeNow(atom('joe'), 'x') ?? {}));
  t.is(kvs.bytes, expected - entryCost(atom('joe'), 'writing a book') + entryCost(atom('joe'), 'x'));
  await store.close();
});

test('without limits (programs and benchmarks that keep their own), a string of any length is stored and counted', async (t) => {
  const store = await openStore('memory:');
  const kvs = new KvsStore(await store.namespace('kvs'), NO_LIMITS);
  const value = decode(encode('é'.repeat(600_000), 2), 2) as string;
  t.true('committed' in (kvs.storeNow(tuple(atom('c'), 1), value) ?? {}));
  t.is(kvs.bytes, entryCost(tuple(atom('c'), 1), value));
  await store.close();
});
