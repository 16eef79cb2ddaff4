/**
 * The LMDB write gate (store/lmdb-gate.ts): while a sibling process opens the directory, this process's writes, from
 * its main thread and its worker threads, are held: a hold answers once the writes already given to LMDB are
 * committed, and the writes made meanwhile reach LMDB only at the release, in the order they were made. (The turns
 * themselves, across processes, are tested in test/cluster.test.ts.)
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import test from 'ava';
import { open } from 'lmdb';
import { openStore } from '../src/store/index.js';
import { hold, isHeld, release, shareGate } from '../src/store/lmdb-gate.js';
import { msgpackCodec } from '../src/codec/index.js';
import { storageKey, type Namespace, type PutResult } from '../src/store/store.js';
import type { Term } from '../src/term/model.js';
import { tempDir } from './helpers.js';

const NO_LIMIT = Number.POSITIVE_INFINITY;
const codec = msgpackCodec({ maxDepth: 64 });

/** Whether `p` has settled, known once `commit` (an LMDB write given later, committed in order after it) is. */
async function settledBefore(p: Promise<unknown>, commit: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await commit;
  return settled;
}

/**
 * A handle on the directory straight through lmdb-js, past the gate: `marker` commits a write (in order after those
 * given to LMDB before it, as far as one can tell from outside), `read` answers what namespace `s` holds committed
 * for a key (no overlay).
 */
function raw(dir: string): {
  marker: () => Promise<unknown>;
  read: (key: Term) => Term | undefined;
  close: () => void;
} {
  const root = open({ path: dir, compression: false, maxDbs: 1024 });
  const db = root.openDB<Buffer, Buffer>({ name: 's', encoding: 'binary', keyEncoding: 'binary' });
  let n = 0;
  return {
    // Two commits one after the other: a write given to LMDB before them has had its turn.
    marker: async () => {
      await root.put(`marker${n++}`, 1);
      await root.put(`marker${n++}`, 1);
    },
    read: (key) => {
      root.resetReadTxn();
      const bytes = db.get(storageKey(key));
      return bytes === undefined ? undefined : (codec.decode(bytes.subarray(4), Infinity) as Term[])[1];
    },
    close: () => void root.close(),
  };
}

const committedOf = (r: PutResult): Promise<void> => {
  if (!r.stored) throw new Error('not stored');
  return r.committed;
};

test.serial(
  'a hold waits for the writes given to LMDB; writes made while held go at the release, in order',
  async (t) => {
    const dir = tempDir();
    const store = await openStore(`lmdb:${dir}`);
    t.teardown(() => store.close());
    const ns = (await store.namespace('s')) as Required<Namespace>;
    const lmdb = raw(dir);
    t.teardown(lmdb.close);

    const before = ns.putNow('a', 1, 10, NO_LIMIT);
    const held = hold();
    t.true(isHeld());
    await held;
    t.true(await settledBefore(committedOf(before), Promise.resolve()), 'the write given before the hold is committed');

    const during = ns.putNow('b', 2, 10, NO_LIMIT);
    const later = ns.putNow('b', 3, 10, NO_LIMIT);
    t.is(ns.getNow('b'), 3, 'this process reads its own held write');
    t.false(await settledBefore(committedOf(later), lmdb.marker()), 'a held write is not given to LMDB');
    t.is(lmdb.read('b'), undefined);

    release();
    t.false(isHeld());
    await Promise.all([committedOf(during), committedOf(later)]);
    t.is(lmdb.read('b'), 3, 'the writes went in the order they were made');
    t.is(lmdb.read('a'), 1);
  },
);

test.serial('a database opened while held waits for the release (opening one may create it, a commit)', async (t) => {
  const dir = tempDir();
  const store = await openStore(`lmdb:${dir}`);
  t.teardown(() => store.close());
  const lmdb = raw(dir);
  t.teardown(lmdb.close);
  await hold();
  const opening = store.namespace('fresh');
  t.false(await settledBefore(opening, lmdb.marker()));
  release();
  const ns = await opening;
  t.is(await ns.get('nothing'), undefined);
});

test.serial("a worker thread's writes pass the same gate as the main thread's", async (t) => {
  const dir = tempDir();
  const store = await openStore(`lmdb:${dir}`); // the process's environment, as the server's main thread keeps it
  t.teardown(() => store.close());
  const lmdb = raw(dir);
  t.teardown(lmdb.close);
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    (async () => {
      const { adoptGate } = await import(workerData.gate);
      const { openStore } = await import(workerData.index);
      adoptGate(workerData.buffer);
      const ns = await (await openStore('lmdb:' + workerData.dir)).namespace('s');
      parentPort.on('message', (value) => {
        const put = ns.putNow('w', value, 10, Infinity);
        parentPort.postMessage('given');
        put.committed.then(() => parentPort.postMessage('committed'));
      });
      parentPort.postMessage('ready');
    })();
    `,
    {
      eval: true,
      workerData: {
        dir,
        buffer: shareGate(),
        gate: new URL('../src/store/lmdb-gate.js', import.meta.url).href,
        index: new URL('../src/store/index.js', import.meta.url).href,
      },
    },
  );
  t.teardown(() => worker.terminate());
  t.is((await once(worker, 'message'))[0], 'ready');
  await hold();
  worker.postMessage(7);
  t.is((await once(worker, 'message'))[0], 'given');
  const done = once(worker, 'message');
  t.false(await settledBefore(done, lmdb.marker()), "the worker thread's write waits for the release");
  t.is(lmdb.read('w'), undefined);
  release();
  t.is((await done)[0], 'committed');
  t.is(lmdb.read('w'), 7);
});
