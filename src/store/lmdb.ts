/**
 * `lmdb:<dir>`: an embedded store on disk (LMDB through lmdb-js: memory-mapped, crash-safe, shared by the processes
 * of one `chan serve`, which open it in turn: lmdb-gate.ts). One environment in `<dir>`, one named database per service.
 * Every write, and every database opened (which may create it), passes the gate.
 *
 * Writes are committed in batches (lmdb-js gathers the puts of one turn into one transaction); a put resolves once its
 * batch is synced to disk (`overlappingSync` off: with it on, lmdb-js resolves at the commit and flushes later, and a
 * power loss could take back a store already acknowledged). Until then this process reads its own writes from a small overlay, so a lookup
 * after a store on the same connection (or any other of this process) sees it at once.
 *
 * An entry is stored as a 4-byte cost (what it counts against store_max_bytes) followed by the codec's bytes of
 * [Key, Value], under the digest of its key (store.ts). At open, the namespace reads every entry's cost once, to know
 * what it holds (as this process counts it: several processes writing one namespace may each pass the limit a little).
 */
import { open, type Database, type RootDatabase } from 'lmdb';
import { msgpackCodec } from '../codec/index.js';
import { ChanError } from '../errors.js';
import type { Term } from '../term/model.js';
import { enter, leave, whenOpen } from './lmdb-gate.js';
import { claimDirectory } from './lmdb-owner.js';
import { idBytes, made, storageId, type Namespace, type PutResult, type Store } from './store.js';

/** Any depth: the server's max_depth was checked when the term arrived, and may be set past any fixed number here. */
const codec = msgpackCodec({ maxDepth: Number.MAX_SAFE_INTEGER });

