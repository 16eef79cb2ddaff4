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
    // Made once: on the message path an operation costs its two readings of the clock and its report, no closure.
    const getNow = inner.getNow?.bind(inner);
    const putNow = inner.putNow?.bind(inner);
    if (getNow)
      this.getNow = (key) => {
        const started = performance.now();
        let failed = true;
        try {
          const found = getNow(key);
          failed = false;
          return found;
        } finally {
          this.report('get', started, failed);
        }
      };
    if (putNow)
      this.putNow = (key, value, cost, maxBytes) => {
        const started = performance.now();
        let failed = true;
        try {
          const result = putNow(key, value, cost, maxBytes);
          failed = false;
          return result;
        } finally {
          this.report('put', started, failed);
        }
      };
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

  private async waited<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let failed = true;
    try {
      const result = await fn();
      failed = false;
      return result;
    } finally {
      this.report(op, started, failed);
    }
  }

  /** An operation `op` that started at `started` (performance.now()) has ended. */
  private report(op: string, started: number, failed: boolean): void {
    this.observer.store(this.backend, op, (performance.now() - started) / 1000, failed);
  }
}
