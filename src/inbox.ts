/**
 * An ordered queue read the way an Erlang process reads its mailbox: `await receive({ timeout })` for one item, or
 * `for await` over all of them. It ends in one of two ways: with a last item that every later `receive` returns again
 * (the handler's `{chan_closed, MM}`), or with an error that every later `receive` rejects with (a client's pushes
 * after the channel closed). Iterating the same inbox twice throws: two readers would each miss half the messages.
 */
import { ChanError } from './errors.js';

interface Waiter<T> {
  resolve(item: T): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | null;
}

export interface ReceiveOptions {
  /** Milliseconds to wait; the promise rejects with a `timeout` ChanError if nothing came. Default: wait forever. */
  timeout?: number;
}

export class Inbox<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private readonly waiters: Waiter<T>[] = [];
  private ending: { last: T } | { error: Error } | null = null;
  private iterating = false;

  /** Items waiting to be received. */
  get size(): number {
    return this.items.length - this.head;
  }

  get ended(): boolean {
    return this.ending !== null;
  }

  put(item: T): void {
    if (this.ending) return;
    const w = this.waiters.shift();
    if (w) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve(item);
      return;
    }
    this.items.push(item);
  }

  /** Ends the inbox. With `last`, it is received after the queued items, and again by every later receive. */
  end(ending: { last: T } | { error: Error }): void {
    if (this.ending) return;
    this.ending = ending;
    const waiters = this.waiters.splice(0);
    if ('last' in ending && waiters.length === 0) this.items.push(ending.last);
    for (const w of waiters) {
      if (w.timer) clearTimeout(w.timer);
      if ('last' in ending) w.resolve(ending.last);
      else w.reject(ending.error);
    }
  }

  receive(options: ReceiveOptions = {}): Promise<T> {
    if (this.head < this.items.length) return Promise.resolve(this.take());
    if (this.ending) return 'last' in this.ending ? Promise.resolve(this.ending.last) : Promise.reject(this.ending.error);
    return new Promise((resolve, reject) => {
      const w: Waiter<T> = { resolve, reject, timer: null };
      if (options.timeout !== undefined) {
        const ms = options.timeout;
        w.timer = setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new ChanError('timeout', `nothing received within ${ms} ms`));
        }, ms);
      }
      this.waiters.push(w);
    });
  }

  private take(): T {
    const item = this.items[this.head] as T;
    this.items[this.head++] = undefined as T;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /**
   * The items, then the end. A plain iterator object rather than an async generator: a handler's `for await` costs
   * one promise per message, and an idle connection holds no generator.
   */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterating) throw new ChanError('usage', 'this inbox is already being iterated; one reader only');
    this.iterating = true;
    let finished = false;
    const done = (): IteratorResult<T> => {
      finished = true;
      return { done: true, value: undefined };
    };
    return {
      next: (): Promise<IteratorResult<T>> => {
        if (finished) return Promise.resolve({ done: true, value: undefined });
        return this.receive().then(
          (item): IteratorResult<T> => {
            if (this.ending && 'last' in this.ending && item === this.ending.last) finished = true;
            return { done: false, value: item };
          },
          (err: unknown) => {
            if (this.ending && 'error' in this.ending && err === this.ending.error) return done();
            throw err;
          },
        );
      },
      return: (): Promise<IteratorResult<T>> => Promise.resolve(done()),
    };
  }
}