function storeFailed(what: string, err: unknown): ChanError {
  return new ChanError('storeFailed', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

function encodeEntry(key: Term, value: Term, cost: number): Buffer {
  const body = codec.encode([key, value], 4);
  body.writeUInt32BE(Math.min(cost, 0xffff_ffff), 0);
  return body;
}

function decodeValue(bytes: Uint8Array): Term {
  const entry = codec.decode(Buffer.from(bytes.buffer, bytes.byteOffset + 4, bytes.byteLength - 4), Infinity);
  return Array.isArray(entry) ? (entry[1] as Term) : null;
}

/** A write this process has made and LMDB has not committed yet: what reads see meanwhile. */
interface Pending {
  value: Term | undefined;
  /** Which write it is: an older write's commit must not remove a newer one. */
  seq: number;
}

/**
 * The writes that wait on one commit. lmdb-js gives its plain puts and removes one promise until a transaction
 * boundary (writes given the same promise are in one transaction), so a batch of hundreds is settled by one callback,
 * and its puts share one answer, rather than a promise and three functions each.
 */
interface Batch {
  commit: Promise<unknown>;
  /** Each write's key (id) and number, in pairs. */
  writes: (string | number)[];
  /** What each put of the batch answers: stored, committed once the batch is (else rejecting with storeFailed). */
  stored: PutResult;
}

class LmdbNamespace implements Namespace {
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  private held = 0;
  /** The writes waiting on the commit the latest write was given. */
  private batch: Batch | null = null;
  /** The environment has been closed (the server is stopping): lmdb-js would throw outside any call after it. */
  closed = false;

  private constructor(
    private readonly db: Database<Buffer, Buffer>,
    /** What each key costs, by its storageId. */
    private readonly costs: Map<string, number>,
  ) {
    for (const c of costs.values()) this.held += c;
  }

  static open(root: RootDatabase, service: string): LmdbNamespace {
    const db = root.openDB<Buffer, Buffer>({ name: service, encoding: 'binary', keyEncoding: 'binary' });
    const costs = new Map<string, number>();
    for (const { key, value } of db.getRange()) costs.set(Buffer.from(key).toString('latin1'), value.readUInt32BE(0));
    return new LmdbNamespace(db, costs);
  }

  private open(): void {
    if (this.closed) throw new ChanError('storeFailed', 'the store is closed: the server is stopping');
  }

  async get(key: Term): Promise<Term | undefined> {
    return this.getNow(key);
  }

  getNow(key: Term): Term | undefined {
    this.open();
    const id = storageId(key);
    const mine = this.pending.get(id);
    if (mine) return mine.value;
    let bytes: Buffer | undefined;
    try {
      bytes = this.db.get(idBytes(id));
    } catch (err) {
      throw storeFailed('the store could not be read', err);
    }
    return bytes === undefined ? undefined : decodeValue(bytes);
  }

  async put(key: Term, value: Term, cost: number, maxBytes: number): Promise<PutResult> {
    return this.putNow(key, value, cost, maxBytes);
  }

  putNow(key: Term, value: Term, cost: number, maxBytes: number): PutResult {
    this.open();
    const id = storageId(key);
    const bytes = idBytes(id);
    const entry = encodeEntry(key, value, cost); // before anything is counted: a term that cannot be encoded changes nothing
    const before = this.costOf(bytes, id);
    const after = this.held - (before ?? 0) + cost;
    if (after > maxBytes) return { stored: false, wouldHold: after };
    this.count(id, before, cost);
    return this.write(id, value, ...this.given(() => this.db.put(bytes, entry)));
  }

  async delete(key: Term): Promise<boolean> {
    this.open();
    const id = storageId(key);
    const bytes = idBytes(id);
    const before = this.costOf(bytes, id);
    if (before === undefined) return false;
    this.count(id, before, undefined);
    const written = this.write(id, undefined, ...this.given(() => this.db.remove(bytes)));
    if (written.stored) await written.committed;
    return true;
  }

  /**
   * Gives LMDB a write through the gate (lmdb-gate.ts): at once, counted in, unless a sibling process is opening the
   * directory; then once it has. Answers the commit, and whether the write was counted in here (its batch counts it
   * out when it settles) or by the gate.
   */
  private given(write: () => Promise<unknown>): [Promise<unknown>, boolean] {
    if (!enter()) return [whenOpen(write), false];
    try {
      return [write(), true];
    } catch (err) {
      leave(1);
      throw err;
    }
  }

  /**
   * What the entry under `id` (`bytes`) counts now: as this process counted it, else as written (by another process or thread of
   * the machine since this one opened the namespace), else undefined when there is none.
   */
  private costOf(bytes: Buffer, id: string): number | undefined {
    const known = this.costs.get(id);
    if (known !== undefined || this.pending.has(id)) return known;
    let written: number | undefined;
    try {
      written = this.db.get(bytes)?.readUInt32BE(0);
    } catch (err) {
      throw storeFailed('the store could not be read', err);
    }
    if (written !== undefined) this.count(id, undefined, written); // learnt: counted from now on
    return written;
  }

  /** A write failed: the entry counts what the database holds for it (what this process thought may be gone). */
  private recount(id: string): void {
    let written: number | undefined;
    try {
      written = this.db.get(idBytes(id))?.readUInt32BE(0);
    } catch {
      written = undefined; // unreadable as well: counted as absent until it is read again
    }
    this.count(id, this.costs.get(id), written);
  }

  /** The entry `id` counted `from` and counts `to` now (undefined: no entry). */
  private count(id: string, from: number | undefined, to: number | undefined): void {
    this.held += (to ?? 0) - (from ?? 0);
    if (to === undefined) this.costs.delete(id);
    else this.costs.set(id, to);
  }

  /**
   * Shows `value` to this process's reads until `commit` settles, and answers with the batch of writes that waits on
   * it: `committed` resolves with the commit, or rejects with storeFailed after the count of each of its keys is set
   * right (those whose latest write it was).
   */
  private write(id: string, value: Term | undefined, commit: Promise<unknown>, counted: boolean): PutResult {
    const seq = ++this.seq;
    const mine = this.pending.get(id);
    if (mine) {
      mine.value = value;
      mine.seq = seq;
    } else this.pending.set(id, { value, seq });
    let batch = this.batch;
    if (batch === null || batch.commit !== commit) batch = this.batch = this.waitOn(commit, counted);
    batch.writes.push(id, seq);
    return batch.stored;
  }

  private waitOn(commit: Promise<unknown>, counted: boolean): Batch {
    const writes: (string | number)[] = [];
    const committed = commit.then(
      () => this.settle(writes, false, counted),
      (err: unknown) => {
        this.settle(writes, true, counted);
        throw storeFailed('the store could not be written', err);
      },
    );
    return { commit, writes, stored: Object.freeze({ stored: true, committed }) };
  }

  /**
   * The writes of a batch are committed (or `failed`): reads of their keys go to LMDB again, and the gate counts them
   * out (when they were `counted` in here).
   */
  private settle(writes: (string | number)[], failed: boolean, counted: boolean): void {
    if (counted) leave(writes.length / 2);
    if (this.batch?.writes === writes) this.batch = null;
    for (let i = 0; i < writes.length; i += 2) {
      const id = writes[i] as string;
      if (this.pending.get(id)?.seq !== writes[i + 1]) continue; // a later write of the key still waits
      this.pending.delete(id);
      if (failed) this.recount(id);
    }
  }

  get bytes(): number {
    return this.held;
  }
}

export class LmdbStore implements Store {
  private readonly spaces = new Map<string, LmdbNamespace>();

  private constructor(
    private readonly root: RootDatabase,
    readonly description: string,
  ) {}

  /**
   * Opens (creating) the environment in `dir`. Throws a `badConfig` ChanError, with the reason, when it cannot: among
   * them, a directory that a process of another server has open (lmdb-owner.ts).
   */
  static open(dir: string): LmdbStore {
    try {
      claimDirectory(dir);
      const root = open({ path: dir, maxDbs: 1024, compression: false, overlappingSync: false });
      return new LmdbStore(root, `lmdb:${dir}`);
    } catch (err) {
      throw new ChanError(
        'badConfig',
        `store lmdb:${dir} cannot be opened: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }

  async namespace(service: string): Promise<Namespace> {
    const known = this.spaces.get(service);
    if (known) return known;
    // Opening a database may create it, a commit: through the gate, as a write is.
    const open = (): Namespace => made(this.spaces, service, () => LmdbNamespace.open(this.root, service));
    if (!enter()) return whenOpen(async () => open());
    try {
      return open();
    } finally {
      leave(1);
    }
  }

  async close(): Promise<void> {
    for (const ns of this.spaces.values()) ns.closed = true;
    this.spaces.clear();
    await this.root.close();
  }
}
