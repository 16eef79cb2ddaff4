/**
 * The store role: durable key-value storage for services, behind one interface, with backends chosen by URL
 * (`memory:`, `lmdb:<dir>`, `redis://host:port/db`; see docs/SCALING.md). Keys and values are terms; each service has its
 * own namespace, and a term comes back exactly as it went in (the project's codec stores it).
 *
 * The contract every backend keeps:
 * - a `put` is seen by every later `get` of the same process at once, and resolves once it is committed, as durably
 *   as the backend can (LMDB: on disk; Redis: as the Redis server's own persistence says);
 * - a namespace holds at most `maxBytes`, counted by what its entries take in memory once read (their decoded size,
 *   plus ENTRY_OVERHEAD each): a put past it is refused, and changes nothing;
 * - a failure of the backend (a disk, Redis away) rejects that call with a `storeFailed` ChanError; nothing else
 *   breaks, and the next call tries again.
 */
import { hash } from 'node:crypto';
import type { Term } from '../term/model.js';
import { termKey } from '../term/print.js';

/** What a put did: stored (resolves once committed), or refused, with what the namespace would have held. */
export type PutResult = { stored: true; committed: Promise<void> } | { stored: false; wouldHold: number };

/** The `committed` of a put that was durable (or never will be: memory:) as soon as it was made: nothing to wait for. */
export const ALREADY_COMMITTED: Promise<void> = Promise.resolve();

/** One service's part of a store. */
export interface Namespace {
  /** The value under `key`, or undefined. */
  get(key: Term): Promise<Term | undefined>;
  /**
   * Stores `value` under `key`, counted as `cost` bytes, unless the namespace would then hold more than `maxBytes`.
   * Decided at once; later gets of this process see the value from now on; `committed` settles once it is durable.
   */
  put(key: Term, value: Term, cost: number, maxBytes: number): Promise<PutResult>;
  /** Removes `key`; true if it was there. Resolves once committed. */
  delete(key: Term): Promise<boolean>;
  /**
   * `get` answered at once, by a backend that reads synchronously (memory:, lmdb:); absent where a read must wait (Redis).
   * Throws where `get` would reject.
   */
  getNow?(key: Term): Term | undefined;
  /** `put` decided and answered at once, where the backend can (memory:, lmdb:). Throws where `put` would reject. */
  putNow?(key: Term, value: Term, cost: number, maxBytes: number): PutResult;
  /** What the namespace holds, bytes, as puts count it (as far as this process knows). */
  readonly bytes: number;
}

export interface Store {
  /** The store's URL for logs, a password left out. */
  readonly description: string;
  /** The namespace of one service (made on first use; the same object after). */
  namespace(service: string): Promise<Namespace>;
  /** Commits what is pending, and lets go of files and connections. */
  close(): Promise<void>;
  /**
   * Resolves when the store answers now, rejects with why when it does not (the admin port's /readyz). Absent for a
   * store in this process, which always answers (memory:, lmdb:).
   */
  check?(): Promise<void>;
}

/** A store URL as logs and screens may show it: a password (or user and password) left out. */
export function describeStore(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.startsWith('memory:') || url.startsWith('lmdb:') ? url : `${url.split(':')[0] ?? ''}:***`;
  }
  if (u.protocol === 'lmdb:' || u.protocol === 'memory:') return url;
  const hidden = u.username !== '' || u.password !== '';
  u.username = '';
  u.password = '';
  for (const k of [...u.searchParams.keys()]) if (/pass|user|auth|token/i.test(k)) u.searchParams.set(k, '***');
  const shown = u.toString();
  return hidden ? shown.replace('//', '//***@') : shown;
}

/** The value `map` holds for `key`, made by `make` the first time. */
export function made<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    map.set(key, v);
  }
  return v;
}

/**
 * The key a backend files `key` under: a digest of its canonical text (termKey), so that equal terms share it however
 * they were written, and any key, however large, fits a backend's key limits (LMDB's are under 2 KB).
 */
export function storageKey(key: Term): Buffer {
  return idBytes(storageId(key));
}

/**
 * {@link storageKey} as text, a character a byte (latin1), for a backend's own tables of keys. Made as text first: a
 * digest made as a Buffer gets a memory block of its own (about 1.5 us a key with its collection, against 0.3 for the
 * text and a copy of it from Buffer's pool); latin1 rather than hex, half as long to hash and compare in a `Map`.
 */
export function storageId(key: Term): string {
  return hash('sha256', termKey(key), 'binary'); // 'binary' is latin1
}

/** The bytes of a {@link storageId}: its {@link storageKey}. */
export function idBytes(id: string): Buffer {
  return Buffer.from(id, 'latin1');
}
