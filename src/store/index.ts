/**
 * Opening a store by its URL (the `store` option): `memory:`, `lmdb:<dir>` (relative to the working directory), or
 * `redis://host:port/db`. See store.ts for the contract, docs/SCALING.md for what each backend keeps and shares.
 */
import path from 'node:path';
import { ChanError } from '../errors.js';
import { guardOpen } from './lmdb-gate.js';
import { MemoryStore } from './memory.js';
import { describeStore, type Store } from './store.js';

export type { Namespace, PutResult, Store } from './store.js';

/** What a store URL names, or the sentence that refuses it. */
export function parseStoreUrl(
  url: string,
): { kind: 'memory' } | { kind: 'lmdb'; dir: string } | { kind: 'redis' } | string {
  if (url === 'memory:') return { kind: 'memory' };
  if (url.startsWith('lmdb:')) {
    const dir = url.slice('lmdb:'.length);
    return dir === '' ? 'lmdb: needs a directory, as in lmdb:data' : { kind: 'lmdb', dir: path.resolve(dir) };
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return { kind: 'redis' };
  return `${JSON.stringify(describeStore(url))} is not a store: use memory:, lmdb:<dir> or redis://host:port/db`;
}

/**
 * Opens the store `url` names. Throws a `badConfig` ChanError with one line when it cannot (a directory that cannot be
 * made or written, a Redis that does not answer). The LMDB and Redis clients are loaded only for their backends.
 */
export async function openStore(url: string): Promise<Store> {
  const what = parseStoreUrl(url);
  if (typeof what === 'string') throw new ChanError('badConfig', `store: ${what}`);
  switch (what.kind) {
    case 'memory':
      return new MemoryStore();
    case 'lmdb': {
      const { LmdbStore } = await import('./lmdb.js');
      return guardOpen(() => LmdbStore.open(what.dir));
    }
    case 'redis': {
      const { RedisStore } = await import('./redis.js');
      return RedisStore.open(url);
    }
  }
}
