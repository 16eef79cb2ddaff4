/**
 * Keeps an LMDB environment from being opened by one process while another commits to it.
 *
 * The LMDB that lmdb-js builds in sets the environment's shared "latest transaction" counter, while it opens, to the
 * one it read from the file's header a moment before, without the write lock (`mdb_env_open2`; fixed upstream as
 * ITS#9496, not in lmdb-js's build). A commit made by another process between that read and that line is forgotten:
 * the next write transaction is built on the one before it, and the commit's writes, already acknowledged, are lost;
 * worse, the pages it freed are handed out again (seen as `MDB_PROBLEM: mdb_page_touch no parent` and a crashed
 * writer when an opener is slowed down on purpose: test/cluster.test.ts).
 *
 * So the server processes of one `chan serve --processes N` take turns: a process about to open the directory asks
 * the primary (`guardOpen`), the primary asks every other process that has it open to hold its writes (`hold`: new
 * writes wait, and the answer goes once every write already given to LMDB is committed), lets the opener open, and
 * releases the others when it has. A process's writes come from its main thread and from its worker threads
 * (`{isolation, worker}`), which share the process's environment; they share this gate too, through a
 * SharedArrayBuffer given to each thread (`shareGate`, `adoptGate`).
 *
 * The gate's two words: HELD (1 while a sibling opens) and INFLIGHT (the writes of every thread of this process given
 * to LMDB and not yet settled). A writer adds itself to INFLIGHT before it reads HELD; the holder sets HELD before it
 * reads INFLIGHT: with sequentially consistent atomics one of the two sees the other, so no write slips past a hold.
 */

const HELD = 0;
const INFLIGHT = 1;

let words = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
/** Writes of this thread that wait for the gate to open, in the order they were made. */
const waiting: (() => void)[] = [];
let watching = false;

/** The gate's memory, for a worker thread of this process to share (`adoptGate`). */
export function shareGate(): SharedArrayBuffer {
  return words.buffer as SharedArrayBuffer;
}

/** In a worker thread: share the gate of the process that started it, before the thread opens its store. */
export function adoptGate(buffer: SharedArrayBuffer): void {
  words = new Int32Array(buffer);
}

/**
 * Counts a write in before it is given to LMDB: true when it may go now; false when the gate is held (it counts for
 * nothing then, and is to go through `whenOpen`).
 */
export function enter(): boolean {
  Atomics.add(words, INFLIGHT, 1);
  if (waiting.length === 0 && Atomics.load(words, HELD) === 0) return true;
  leave(1);
  return false;
}

/** `count` writes given to LMDB have settled (committed or failed). */
export function leave(count: number): void {
  if (Atomics.sub(words, INFLIGHT, count) === count) Atomics.notify(words, INFLIGHT);
}

/**
 * Runs `write` (which gives LMDB a write and answers its commit) once the gate is open, after the writes that waited
 * before it; counted in and out as `enter` and `leave` would.
 */
export function whenOpen<T>(write: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    waiting.push(() => {
      let commit: Promise<T>;
      try {
        commit = write();
      } catch (err) {
        leave(1);
        reject(err);
        return;
      }
      commit.then(resolve, reject).finally(() => leave(1));
    });
    void watch();
  });
}

/** Waits for the gate to open, then lets this thread's waiting writes go, in order. */
async function watch(): Promise<void> {
  if (watching) return;
  watching = true;
  try {
    while (waiting.length > 0) {
      while (Atomics.load(words, HELD) !== 0) await Atomics.waitAsync(words, HELD, 1).value;
      // Counted in before they go (each leaves as it settles): a hold that comes now waits for them, or they for it.
      Atomics.add(words, INFLIGHT, waiting.length);
      if (Atomics.load(words, HELD) !== 0) {
        leave(waiting.length);
        continue;
      }
      for (const write of waiting.splice(0)) write();
    }
  } finally {
    watching = false;
  }
}

/**
 * Holds the writes of every thread of this process (a sibling is about to open the directory): resolves once no
 * write given to LMDB is still to settle. New writes wait until `release`.
 */
export async function hold(): Promise<void> {
  Atomics.store(words, HELD, 1);
  for (;;) {
    const inflight = Atomics.load(words, INFLIGHT);
    if (inflight === 0) return;
    await Atomics.waitAsync(words, INFLIGHT, inflight).value;
  }
}

/** Lets the writes held by `hold` go. */
export function release(): void {
  Atomics.store(words, HELD, 0);
  Atomics.notify(words, HELD);
}

/** Whether this process's writes are held now (for tests and the status). */
export function isHeld(): boolean {
  return Atomics.load(words, HELD) !== 0;
}

/**
 * What the process must do around opening an LMDB directory: resolves when it may open, with the function to call
 * once it has (or has failed to). Set in a server process of several (cluster.ts); none elsewhere.
 */
export type OpenGuard = () => Promise<() => void>;

let guard: OpenGuard | null = null;

/** Sets (or, with null, removes) this process's open guard. */
export function setOpenGuard(next: OpenGuard | null): void {
  guard = next;
}

/** Runs `open` when this process may open an LMDB directory, and tells the guard when it has. */
export async function guardOpen<T>(open: () => T): Promise<T> {
  if (guard === null) return open();
  const opened = await guard();
  try {
    return open();
  } finally {
    opened();
  }
}
