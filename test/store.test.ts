/**
 * The store backends against one contract (store/store.ts): memory:, lmdb: on a temporary directory, and redis:// on a
 * redis-server this file starts itself.
 */
import test from 'ava';
import { ChanError } from '../src/errors.js';
import { openStore, parseStoreUrl, type Store } from '../src/store/index.js';
import { storageKey, type PutResult } from '../src/store/store.js';
import { atom, float, tuple, type Term } from '../src/term/model.js';
import { Redis } from 'ioredis';
import { tempDir } from './helpers.js';
import { hasRedis, startRedis, type RedisProcess } from '../scripts/redis-server.js';

let redis: RedisProcess | null = null;
test.before(async () => {
  if (hasRedis) redis = await startRedis();
  else console.log('store tests on Redis skipped: redis-server is not installed');
});
test.after.always(async () => {
  await redis?.stop();
});

/** Each backend, opened fresh for one test. */
const BACKENDS: [string, () => string][] = [
  ['memory:', () => 'memory:'],
  ['lmdb:', () => `lmdb:${tempDir()}`],
  ...(hasRedis ? ([['redis://', () => (redis as RedisProcess).url]] as [string, () => string][]) : []),
];

const TERMS: [string, Term, Term][] = [
  ['an atom', atom('joe'), 'writing a book'],
  ['a tuple key', tuple(atom('location'), atom('joe')), tuple(atom('ok'), 1)],
  ['a whole float, kept a float', tuple(atom('k'), float(1)), float(2)],
  ['an integer key apart from the float one', tuple(atom('k'), 1), 'one'],
  [
    'a map',
    new Map<Term, Term>([
      [1, 'a'],
      [float(1), 'b'],
    ]),
    [1, [2, [3]]],
  ],
  ['a binary', Buffer.from('joe'), Buffer.from([0, 1, 2, 255])],
  ['a big integer', 2n ** 60n, -(2n ** 62n)],
];

