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
 * SharedArrayBuffer given to each thread (`threadGate`, `adoptGate`).
 *
 * The gate: HELD, one word for the process (1 while a sibling opens), and a count for each thread of the writes it has
 * given to LMDB and not yet seen settle. A writer adds itself to its count before it reads HELD; the holder sets HELD
 * before it reads the counts: with sequentially consistent atomics one of the two sees the other, so no write slips
 * past a hold. Each thread has a count of its own so that a thread that ends (the watchdog's terminate, a crash) with
 * writes counted is forgotten with them (`forget`), rather than holding every hold of the process forever. (Left: a
 * thread ended while LMDB is committing its writes, on LMDB's own thread, is forgotten before that commit ends; a
 * sibling's open in the milliseconds after could still meet it.)
 */

/** The memory a worker thread shares with its process's gate (`threadGate`, `adoptGate`). */
export interface GateBuffers {
  held: SharedArrayBuffer;
  count: SharedArrayBuffer;
}

const newWord = (): Int32Array => new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));

let held = newWord();
/** This thread's count of writes given to LMDB and not yet settled. */
let mine = newWord();
/** The counts of every thread of the process (the main thread's, in which `hold` runs). */
const counts = new Set<Int32Array>([mine]);
/** Writes of this thread that wait for the gate to open, in the order they were made. */
const waiting: (() => void)[] = [];
let watching = false;

/**
 * For a worker thread about to start: the gate's memory, with a count of its own, and the function to call when the
 * thread has exited (its count, whatever is left in it, no longer holds a hold).
 */
export function threadGate(): { buffers: GateBuffers; forget: () => void } {
  const count = newWord();
  counts.add(count);
  return {
    buffers: { held: held.buffer as SharedArrayBuffer, count: count.buffer as SharedArrayBuffer },
    forget: () => {
      counts.delete(count);
      Atomics.notify(count, 0); // a hold waiting on it looks again
    },
  };
}

/** In a worker thread: share the gate of the process that started it, before the thread opens its store. */
export function adoptGate(buffers: GateBuffers): void {
  held = new Int32Array(buffers.held);
  mine = new Int32Array(buffers.count);
}

/**
 * Counts a write in before it is given to LMDB: true when it may go now; false when the gate is held (it counts for
 * nothing then, and is to go through `whenOpen`).
 */
export function enter(): boolean {
  Atomics.add(mine, 0, 1);
  if (waiting.length === 0 && Atomics.load(held, 0) === 0) return true;
  leave(1);
  return false;
}

/** `count` writes given to LMDB have settled (committed or failed). */
export function leave(count: number): void {
  if (Atomics.sub(mine, 0, count) === count) Atomics.notify(mine, 0);
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
      while (Atomics.load(held, 0) !== 0) await Atomics.waitAsync(held, 0, 1).value;
      // Counted in before they go (each leaves as it settles): a hold that comes now waits for them, or they for it.
      Atomics.add(mine, 0, waiting.length);
      if (Atomics.load(held, 0) !== 0) {
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
 * In the main thread: holds the writes of every thread of this process (a sibling is about to open the directory),
 * and resolves once no write given to LMDB is still to settle. New writes wait until `release`.
 */
export async function hold(): Promise<void> {
  Atomics.store(held, 0, 1);
  // Until one look at every count finds them all at 0 (a write that comes now adds 1 to its count and takes it back).
  for (let settled = false; !settled; ) {
    settled = true;
    for (const count of counts) {
      const inflight = Atomics.load(count, 0);
      if (inflight === 0) continue;
      settled = false;
      await Atomics.waitAsync(count, 0, inflight).value;
      break; // the set may have changed (a thread forgotten): look at every count again
    }
  }
}

/** Lets the writes held by `hold` go. */
export function release(): void {
  Atomics.store(held, 0, 0);
  Atomics.notify(held, 0);
}

/** Whether this process's writes are held now (for tests). */
export function isHeld(): boolean {
  return Atomics.load(held, 0) !== 0;
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

/** Whether this process takes turns with sibling processes to open (a server process of several). */
export function takesTurns(): boolean {
  return guard !== null;
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
