/**
 * A promise with the function that resolves it, for a promise made only when someone first waits (as Node 22's
 * `Promise.withResolvers`, which Node 20 lacks): one object in one field, null until then.
 */
export interface Settling<T> {
  readonly promise: Promise<T>;
  readonly resolve: (value: T) => void;
}

export function settling<T>(): Settling<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