for (const [name, url] of BACKENDS) {
  const withStore = async (f: (s: Store, namespace: string) => Promise<void>): Promise<void> => {
    const s = await openStore(url());
    try {
      await f(s, `svc${Math.random().toString(36).slice(2)}`);
    } finally {
      await s.close();
    }
  };

  test(`${name} every kind of term comes back as it went in, and equal keys find it however they are written`, async (t) => {
    await withStore(async (s, svc) => {
      const ns = await s.namespace(svc);
      for (const [, key, value] of TERMS) {
        const put = await ns.put(key, value, 100, Number.POSITIVE_INFINITY);
        t.true(put.stored);
        if (put.stored) await put.committed;
      }
      for (const [what, key, value] of TERMS) t.deepEqual(await ns.get(key), value, what);
      // The same map with its pairs in the other order is the same key.
      t.deepEqual(
        await ns.get(
          new Map<Term, Term>([
            [float(1), 'b'],
            [1, 'a'],
          ]),
        ),
        [1, [2, [3]]],
      );
      t.is(await ns.get(tuple(atom('k'), 2)), undefined);
    });
  });

  test(`${name} a put is seen by the next get at once, before it is committed; a later put wins`, async (t) => {
    await withStore(async (s, svc) => {
      const ns = await s.namespace(svc);
      const first = ns.put(atom('k'), 1, 10, 1000);
      const second = ns.put(atom('k'), 2, 10, 1000);
      t.is(await ns.get(atom('k')), 2);
      for (const p of [await first, await second]) if (p.stored) await p.committed;
      t.is(await ns.get(atom('k')), 2);
    });
  });

  test(`${name} a thousand puts in one turn, half of them again in the next: each key reads its latest value before and after the commits`, async (t) => {
    await withStore(async (s, svc) => {
      const ns = await s.namespace(svc);
      const key = (i: number): Term => tuple(atom('k'), i);
      const put = (i: number, value: string): Promise<PutResult> => ns.put(key(i), value, 10, Number.POSITIVE_INFINITY);
      const first = Array.from({ length: 1000 }, (_, i) => put(i, `first ${i}`));
      await new Promise(setImmediate); // the next turn: another batch, the first one perhaps not committed yet
      const second = Array.from({ length: 500 }, (_, i) => put(2 * i, `second ${2 * i}`));
      const latest = (i: number): string => (i % 2 === 0 ? `second ${i}` : `first ${i}`);
      const readAll = async (): Promise<string[]> =>
        Promise.all(Array.from({ length: 1000 }, (_, i) => ns.get(key(i)) as Promise<string>));
      t.deepEqual(
        await readAll(),
        Array.from({ length: 1000 }, (_, i) => latest(i)),
        'before any commit',
      );
      for (const p of await Promise.all(first)) if (p.stored) await p.committed;
      // The first batch committed: its keys written again since must still read the second batch's values.
      t.deepEqual(
        await readAll(),
        Array.from({ length: 1000 }, (_, i) => latest(i)),
        'once the first batch is committed',
      );
      for (const p of await Promise.all(second)) if (p.stored) await p.committed;
      t.deepEqual(
        await readAll(),
        Array.from({ length: 1000 }, (_, i) => latest(i)),
        'once both are',
      );
      t.is(ns.bytes, 10_000, 'each key counted once');
    });
  });

  test(`${name} past maxBytes a put is refused and changes nothing; replacing an entry counts it once`, async (t) => {
    await withStore(async (s, svc) => {
      const ns = await s.namespace(svc);
      t.true((await ns.put(atom('a'), 'x', 600, 1000)).stored);
      t.true((await ns.put(atom('a'), 'y', 700, 1000)).stored, 'a replacement: 700 in all, not 1300');
      t.is(ns.bytes, 700);
      const refused = await ns.put(atom('b'), 'z', 400, 1000);
      t.deepEqual(refused, { stored: false, wouldHold: 1100 });
      t.is(ns.bytes, 700);
      t.is(await ns.get(atom('b')), undefined);
      t.is(await ns.get(atom('a')), 'y');
      t.true(await ns.delete(atom('a')));
      t.false(await ns.delete(atom('a')));
      t.is(ns.bytes, 0);
      t.true((await ns.put(atom('b'), 'z', 400, 1000)).stored, 'room again once deleted');
      t.is(ns.bytes, 400);
    });
  });

  test(`${name} namespaces are apart: one service never sees another's keys`, async (t) => {
    await withStore(async (s, svc) => {
      const a = await s.namespace(`${svc}a`);
      const b = await s.namespace(`${svc}b`);
      const put = await a.put(atom('k'), 'mine', 10, 1000);
      if (put.stored) await put.committed;
      t.is(await b.get(atom('k')), undefined);
      t.is(await a.get(atom('k')), 'mine');
    });
  });
}

test('lmdb: what was committed is there after the store is closed and opened again, and counts against the limit', async (t) => {
  const dir = tempDir();
  const first = await openStore(`lmdb:${dir}`);
  const ns = await first.namespace('names');
  const put = await ns.put(atom('joe'), 'writing a book', 600, 1000);
  if (put.stored) await put.committed;
  await first.close();
  const again = await openStore(`lmdb:${dir}`);
  t.teardown(() => again.close());
  const ns2 = await again.namespace('names');
  t.is(await ns2.get(atom('joe')), 'writing a book');
  t.is(ns2.bytes, 600);
  t.false((await ns2.put(atom('jim'), 'x', 500, 1000)).stored, 'what was kept still counts');
});

test('lmdb: a thousand keys stored in one turn are all there after the store is closed and opened again', async (t) => {
  const dir = tempDir();
  const first = await openStore(`lmdb:${dir}`);
  const ns = await first.namespace('names');
  const puts = Array.from({ length: 1000 }, (_, i) =>
    ns.put(tuple(atom('k'), i), `v${i}`, 10, Number.POSITIVE_INFINITY),
  );
  for (const p of await Promise.all(puts)) if (p.stored) await p.committed;
  await first.close();
  const again = await openStore(`lmdb:${dir}`);
  t.teardown(() => again.close());
  const ns2 = await again.namespace('names');
  const read = await Promise.all(Array.from({ length: 1000 }, (_, i) => ns2.get(tuple(atom('k'), i))));
  t.deepEqual(
    read,
    Array.from({ length: 1000 }, (_, i) => `v${i}`),
  );
  t.is(ns2.bytes, 10_000);
});

