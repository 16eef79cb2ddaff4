/**
 * A store whose every operation is reported to an {@link Observer} (the admin port's metrics): how many, how long, how
 * many failed, by backend. Used only when someone watches: the plain store is used otherwise.
 */
import type { Observer } from '../metrics.js';
import type { Term } from '../term/model.js';
import { made, type Namespace, type PutResult, type Store } from './store.js';

/** `store`, reporting each operation of its namespaces to `observer` as `backend` (memory, lmdb, redis). */
export function observedStore(store: Store, backend: string, observer: Observer): Store {
  const spaces = new Map<string, Namespace>();
  const observed: Store = {
    description: store.description,
    namespace: async (service) => {
      const inner = await store.namespace(service);
      return made(spaces, service, () => new ObservedNamespace(inner, backend, observer));
    },
    close: () => store.close(),
  };
  const check = store.check?.bind(store);
  if (check) observed.check = check;
  return observed;
}

class ObservedNamespace implements Namespace {
  getNow?: (key: Term) => Term | undefined;
  putNow?: (key: Term, value: Term, cost: number, maxBytes: number) => PutResult;

  constructor(
    private readonly inner: Namespace,
    private readonly backend: string,
    private readonly observer: Observer,
  ) {
    const getNow = inner.getNow?.bind(inner);
    const putNow = inner.putNow?.bind(inner);
    if (getNow) this.getNow = (key) => this.timed('get', () => getNow(key));
    if (putNow)
      this.putNow = (key, value, cost, maxBytes) => this.timed('put', () => putNow(key, value, cost, maxBytes));
  }

  get bytes(): number {
    return this.inner.bytes;
  }

  get(key: Term): Promise<Term | undefined> {
    return this.waited('get', () => this.inner.get(key));
  }

  put(key: Term, value: Term, cost: number, maxBytes: number): Promise<PutResult> {
    return this.waited('put', () => this.inner.put(key, value, cost, maxBytes));
  }

  delete(key: Term): Promise<boolean> {
    return this.waited('delete', () => this.inner.delete(key));
  }

  private timed<T>(op: string, fn: () => T): T {
    const started = performance.now();
    try {
      const result = fn();
      this.observer.store(this.backend, op, (performance.now() - started) / 1000, false);
      return result;
    } catch (err) {
      this.observer.store(this.backend, op, (performance.now() - started) / 1000, true);
      throw err;
    }
  }

  private async waited<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await fn();
      this.observer.store(this.backend, op, (performance.now() - started) / 1000, false);
      return result;
    } catch (err) {
      this.observer.store(this.backend, op, (performance.now() - started) / 1000, true);
      throw err;
    }
  }
}
