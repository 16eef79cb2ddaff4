/** A wait with an end: what the supervisor gives a service's start (start_timeout). */

/**
 * Settles as `p` does, or rejects with `error()` once `ms` have passed; `onExpire` then runs, to end what will not
 * finish (a worker thread whose start never returns). `p` itself cannot be stopped: what it resolves with later is
 * dropped.
 */
export function deadline<T>(p: Promise<T>, ms: number, error: () => Error, onExpire?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onExpire?.();
      reject(error());
    }, ms);
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

/** The error of a service's start that did not return within start_timeout (the caller names the service). */
export function startTimedOut(ms: number): Error {
  return new Error(`its start did not return within start_timeout (${ms} ms)`);
}