test('the key a backend files a term under is the same digest as in every build before (names already kept on disk or in Redis stay found)', (t) => {
  t.is(storageKey(atom('joe')).toString('hex'), '19565caa16f06f4b9ef68cb7793ad70f4a26a8b4b1a6266ded99c532e9b88d05');
  t.is(
    storageKey(tuple(atom('location'), 'joe', 1.5)).toString('hex'),
    '3163394f4a7e7e6c49b463834d0d6f879224a8a44a3eac02970137fb5c41ba39',
  );
  t.is(
    storageKey(tuple(atom('caf\u00e9'), '\u65e5\u672c \u{1F642}')).toString('hex'),
    '7caf11b74d0c4314cb144d30615523afc30b2f072cc49f99321ebe1dbf848201',
    'keys whose text is not ASCII: the digest of its UTF-8',
  );
});

test('a store that cannot be opened is a badConfig with one line naming it', async (t) => {
  const lmdb = await t.throwsAsync(openStore('lmdb:/dev/null/store'), { instanceOf: ChanError });
  t.is(lmdb?.code, 'badConfig');
  t.regex(lmdb?.message ?? '', /^store lmdb:\/dev\/null\/store cannot be opened: /);
  const redisDown = await t.throwsAsync(openStore('redis://127.0.0.1:1/0'), { instanceOf: ChanError });
  t.is(redisDown?.code, 'badConfig');
  t.regex(redisDown?.message ?? '', /^store redis:\/\/127\.0\.0\.1:1\/0 cannot be reached: /);
  t.regex(String(parseStoreUrl('sqlite:x')), /is not a store: use memory:, lmdb:<dir> or redis:\/\/host:port\/db/);
  t.is(typeof parseStoreUrl('lmdb:'), 'string');
});

test('redis: a password in the URL never reaches the description the logs print', async (t) => {
  if (!redis) {
    t.log('skipped: redis-server is not installed');
    t.pass();
    return;
  }
  const err = await t.throwsAsync(openStore(`redis://someone:hunter2@127.0.0.1:${redis.port}/0`));
  t.false(String(err?.message).includes('hunter2'));
});

test('redis: with the total reset by hand (an eviction, an operator), a put that stores says so and a delete finds its entry', async (t) => {
  if (!redis) {
    t.log('skipped: redis-server is not installed');
    t.pass();
    return;
  }
  const s = await openStore(redis.url);
  const direct = new Redis(redis.url);
  t.teardown(async () => {
    direct.disconnect();
    await s.close();
  });
  const svc = `svc${Math.random().toString(36).slice(2)}`;
  const ns = await s.namespace(svc);
  t.true((await ns.put(atom('a'), 'x', 600, 1000)).stored);
  await direct.set(`libchan:${svc}:bytes`, '0');
  // The total is now 600 short: replacing a's 600 with 10 takes it below zero, and the value is stored all the same.
  t.true((await ns.put(atom('a'), 'y', 10, 1000)).stored);
  t.is(await ns.get(atom('a')), 'y');
  t.true(await ns.delete(atom('a')));
  t.is(await ns.get(atom('a')), undefined);
});

test('lmdb: a call after the store is closed (a handler left running at shutdown) is a storeFailed, not a crash', async (t) => {
  const s = await openStore(`lmdb:${tempDir()}`);
  const ns = await s.namespace('late');
  await s.close();
  const err = await t.throwsAsync(ns.put(atom('k'), 1, 10, 1000), { instanceOf: ChanError });
  t.is(err?.code, 'storeFailed');
  t.is((await t.throwsAsync(ns.get(atom('k')), { instanceOf: ChanError }))?.code, 'storeFailed');
});
