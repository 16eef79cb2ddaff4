/**
 * The LMDB write gate (store/lmdb-gate.ts): while a sibling process opens the directory, this process's writes, from
 * its main thread and its worker threads, are held: a hold answers once the writes already given to LMDB are
 * committed, and the writes made meanwhile reach LMDB only at the release, in the order they were made. (The turns
 * themselves, across processes, are tested in test/cluster.test.ts.)
 */
import { once } from 'node:events';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import test from 'ava';
import { open } from 'lmdb';
import { openStore } from '../src/store/index.js';
import { hold, isHeld, release, threadGate } from '../src/store/lmdb-gate.js';
import { msgpackCodec } from '../src/codec/index.js';
import { storageKey, type Namespace, type PutResult } from '../src/store/store.js';
import { connect } from '../src/client.js';
import { startServer } from '../src/server.js';
import { atom, tuple, type Term } from '../src/term/model.js';
import { BOOK_SERVICE, tempDir } from './helpers.js';

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
 * given to LMDB before it, as far as one can tell from outside), `read` answers what `namespace` holds committed
 * for a key (no overlay).
 */
function raw(
  dir: string,
  namespace = 's',
): {
  marker: () => Promise<unknown>;
  read: (key: Term) => Term | undefined;
  close: () => void;
} {
  const root = open({ path: dir, compression: false, maxDbs: 1024 });
  const db = root.openDB<Buffer, Buffer>({ name: namespace, encoding: 'binary', keyEncoding: 'binary' });
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

// A test that fails while it holds must not hold the ones after it.
test.afterEach.always(() => release());

/** A worker thread of this process that runs `body` (CommonJS, with `gate`, the gate's module, and `workerData`). */
function thread(body: string, data: Record<string, unknown>): { worker: Worker; forgotten: Promise<void> } {
  const gate = threadGate();
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    (async () => {
      const gate = await import(workerData.gateModule);
      gate.adoptGate(workerData.buffers);
      ${body}
    })();
    `,
    {
      eval: true,
      workerData: {
        ...data,
        buffers: gate.buffers,
        gateModule: new URL('../src/store/lmdb-gate.js', import.meta.url).href,
        index: new URL('../src/store/index.js', import.meta.url).href,
      },
    },
  );
  const forgotten = once(worker, 'exit').then(() => gate.forget());
  return { worker, forgotten };
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
  const { worker } = thread(
    `
      const { openStore } = await import(workerData.index);
      const ns = await (await openStore('lmdb:' + workerData.dir)).namespace('s');
      parentPort.on('message', (value) => {
        const put = ns.putNow('w', value, 10, Infinity);
        parentPort.postMessage('given');
        put.committed.then(() => parentPort.postMessage('committed'));
      });
      parentPort.postMessage('ready');
    `,
    { dir },
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

test.serial('a worker thread that ends with writes counted (terminated, blocked) no longer holds a hold', async (t) => {
  const { worker, forgotten } = thread(
    `
      gate.enter(); // a write given to LMDB, whose settling the thread will never see
      parentPort.postMessage('entered');
      for (;;);
    `,
    {},
  );
  t.teardown(() => worker.terminate()); // a thread left spinning would keep the test file alive
  t.is((await once(worker, 'message'))[0], 'entered');
  const holding = hold();
  t.false(await settledBefore(holding, new Promise((resolve) => setImmediate(resolve))));
  await worker.terminate(); // as the watchdog ends a blocked thread
  await forgotten;
  await holding;
  t.true(isHeld());
});

test.serial(
  "a service's worker thread ended by its watchdog with a write counted no longer holds a hold",
  async (t) => {
    const server = await startServer({
      port: 0,
      host: '127.0.0.1',
      codePath: [path.resolve('test/fixtures')],
      services: [
        { name: 'spin', secret: null, module: 'mod_store_spin', function: 'start_me_up', isolation: 'worker' },
      ],
      store: `lmdb:${tempDir()}`,
      handlerBlockTimeout: 200,
    });
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.port, 'spin', null);
    ch.cast(atom('now')); // a write given to LMDB, then a loop: the thread never sees the write settle
    t.is((await ch.closed).reason, 'handlerTimeout');
    await hold(); // the ended thread's count is forgotten with it (else this waits for ever)
    t.true(isHeld());
  },
);

test.serial(
  "with {isolation, worker} a server's store rpc, answered by a worker thread, waits for the release",
  async (t) => {
    const dir = tempDir();
    const server = await startServer({
      port: 0,
      host: '127.0.0.1',
      services: [{ ...BOOK_SERVICE, isolation: 'worker' }],
      store: `lmdb:${dir}`,
    });
    t.teardown(() => server.close());
    const ch = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
    t.teardown(() => ch.close());
    t.is(await ch.rpc(tuple(atom('store'), atom('joe'), 'writing a book')), true);
    const lmdb = raw(dir, 'nameServer');
    t.teardown(lmdb.close);
    await hold();
    const stored = ch.rpc(tuple(atom('store'), atom('mike'), 'on holiday'));
    t.false(await settledBefore(stored, lmdb.marker()), 'the answer waits for the commit, which waits for the release');
    t.is(lmdb.read(atom('mike')), undefined);
    // A connection's messages are handled in order; another's lookup is answered meanwhile.
    const other = await connect('127.0.0.1', server.port, 'nameServer', 'ABXy45');
    t.teardown(() => other.close());
    t.deepEqual(
      await other.rpc(tuple(atom('lookup'), atom('joe'))),
      tuple(atom('ok'), 'writing a book'),
      'reads go on',
    );
    release();
    t.is(await stored, true);
    t.is(lmdb.read(atom('mike')), 'on holiday');
  },
);
